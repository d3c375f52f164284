"""A paper's claims checked against a study: each restated with the paper's number, ours and a verdict.

A claim set is one `@CLAIM_SETS.register(name)` function of an Evidence (one
group of a study) returning Findings. Rounds are found by the share of
weights remaining (the round nearest the paper's size, within 15% of it).
Ours is the mean over seeds with a 95% interval, the seed the unit: a
control's draws are averaged within their seed first, and sides that share
the seeds (ticket and control, round and round) are paired by seed
(tf_lottery.study.statistics.compare; the interval's method is named).

Each claim declares its kind, and the kind fixes the rule (95% intervals):
- direction (an effect of a sign): agrees when the interval excludes no
  effect on the claimed side, disagrees when it excludes it on the other
  side, inconclusive otherwise; a claim over several rounds agrees when
  every round does and disagrees when any round disagrees;
- size (the paper's number): agrees when the interval holds the paper's
  number (for 'at least v': reaches v) and excludes no effect, disagrees
  when it excludes the paper's number (lies below v), inconclusive when it
  holds both;
- no difference: agrees only by an equivalence test, two one-sided t tests
  (TOST, 5%) at the margin the claim declares; disagrees when the 95%
  interval excludes no difference, inconclusive otherwise;
- location (where something happens): each seed locates it in its own
  rounds; the location is stable when at least 80% of the seeds put it
  within one round of where the seed means put it. With 5 or more seeds: agrees when stable
  within one round of the paper's round, disagrees when stable elsewhere,
  inconclusive when not stable; with fewer seeds it is 'descriptive' (no
  verdict). It needs rounds on both sides of the paper's.
A claim whose rounds or controls the study lacks is 'not measured'.
"""

import dataclasses

import numpy as np

from tf_lottery.registry import Registry
from tf_lottery.study import statistics

CLAIM_SETS = Registry("claim set")

AGREES, DISAGREES, INCONCLUSIVE, MISSING = ("agrees", "disagrees", "inconclusive", "not measured")
DESCRIPTIVE = "descriptive"
VERDICTS = (AGREES, DISAGREES, INCONCLUSIVE, MISSING, DESCRIPTIVE)
DIRECTION, SIZE, EQUIVALENCE, LOCATION = ("direction", "size", "no difference", "location")
ACCURACY, ITERATION = "early_stop_test_accuracy", "early_stop_iteration"
LOCATION_SEEDS = 5     # fewer seeds: a location is descriptive
STABLE_SHARE = 0.8     # share of seeds within one round of the location for it to be stable
_NEAR = 0.15  # a round stands for a paper's size within this relative distance


@dataclasses.dataclass(frozen=True)
class Finding:
    claim: str    # the paper's claim, restated
    kind: str     # direction, size, no difference or location
    source: str   # where the paper makes it
    paper: str    # the paper's number (and a no-difference claim's margin)
    ours: str     # our number, with its interval and method
    verdict: str


class Evidence:
    """One study group's numbers, looked up by control and % of weights remaining."""

    def __init__(self, group):
        self.group = group

    @property
    def seeds(self):
        return len(self.group.runs)

    def rounds(self, control=None):
        """{round: % remaining} of the rounds finished in every seed (of the control's first draw)."""
        return {row.round: row.remaining
                for row in statistics.round_stats(self.group, ACCURACY, control)}

    def round_at(self, percent, control=None):
        """The finished round nearest `percent` % remaining, or None if none is within 15% of it."""
        rounds = self.rounds(control)
        if not rounds:
            return None
        r = min(rounds, key=lambda k: abs(rounds[k] - percent))
        return r if abs(rounds[r] - percent) <= _NEAR * percent else None

    def remaining(self, r):
        return self.rounds().get(r)

    def mean(self, field, r, control=None):
        rows = {row.round: row for row in statistics.round_stats(self.group, field, control)}
        return rows[r].mean

    def matrix(self, field, sides):
        """Seeds x sides: each seed's value of `field` on each side, (control, round) (draws averaged)."""
        return [[np.mean(self.group.values(key, r, field, control)) for control, r in sides]
                for key in sorted(self.group.runs)]

    def compare(self, field, a, b, ratio=False):
        """The Estimate of side a minus (or over) side b; a side is (control, round)."""
        return statistics.compare(statistics.side_values((self.group, a[0]), a[1], field),
                                  statistics.side_values((self.group, b[0]), b[1], field), ratio)


def direction_verdict(estimate, sign, null=0.0):
    """A claimed effect of `sign` (+1 or -1) against no effect `null`."""
    if not estimate.has_interval:
        return INCONCLUSIVE
    if estimate.excludes(null):
        return AGREES if (estimate.value - null) * sign > 0 else DISAGREES
    return INCONCLUSIVE


def size_verdict(estimate, claimed, null=0.0, at_least=False):
    """A claimed effect of size `claimed` (for `at_least`: of `claimed` or more, away from `null`)."""
    if not estimate.has_interval:
        return INCONCLUSIVE
    side = 1 if claimed > null else -1
    if at_least:
        holds = (estimate.high if side > 0 else estimate.low) * side >= claimed * side
    else:
        holds = estimate.low <= claimed <= estimate.high
    if not holds:
        return DISAGREES
    return AGREES if estimate.excludes(null) else INCONCLUSIVE


def equivalence_verdict(estimate, margin):
    """A claim of no difference at `margin`: agrees by TOST, disagrees when the 95% interval excludes
    zero, inconclusive otherwise."""
    if not estimate.has_interval:
        return INCONCLUSIVE
    equivalent, _ = statistics.inference.equivalence(estimate, margin)
    if equivalent:
        return AGREES
    return DISAGREES if estimate.excludes(0.0) else INCONCLUSIVE


def location_verdict(where, per_seed, paper, seeds):
    """A location claim: `where` is the round of the seed means, `per_seed` each seed's round (None:
    nowhere), `paper` the paper's round, `seeds` how many there are."""
    if seeds < LOCATION_SEEDS:
        return DESCRIPTIVE
    if where is None:
        near = sum(1 for r in per_seed if r is None)
    else:
        near = sum(1 for r in per_seed if r is not None and abs(r - where) <= 1)
    if near < STABLE_SHARE * len(per_seed):
        return INCONCLUSIVE
    return AGREES if where is not None and abs(where - paper) <= 1 else DISAGREES


def _located(evidence, rounds, field, sides, locate):
    """(round of the seed means, [round of each seed]): `locate(values over sides)` gives an index into
    `rounds` (or None)."""
    matrix = evidence.matrix(field, sides)
    where = locate(np.mean(matrix, axis=0))
    per_seed = statistics.seed_locations(matrix, locate)
    as_round = lambda i: None if i is None else rounds[i]  # noqa: E731
    return as_round(where), [as_round(i) for i in per_seed]


def _per_seed_text(evidence, per_seed):
    where = ", ".join("nowhere" if r is None else f"{evidence.remaining(r):.1f}%" for r in per_seed)
    return f"; per seed: {where}"


def _interval(estimate, number):
    if not estimate.has_interval:
        return " (one seed: no interval)"
    return f" [{number(estimate.low)}, {number(estimate.high)}], {estimate.method}"


def _points(estimate):
    number = lambda v: f"{100 * v:+.2f}"  # noqa: E731
    return f"{number(estimate.value)} points{_interval(estimate, number)}"


def _iterations(estimate):
    number = lambda v: f"{v:+.0f}"  # noqa: E731
    return f"{number(estimate.value)} iterations{_interval(estimate, number)}"


def _ratio(estimate):
    number = lambda v: f"{v:.2f}"  # noqa: E731
    return f"{number(estimate.value)}x{_interval(estimate, number)}"


def _missing(claim, kind, source, paper, what):
    return Finding(claim, kind, source, paper, f"not measured ({what})", MISSING)


def _at(evidence, r):
    return f"at {evidence.remaining(r):.1f}%"


# The margins of the no-difference claims: the smallest accuracy gain the paper reports as one (0.3
# points at 13.5%), and ten evaluations of the LeNet protocol (1,000 iterations).
MARGINS = {ACCURACY: 0.003, ITERATION: 1000.0}
_MARGIN_TEXT = {ACCURACY: lambda m: f"+-{100 * m:.2f} points", ITERATION: lambda m: f"+-{m:.0f} iterations"}


RULES = (
    "Each claim has a kind, and the kind fixes the verdict (95% intervals, the seed the unit, sides "
    "that share seeds paired): a *direction* agrees when the interval excludes no effect on the "
    "claimed side and disagrees when it excludes it on the other; a *size* agrees when the interval "
    "holds the paper's number (for 'at least': reaches it) and excludes no effect, and disagrees when "
    "it excludes the paper's number; a *no difference* agrees only by an equivalence test (two "
    f"one-sided t tests at 5%) within its margin (accuracy +-{100 * MARGINS[ACCURACY]:.2f} points, "
    f"early stop +-{MARGINS[ITERATION]:.0f} iterations) and disagrees when the interval excludes no "
    "difference; a *location* is found by each seed in its own rounds and is stable when at least "
    f"{STABLE_SHARE:.0%} of the seeds put it within one round of where the seed means put it: with "
    f"{LOCATION_SEEDS} or more seeds it agrees when stable within one round of the paper's size and "
    f"disagrees when stable elsewhere; with fewer seeds it is *descriptive* (no verdict). Everything "
    "else is *inconclusive*.")


@CLAIM_SETS.register("lth_lenet", help="Frankle & Carbin (2019)'s claims on LeNet-300-100 with IMP, "
                                       "random reinitialisation, random pruning and one-shot pruning")
def lth_lenet(evidence):
    """Frankle & Carbin (2019)'s LeNet-300-100 claims (Section 2 and Figures 3-4), and the random-pruning
    comparison at 10.7% that Frankle et al. (2019) report."""
    return [claim(evidence) for claim in (
        _speed_versus_reinit, _accuracy_versus_reinit, _fastest_size, _gain_at_13_5,
        _accuracy_back_at_3_6, _speed_back_at_3_6, _reinit_drops_at_21, _random_pruning_at_10_7,
        _one_shot_speed, _one_shot_accuracy, _iterative_beats_one_shot)]


def _speed_versus_reinit(evidence):
    claim = "At 21.1% of the weights the ticket reaches early stop 2.51x sooner than its mask reinitialised"
    source, paper = "Frankle & Carbin 2019, Section 2", "2.51x"
    r = evidence.round_at(21.1, "random_reinit")
    if r is None:
        return _missing(claim, SIZE, source, paper, "random_reinit near 21.1%")
    found = evidence.compare(ITERATION, ("random_reinit", r), (None, r), ratio=True)
    return Finding(claim, SIZE, source, paper, f"{_ratio(found)} {_at(evidence, r)}",
                   size_verdict(found, 2.51, null=1.0))


def _against_control(evidence, claim, kind, source, paper, percent, control, verdict, means=False):
    """A claim on IMP's accuracy minus a control's at `percent` % remaining; verdict(found) judges it."""
    r = evidence.round_at(percent, control)
    if r is None:
        return _missing(claim, kind, source, paper, f"{control} near {percent}%")
    found = evidence.compare(ACCURACY, (None, r), (control, r))
    extra = (f" ({100 * evidence.mean(ACCURACY, r):.2f}% against "
             f"{100 * evidence.mean(ACCURACY, r, control):.2f}%)") if means else ""
    return Finding(claim, kind, source, paper, f"{_points(found)} {_at(evidence, r)}{extra}", verdict(found))


def _accuracy_versus_reinit(evidence):
    return _against_control(
        evidence, "At 21.1% the ticket is half a point more accurate than its mask reinitialised", SIZE,
        "Frankle & Carbin 2019, Section 2", "+0.5 points", 21.1, "random_reinit",
        lambda found: size_verdict(found, 0.005))


def _covers(rounds, paper):
    """Whether `rounds` has rounds on both sides of the paper's round."""
    return paper is not None and min(rounds) < paper < max(rounds)


def _fastest_size(evidence):
    claim = "Tickets learn fastest at 21.1%; below that, learning slows"
    source, paper = "Frankle & Carbin 2019, Section 2 and Figure 3", "21.1%"
    rounds = sorted(r for r in evidence.rounds() if r > 0)
    if not rounds or not _covers(rounds, evidence.round_at(21.1)):
        return _missing(claim, LOCATION, source, paper, "IMP rounds on both sides of 21.1%")
    fastest, per_seed = _located(evidence, rounds, ITERATION, [(None, r) for r in rounds],
                                 lambda means: int(np.argmin(means)))
    return Finding(claim, LOCATION, source, paper,
                   f"fastest {_at(evidence, fastest)} ({evidence.mean(ITERATION, fastest):.0f} iterations)"
                   + _per_seed_text(evidence, per_seed),
                   location_verdict(fastest, per_seed, evidence.round_at(21.1), evidence.seeds))


def _gain_at_13_5(evidence):
    claim = "At 13.5% the ticket is more than 0.3 points more accurate than the original network"
    source, paper = "Frankle & Carbin 2019, Section 2", ">= +0.3 points"
    r = evidence.round_at(13.5)
    if r is None:
        return _missing(claim, SIZE, source, paper, "IMP near 13.5%")
    found = evidence.compare(ACCURACY, (None, r), (None, 0))
    return Finding(claim, SIZE, source, paper, f"{_points(found)} {_at(evidence, r)}",
                   size_verdict(found, 0.003, at_least=True))


def _back_at_3_6(evidence, field, claim, paper, text):
    source = "Frankle & Carbin 2019, Section 2"
    r = evidence.round_at(3.6)
    margin = MARGINS[field]
    paper = f"{paper} (margin {_MARGIN_TEXT[field](margin)})"
    if r is None:
        return _missing(claim, EQUIVALENCE, source, paper, "IMP near 3.6%")
    found = evidence.compare(field, (None, r), (None, 0))
    _, p = statistics.inference.equivalence(found, margin)
    tost = "" if p is None else f"; TOST p = {p:.3f}"
    return Finding(claim, EQUIVALENCE, source, paper,
                   f"{text(found)} {_at(evidence, r)} against round 0{tost}", equivalence_verdict(found, margin))


def _accuracy_back_at_3_6(evidence):
    return _back_at_3_6(evidence, ACCURACY, "At 3.6% the ticket's accuracy is back to the original "
                        "network's", "+0 points", _points)


def _speed_back_at_3_6(evidence):
    return _back_at_3_6(evidence, ITERATION, "At 3.6% the ticket's early stop is back to the original "
                        "network's", "+0 iterations", _iterations)


def _reinit_drops_at_21(evidence):
    claim = "Reinitialised, the ticket's mask falls below the original accuracy from 21.1% on"
    source, paper = "Frankle & Carbin 2019, Section 2 and Figure 3", "21.1%"
    rounds = sorted(evidence.rounds("random_reinit"))
    if not rounds or not _covers(rounds, evidence.round_at(21.1, "random_reinit")):
        return _missing(claim, LOCATION, source, paper, "random_reinit on both sides of 21.1%")

    def first_of_the_rounds_below(values):  # values: round 0's IMP accuracy, then the control's
        below = np.asarray(values[1:]) < values[0]
        return next((i for i in range(len(below)) if below[i:].all()), None)

    drop, per_seed = _located(evidence, rounds, ACCURACY,
                              [(None, 0)] + [("random_reinit", r) for r in rounds], first_of_the_rounds_below)
    where = (f"never below (round 0: {100 * evidence.mean(ACCURACY, 0):.2f}%)" if drop is None
             else f"from {evidence.remaining(drop):.1f}% on")
    return Finding(claim, LOCATION, source, paper, where + _per_seed_text(evidence, per_seed),
                   location_verdict(drop, per_seed, evidence.round_at(21.1, "random_reinit"), evidence.seeds))


def _random_pruning_at_10_7(evidence):
    return _against_control(
        evidence, "At 10.7% IMP is more accurate than random pruning (98.3 +- 0.1% against 97.5 +- 0.3%)",
        SIZE, "Frankle et al. 2019, as quoted in issue 17", "+0.8 points", 10.7, "random_prune",
        lambda found: size_verdict(found, 0.008), means=True)


def _one_shot_rounds(evidence, high, low):
    return [r for r, percent in evidence.rounds("one_shot").items() if low <= percent <= high]


def all_rounds_verdict(found, sign):
    """A direction claimed at every one of several rounds: agrees when every round agrees, disagrees
    when any round disagrees, inconclusive otherwise."""
    verdicts = [direction_verdict(f, sign) for f in found]
    if DISAGREES in verdicts:
        return DISAGREES
    return AGREES if all(v == AGREES for v in verdicts) else INCONCLUSIVE


def _one_shot_versus_dense(evidence, claim, paper, field, high, low, text, sign):
    source = "Frankle & Carbin 2019, Section 2 (one-shot pruning)"
    rounds = _one_shot_rounds(evidence, high, low)
    if not rounds:
        return _missing(claim, DIRECTION, source, paper, f"one_shot between {low}% and {high}%")
    found = [evidence.compare(field, ("one_shot", r), (None, 0)) for r in sorted(rounds)]
    ours = "; ".join(f"{text(f)} {_at(evidence, r)}" for r, f in zip(sorted(rounds), found))
    return Finding(claim, DIRECTION, source, paper, ours, all_rounds_verdict(found, sign))


def _one_shot_speed(evidence):
    return _one_shot_versus_dense(
        evidence, "One-shot tickets between 67.5% and 17.6% reach early stop sooner than the original "
        "network", "< 0 iterations", ITERATION, 67.5, 17.6, _iterations, -1)


def _one_shot_accuracy(evidence):
    return _one_shot_versus_dense(
        evidence, "One-shot tickets between 95.0% and 5.17% are more accurate than the original network",
        "> 0 points", ACCURACY, 95.0, 5.17, _points, +1)


def _iterative_beats_one_shot(evidence):
    return _against_control(
        evidence, "At small sizes (7.0%) iterative pruning gives more accurate tickets than one-shot pruning",
        DIRECTION, "Frankle & Carbin 2019, Section 2 and Figure 4", "> 0 points", 7.0, "one_shot",
        lambda found: direction_verdict(found, +1))


def check(group, name):
    """The Findings of claim set `name` on one study group."""
    return CLAIM_SETS.get(name)(Evidence(group))


def claims_table(findings):
    lines = ["| claim | kind | source | paper | ours (mean [95% CI], method) | verdict |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {f.claim} | {f.kind} | {f.source} | {f.paper} | {f.ours} | {f.verdict} |" for f in findings]
    return "\n".join(lines)


def verdict_counts(findings):
    """{verdict: how many findings have it}, in VERDICTS order, verdicts that occur only."""
    return {v: n for v in VERDICTS if (n := sum(1 for f in findings if f.verdict == v))}
