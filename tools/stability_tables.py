"""The tables and figures of docs/results/stability.md for tools/pages.py, from a stability pack.

A stability pack (docs/results/data/README.md) is a study packed `--without_rounds`: per experiment
seed its config.json, summary.json and analysis/stability_round_RR.json records. The seeds are the
pack's point folders; the tables use those with records, and say how many of them there are. Each
table takes (sources, packs), the block's `study=` pack:

  stability_seeds        per size: the seeds with a record, of the pack's, each network's latest
                         early stop, the theta_0 checks, and the settings
  stability_verdicts     per size: how many of the claims got each verdict
  stability_means        per size, k and mask: mean over seeds [95% interval] of accuracy, both
                         relative distances and the instability, the full network beside them
  stability_differences  per size and k: IMP minus random pruning, paired by seed
  stability_picks        per size and mask: each criterion's pick (seed means, each seed), and how
                         often two criteria pick the same k
  stability_claims       the claim set of tf_lottery.study.stability with its verdicts
  stability_advice       per size: whether resetting to 0 fails, IMP's picks and the rewind point
                         the page's rule gives (the later of the accuracy and instability picks)
  stability_pending      the Conv-2 plan: its settings and the time its flagfile's header estimates

`write_figures(sources, pack, target)` draws tf_lottery.study.stability_plots' figures into target.
"""

import itertools
import pathlib
import re
import shutil

from tf_lottery import analysis
from tf_lottery import plots
from tf_lottery import results
from tf_lottery.results import analyses
from tf_lottery.study import claims
from tf_lottery.study import inference
from tf_lottery.study import stability
from tf_lottery.study import stability_plots

REPO = pathlib.Path(__file__).resolve().parent.parent
CONV2_PLAN = REPO / "configs" / "analyses" / "stability_conv2_cifar10.cfg"
# column: (field, scale, digits)
COLUMNS = {"test acc. @ early stop, %": ("test_accuracy", 100, 2),
           "stability to pruning (rel.)": ("pruning_relative_distance", 1, 3),
           "stability to data order (rel.)": ("data_order_relative_distance", 1, 3),
           "instability": ("instability", 1, 4)}
CRITERIA = list(analysis.PICK_FIELDS)


class Pack:
    """A stability pack unpacked: its seed folders, and the Rounds of those with records."""

    def __init__(self, sources, pack):
        root = sources.folder(pack)
        self.folders = sorted(p for p in root.iterdir() if results.config_path(p).is_file())
        self.rounds = stability.read([p for p in self.folders if analyses.stability_paths(p)])

    def of(self, r):
        """'N of M seeds' of round r."""
        return f"{len(self.rounds.seeds(r))} of {len(self.folders)} seeds"

    def size(self, r):
        return f"{100 * self.rounds.first(r)['remaining_fraction']:.1f}%"


def _number(estimate, scale, digits, sign=False):
    """'v [low, high]' of an Estimate, scaled (v alone without an interval)."""
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    shown = [fmt.format(scale * v) for v in estimate if v is not None]
    return shown[0] if len(shown) == 1 else f"{shown[0]} [{shown[1]}, {shown[2]}]"


def _latest_early_stops(rounds, r):
    """'full network N, imp N, ...': the latest early-stop iteration of each network's trainings in
    round r's records (the full network's, and both copies of each mask's)."""
    records = list(rounds.by_round[r].values())
    latest = {"full network": max(d["early_stop_iteration"] for rec in records for d in rec["dense"])}
    for mask in rounds.masks(r):
        latest[mask] = max(c["early_stop_iteration"] for rec in records for row in rec["masks"][mask]["rows"]
                           for c in row["copies"])
    return ", ".join(f"{name} {value:,}" for name, value in latest.items())


def stability_seeds(sources, packs):
    """Per size: the round, the seeds with a record of the pack's seeds, the latest early stop of each
    network's trainings against their length, and how many rebuilt theta_0 evaluate as the experiment's did."""
    found = Pack(sources, packs[0])
    rounds = found.rounds
    lines = ["| % remaining | round | seeds with a record | experiment seeds | latest early stop of a training, "
             "of its iterations | theta_0 as the experiment's |", "|---|---:|---|---|---|---:|"]
    for r in rounds.by_round:
        records = list(rounds.by_round[r].values())
        matching = sum(bool((rec.get("theta_0_check") or {}).get("matches")) for rec in records)
        lines.append(f"| {found.size(r)} | {r} | {found.of(r)} | {', '.join(map(str, rounds.seeds(r)))} | "
                     f"{_latest_early_stops(rounds, r)}, of {rounds.first(r)['train_steps']:,} | "
                     f"{matching} of {len(records)} |")
    complete = sum(len(rounds.seeds(r)) == len(found.folders) for r in rounds.by_round)
    return "\n".join(lines) + (f"\n\nComplete (every seed of the pack) at {complete} of {len(rounds.by_round)} "
                               f"sizes. {stability.criteria_text(rounds)}")


def stability_verdicts(sources, packs):
    """Per size: its seeds and how many of its claims got each verdict."""
    found = Pack(sources, packs[0])
    lines = ["| % remaining | seeds | " + " | ".join(claims.VERDICTS[:4]) + " |", "|---|---|" + "---:|" * 4]
    for r in found.rounds.by_round:
        single = stability.Rounds({r: found.rounds.by_round[r]})
        counts = claims.verdict_counts(stability.stability_claims(single))
        lines.append(f"| {found.size(r)} | {found.of(r)} | "
                     + " | ".join(str(counts.get(v, 0)) for v in claims.VERDICTS[:4]) + " |")
    return "\n".join(lines)


def stability_means(sources, packs):
    """Per size a table: per k, IMP's and random pruning's means over seeds [95% interval], and the
    full network's accuracy from the same theta_k."""
    found = Pack(sources, packs[0])
    rounds, parts = found.rounds, []
    for r in rounds.by_round:
        lines = [f"#### {found.size(r)} of the weights (round {r}), {found.of(r)}", "",
                 "| rewind k | network | " + " | ".join(COLUMNS) + " |", "|---:|---|" + "---:|" * len(COLUMNS)]
        for k in rounds.first(r)["rewind_steps"]:
            for mask in rounds.masks(r):
                cells = [_number(inference.mean(rounds.values(r, mask, k, field)), scale, digits)
                         for field, scale, digits in COLUMNS.values()]
                lines.append(f"| {k} | {mask} | " + " | ".join(cells) + " |")
            full = _number(inference.mean(rounds.dense(r, k)), 100, 2)
            lines.append(f"| {k} | full network | {full} |" + " |" * (len(COLUMNS) - 1))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def stability_differences(sources, packs):
    """Per size and k: IMP minus random pruning, paired by seed (accuracy in points)."""
    found = Pack(sources, packs[0])
    rounds = found.rounds
    lines = ["| % remaining | seeds | rewind k | " + " | ".join(COLUMNS).replace(", %", ", points") + " |",
             "|---|---|---:|" + "---:|" * len(COLUMNS)]
    for r in rounds.by_round:
        if stability.RANDOM not in rounds.masks(r):
            continue
        for k in rounds.first(r)["rewind_steps"]:
            cells = [_number(inference.paired_difference(rounds.values(r, stability.IMP, k, field),
                                                         rounds.values(r, stability.RANDOM, k, field)),
                             scale, digits, sign=True) for field, scale, digits in COLUMNS.values()]
            lines.append(f"| {found.size(r)} | {found.of(r)} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _criteria(rounds, r):
    return {k: rounds.first(r)[k] for k in ("threshold", "accuracy_tolerance", "distance_tolerance")}


def _seed_picks(rounds, r, mask):
    return [rounds.by_round[r][s]["masks"][mask] for s in rounds.seeds(r)]


def stability_picks(sources, packs):
    """Per size and mask: each criterion's pick from the seed means and in each seed, how many seeds'
    four picks agree; then, per mask, how often each pair of criteria picks the same k in a seed."""
    found = Pack(sources, packs[0])
    rounds = found.rounds
    lines = ["| % remaining | mask | " + " | ".join(f"{c}: means (each seed)" for c in CRITERIA)
             + " | four agree: means | four agree: seeds |", "|---|---|" + "---|" * (len(CRITERIA) + 2)]
    for r in rounds.by_round:
        for mask in rounds.masks(r):
            means = analysis.rewind_picks(stability.mean_rows(rounds, r, mask), **_criteria(rounds, r))
            per_seed = _seed_picks(rounds, r, mask)
            cells = [f"{_k(means['picks'][c])} ({', '.join(_k(p['picks'][c]) for p in per_seed)})" for c in CRITERIA]
            agreeing = sum(p["agree"] for p in per_seed)
            lines.append(f"| {found.size(r)} | {mask} | " + " | ".join(cells)
                         + f" | {'yes' if means['agree'] else 'no'} | {agreeing} of {len(per_seed)} |")
    pairs = list(itertools.combinations(CRITERIA, 2))
    table = ["| mask | " + " | ".join(f"{a} = {b}" for a, b in pairs) + " |", "|---|" + "---:|" * len(pairs)]
    for mask in rounds.masks(next(iter(rounds.by_round))):
        picks = [p["picks"] for r in rounds.by_round for p in _seed_picks(rounds, r, mask)]
        table.append(f"| {mask} | " + " | ".join(
            f"{sum(p[a] is not None and p[a] == p[b] for p in picks)} of {len(picks)}" for a, b in pairs) + " |")
    return ("\n".join(lines) + "\n\nHow often two criteria pick the same k, over every seed's record at every "
            "size:\n\n" + "\n".join(table))


def _k(value):
    return "none" if value is None else str(value)


def stability_claims(sources, packs):
    """The claim set with its verdicts (the rules of tf_lottery.study.claims), and their counts."""
    findings = stability.stability_claims(Pack(sources, packs[0]).rounds)
    counts = ", ".join(f"{n} {v}" for v, n in claims.verdict_counts(findings).items())
    return f"{claims.claims_table(findings)}\n\nVerdicts: {counts} (of {len(findings)})."


def stability_advice(sources, packs):
    """Per size, IMP's mask: whether resetting to iteration 0 fails, what each criterion picks from the
    seed means, and the rule's rewind point (the later of the accuracy and instability picks)."""
    found = Pack(sources, packs[0])
    rounds, lines = found.rounds, []
    for r in rounds.by_round:
        fails, why = stability._zero_fails(rounds, r)
        picks = analysis.rewind_picks(stability.mean_rows(rounds, r, stability.IMP), **_criteria(rounds, r))["picks"]
        outcome = [picks["accuracy"], picks["instability"]]
        chosen = "none (no rewind point is both stable and accurate)" if None in outcome else f"k = {max(outcome)}"
        lines.append(f"- **{found.size(r)}** ({found.of(r)}): resetting to iteration 0 "
                     f"{'fails' if fails else 'does not fail'} ({why}). IMP's picks: accuracy {_k(picks['accuracy'])}, "
                     f"instability {_k(picks['instability'])}; the distances' plateaus: pruning "
                     f"{_k(picks['pruning'])}, data order {_k(picks['data_order'])}. Rewind to: **{chosen}**.")
    return "\n".join(lines)


def stability_pending(sources, packs):
    """The Conv-2 / CIFAR-10 plan as its flagfile states it: rewind points, seeds and estimated time."""
    text = CONV2_PLAN.read_text()
    steps = re.search(r"^--rewind_steps=(.*)$", text, re.M).group(1)
    hours = re.search(r"about (\d+) hours for the (\d+) seeds", text)
    return (f"Not run yet: `{CONV2_PLAN.relative_to(REPO)}` plans {hours.group(2)} seeds at rewind points "
            f"{steps.replace(',', ', ')}, and its header estimates about {hours.group(1)} hours on 2 CPU cores.")


def write_figures(sources, pack, target):
    """Draws the pack's figures (stability_plots) and copies their PNGs into `target`."""
    found = Pack(sources, pack)
    out = sources.folder(pack) / "plots"
    config = results.read_config(found.folders[0])
    title = f"{plots.model_name(config)} on {config.get('dataset')}"
    for plot in stability_plots.write_figures(found.rounds, out, title):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plot.png, target / plot.png.name)


TABLES = {"stability_seeds": stability_seeds, "stability_verdicts": stability_verdicts,
          "stability_means": stability_means, "stability_differences": stability_differences,
          "stability_picks": stability_picks, "stability_claims": stability_claims,
          "stability_advice": stability_advice, "stability_pending": stability_pending}
