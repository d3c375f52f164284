"""The stability records of several seeds as one table, with the rewind-point claims and their verdicts.

`analyze stability` writes one record per experiment folder and round
(tf_lottery.stability). Here the records of several folders, one per
experiment seed with the same settings, become the tables of
docs/results/stability.md: per size (round), mask and rewind point k the
mean over seeds and its 95% t interval of the test accuracy at early stop,
both relative distances and the instability; IMP minus random pruning,
paired by seed; the rewind point each criterion picks from the seed means
(and in each seed); and the claim set STABILITY_CLAIMS, judged by the rules
of tf_lottery.study.claims (direction, no difference) on the intervals of
tf_lottery.study.inference. Nothing here imports TensorFlow.
"""

import pathlib

import numpy as np

from tf_lottery import analysis
from tf_lottery.results import analyses
from tf_lottery.settings import ConfigError
from tf_lottery.study import claims
from tf_lottery.study import inference

IMP, RANDOM = "imp", "random_prune"
DISTANCES = {"pruning_relative_distance": "stability to pruning", "data_order_relative_distance":
             "stability to data order"}
COLUMNS = {"test_accuracy": "test acc @es", "pruning_relative_distance": "pruning dist (rel)",
           "data_order_relative_distance": "data-order dist (rel)", "instability": "instability"}
# The settings every seed's record of a round must share to be one group.
SHARED = ("rewind_steps", "data_seeds", "train_steps", "experiment_train_steps", "points", "threshold",
          "accuracy_tolerance", "distance_tolerance")
SOURCE = "Frankle, Dziugaite, Roy & Carbin 2019 (Stabilizing the LTH), as stated in issue 29"


class Rounds:
    """{round: {seed: record}} of the stability records found in some experiment folders."""

    def __init__(self, by_round):
        self.by_round = by_round

    def seeds(self, r):
        return sorted(self.by_round[r])

    def first(self, r):
        return self.by_round[r][self.seeds(r)[0]]

    def masks(self, r):
        return list(self.first(r)["masks"])

    def values(self, r, mask, k, field):
        """[value per seed] (seeds ascending) of `field` in the row of rewind point k of `mask`."""
        return [_row(self.by_round[r][s], mask, k)[field] for s in self.seeds(r)]

    def dense(self, r, k):
        """[the full network's test accuracy at early stop per seed] from theta_k."""
        return [next(d for d in self.by_round[r][s]["dense"] if d["iteration"] == k)["early_stop_test_accuracy"]
                for s in self.seeds(r)]


def _row(record, mask, k):
    return next(row for row in record["masks"][mask]["rows"] if row["iteration"] == k)


def read(directories):
    """The Rounds of the stability records in `directories`; ConfigError naming experiment_dir when a
    folder has none, two folders share a seed, or a round's records differ in a setting."""
    by_round = {}
    for directory in directories:
        paths = analyses.stability_paths(directory)
        if not paths:
            raise ConfigError("experiment_dir", f"{directory} has no stability record; run "
                                                "`analyze stability` on it first")
        for path in paths:
            record = analyses.read(path)
            seeds = by_round.setdefault(record["round"], {})
            if record["seed"] in seeds:
                raise ConfigError("experiment_dir", f"{pathlib.Path(directory)} has seed {record['seed']} "
                                                    "like another folder given; give one folder per seed")
            seeds[record["seed"]] = record
    rounds = Rounds(dict(sorted(by_round.items())))
    for r in rounds.by_round:
        first = rounds.first(r)
        for seed, record in rounds.by_round[r].items():
            differing = [k for k in SHARED if record.get(k) != first.get(k)]
            if differing or list(record["masks"]) != list(first["masks"]):
                raise ConfigError("experiment_dir", f"the round {r} records of seeds {rounds.seeds(r)[0]} and "
                                                    f"{seed} differ in {', '.join(differing) or 'masks'}")
    return rounds


def _cell(estimate, digits=4):
    if not estimate.has_interval:
        return f"{estimate.value:.{digits}f}"
    return f"{estimate.value:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def _percent(record):
    return f"{100 * record['remaining_fraction']:.1f}"


def means_table(rounds):
    """Markdown: per size, mask and k, the mean over seeds [95% t interval] of each column."""
    lines = ["| % remaining | mask | rewind k | seeds | " + " | ".join(COLUMNS.values()) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for r in rounds.by_round:
        first = rounds.first(r)
        for mask in rounds.masks(r):
            for k in first["rewind_steps"]:
                cells = [_cell(inference.mean(rounds.values(r, mask, k, field))) for field in COLUMNS]
                lines.append(f"| {_percent(first)} | {mask} | {k} | {len(rounds.seeds(r))} | "
                             + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences_table(rounds):
    """Markdown: IMP minus random pruning per size and k, paired by seed (negative distances: IMP more
    stable)."""
    lines = ["| % remaining | rewind k | " + " | ".join(f"{name} IMP - random" for name in COLUMNS.values())
             + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for r in rounds.by_round:
        if RANDOM not in rounds.masks(r):
            continue
        for k in rounds.first(r)["rewind_steps"]:
            cells = [_cell(_paired(rounds, r, field, (IMP, k), (RANDOM, k))) for field in COLUMNS]
            lines.append(f"| {_percent(rounds.first(r))} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paired(rounds, r, field, a, b):
    """The Estimate of side a minus side b, (mask, k) each, paired by seed."""
    return inference.paired_difference(rounds.values(r, *a, field), rounds.values(r, *b, field))


def mean_rows(rounds, r, mask):
    """The rows of the seed means of `mask` in round r (what the picks of the seed means read)."""
    return [{"iteration": k, **{field: float(np.mean(rounds.values(r, mask, k, field)))
                                for field in analysis.PICK_FIELDS.values()}}
            for k in rounds.first(r)["rewind_steps"]]


def picks_table(rounds):
    """Markdown: the k each criterion picks from the seed means, each seed's pick, and whether they agree."""
    names = list(analysis.PICK_FIELDS)
    lines = ["| % remaining | mask | " + " | ".join(names) + " | agree |", "|---|---|" + "---|" * (len(names) + 1)]
    for r in rounds.by_round:
        first = rounds.first(r)
        criteria = {k: first[k] for k in ("threshold", "accuracy_tolerance", "distance_tolerance")}
        for mask in rounds.masks(r):
            means = analysis.rewind_picks(mean_rows(rounds, r, mask), **criteria)
            per_seed = [rounds.by_round[r][s]["masks"][mask]["picks"] for s in rounds.seeds(r)]
            cells = [f"{_k(means['picks'][n])} (seeds: {', '.join(_k(p[n]) for p in per_seed)})" for n in names]
            lines.append(f"| {_percent(first)} | {mask} | " + " | ".join(cells)
                         + f" | {'yes' if means['agree'] else 'no'} |")
    return "\n".join(lines)


def _k(value):
    return "none" if value is None else str(value)


def criteria_text(rounds):
    """The picks' definitions with the settings the records were made with."""
    first = rounds.first(next(iter(rounds.by_round)))
    return (f"Picks: *instability*, the earliest k whose instability is below {first['threshold']}; "
            f"*accuracy*, the earliest k whose test accuracy at early stop (mean of the two copies) is within "
            f"{100 * first['accuracy_tolerance']:.2f} points of the best k's; *pruning* and *data_order*, "
            f"the earliest k whose relative distance is at most the smallest one's times "
            f"{1 + first['distance_tolerance']:g} (where the distance reaches its plateau). Every training "
            f"ran {first['train_steps']:,} iterations (the experiment's rounds: "
            f"{first['experiment_train_steps']:,}); data orders {first['data_seeds'][0]} and "
            f"{first['data_seeds'][1]}; instability on {first['points']} points.")


# The claim set: Frankle et al. (2019)'s claims on stability, each with its kind.

def _finding(claim, kind, paper, ours, verdict):
    return claims.Finding(claim, kind, SOURCE, paper, ours, verdict)


def _size(rounds, r):
    return f"At {_percent(rounds.first(r))}%"


def _more_stable_than_random(rounds, r, field):
    claim = (f"{_size(rounds, r)}, IMP's subnetwork is more stable ({DISTANCES[field]}) than a random one with "
             "the same layer-wise proportions, at every rewind point")
    paper = "IMP - random < 0"
    if RANDOM not in rounds.masks(r):
        return _finding(claim, claims.DIRECTION, paper, "not measured (no random_prune)", claims.MISSING)
    steps = rounds.first(r)["rewind_steps"]
    found = [_paired(rounds, r, field, (IMP, k), (RANDOM, k)) for k in steps]
    ours = "; ".join(f"{_cell(f)} at k={k}" for k, f in zip(steps, found))
    return _finding(claim, claims.DIRECTION, paper, f"{ours} ({inference.PAIRED})",
                    claims.all_rounds_verdict(found, -1))


def _zero_fails(rounds, r):
    """(whether resetting to iteration 0 fails, the text that says why): IMP's mean accuracy from theta_0
    below the full network's by more than the accuracy tolerance, or its mean instability not below the
    threshold."""
    first = rounds.first(r)
    gap = float(np.mean(np.subtract(rounds.values(r, IMP, 0, "test_accuracy"), rounds.dense(r, 0))))
    unstable = float(np.mean(rounds.values(r, IMP, 0, "instability")))
    fails = gap < -first["accuracy_tolerance"] or unstable >= first["threshold"]
    return fails, (f"from theta_0 IMP is {100 * gap:+.2f} points against the full network, instability "
                   f"{unstable:.4f} (threshold {first['threshold']})")


def _improves_early(rounds, r, field, sign, what):
    claim = (f"{_size(rounds, r)}, where resetting to iteration 0 fails, {what} as the rewind point moves "
             "from 0 to the first later one")
    paper = f"k1 - k0 {'<' if sign < 0 else '>'} 0"
    steps = rounds.first(r)["rewind_steps"]
    if len(steps) < 2 or steps[0] != 0:
        return _finding(claim, claims.DIRECTION, paper, "not measured (needs k=0 and a later k)", claims.MISSING)
    fails, why = _zero_fails(rounds, r)
    if not fails:
        return _finding(claim, claims.DIRECTION, paper, f"not measured: resetting to 0 does not fail ({why})",
                        claims.MISSING)
    found = _paired(rounds, r, field, (IMP, steps[1]), (IMP, 0))
    return _finding(claim, claims.DIRECTION, paper, f"{_cell(found)} from k=0 to k={steps[1]} ({why})",
                    claims.direction_verdict(found, sign))


def _saturates(rounds, r):
    claim = (f"{_size(rounds, r)}, the benefit of rewinding saturates after a small fraction of training: "
             "IMP's accuracy at the last two rewind points is the same")
    margin = claims.MARGINS[claims.ACCURACY]
    paper = f"no difference (margin +-{100 * margin:.2f} points)"
    first = rounds.first(r)
    steps = first["rewind_steps"]
    if len(steps) < 3:
        return _finding(claim, claims.EQUIVALENCE, paper, "not measured (needs 3 rewind points)", claims.MISSING)
    found = _paired(rounds, r, "test_accuracy", (IMP, steps[-1]), (IMP, steps[-2]))
    _, p = inference.equivalence(found, margin)
    tost = "" if p is None else f"; TOST p = {p:.3f}"
    share = 100 * steps[-2] / first["experiment_train_steps"]
    return _finding(claim, claims.EQUIVALENCE, paper,
                    f"{100 * found.value:+.2f} points, k={steps[-1]} against k={steps[-2]} ({share:.1f}% of "
                    f"training){tost}", claims.equivalence_verdict(found, margin))


def stability_claims(rounds):
    """The Findings of the claim set on every round of `rounds`, size by size."""
    findings = []
    for r in rounds.by_round:
        findings += [_more_stable_than_random(rounds, r, field) for field in DISTANCES]
        findings += [_improves_early(rounds, r, "pruning_relative_distance", -1, "stability to pruning improves"),
                     _improves_early(rounds, r, "data_order_relative_distance", -1,
                                     "stability to data order improves"),
                     _improves_early(rounds, r, "test_accuracy", +1, "accuracy improves"),
                     _saturates(rounds, r)]
    return findings


def report(directories):
    """Markdown: the tables over seeds, the picks and the claims with their verdicts."""
    rounds = read(directories)
    findings = stability_claims(rounds)
    counts = ", ".join(f"{n} {v}" for v, n in claims.verdict_counts(findings).items())
    seeds = sorted({s for r in rounds.by_round for s in rounds.seeds(r)})
    return "\n\n".join([
        "# Stability to pruning and to data order over seeds",
        f"Seeds {', '.join(map(str, seeds))}: the mean over seeds [95% t interval]. Relative distances: "
        "stability to pruning ||m * (sub - full)|| / ||m * full||, to data order ||m * (A - B)|| / mean of "
        "||m * A|| and ||m * B|| (m the subnetwork's mask; tf_lottery.analysis). Lower is more stable.",
        "## Means", means_table(rounds),
        "## IMP minus random pruning (paired by seed)", differences_table(rounds),
        "## Rewind points picked", criteria_text(rounds), picks_table(rounds),
        f"## Claims ({counts})", claims.RULES, claims.claims_table(findings)]) + "\n"


def write_report(directories):
    """Writes report(directories) to analysis/stability_report.md of the first folder; (path, text)."""
    text = report(directories)
    path = analyses.stability_report_path(directories[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path, text
