"""A paper's claims checked against a study: each restated with the paper's number, ours and a verdict.

A claim set is one `@CLAIM_SETS.register(name)` function of an Evidence (one
group of a study) returning Findings. Rounds are found by the share of
weights remaining (the round nearest the paper's size, within 15% of it).
Ours is the mean over seeds (and a control's draws) with a 95% interval:
Student's t interval of a difference (paired by seed where each side has
one value per seed, Welch's otherwise) or Fieller's of a ratio of means, as
in tf_lottery.study.statistics.

Verdicts. For a claimed effect v (a difference, or a ratio) and our 95%
interval [low, high]:
- agrees: v lies in the interval (for 'at least v': high >= v) and no effect
  does not;
- inconclusive: both v and no effect lie in the interval;
- agrees in direction: the interval lies on v's side of no effect (0; 1 for
  a ratio) but excludes v;
- disagrees: the interval holds no effect but not v, or lies on the other side.
For a claimed direction only (one-shot tickets are more accurate): agrees
when every interval is on that side, inconclusive when every mean is.
A claim about where something happens (at which size) is located in every
bootstrap resample of the seeds too: it agrees when the paper's round is
among the likeliest rounds that hold 95% of the resamples (ours is the
round of the means), agrees in direction when ours is within two rounds of
the paper's, and disagrees otherwise. A claim whose rounds or controls the
study lacks is 'not measured', and one whose numbers have no interval (one
seed, one value) 'needs 2+ seeds'.
"""

import dataclasses

import numpy as np

from tf_lottery.registry import Registry
from tf_lottery.study import statistics

CLAIM_SETS = Registry("claim set")

AGREES, DIRECTION, DISAGREES, MISSING = ("agrees", "agrees in direction", "disagrees", "not measured")
INCONCLUSIVE = "inconclusive"
NO_INTERVAL = "needs 2+ seeds"
ACCURACY, ITERATION = "early_stop_test_accuracy", "early_stop_iteration"
_NEAR = 0.15  # a round stands for a paper's size within this relative distance


@dataclasses.dataclass(frozen=True)
class Finding:
    claim: str    # the paper's claim, restated
    source: str   # where the paper makes it
    paper: str    # the paper's number
    ours: str     # our number, with its interval
    verdict: str


class Evidence:
    """One study group's numbers, looked up by control and % of weights remaining."""

    def __init__(self, group):
        self.group = group

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
        """(estimate, low, high) of side a minus (or over) side b; a side is (control, round)."""
        values_a = statistics.side_values((self.group, a[0]), a[1], field)
        values_b = statistics.side_values((self.group, b[0]), b[1], field)
        paired = values_a.keys() == values_b.keys() and all(
            len(v) == 1 for v in (*values_a.values(), *values_b.values()))
        flat_a = [v for vs in values_a.values() for v in vs]
        flat_b = [v for vs in values_b.values() for v in vs]
        if ratio:
            return statistics.ratio_of_means(flat_a, flat_b)
        return statistics.mean_difference(flat_a, flat_b, paired)


def effect_verdict(estimate, low, high, claimed, null=0.0, at_least=False):
    """The verdict on a claimed effect `claimed` given our estimate and 95% interval."""
    if low is None:
        return NO_INTERVAL
    if (low <= claimed <= high) or (at_least and high >= claimed):
        return INCONCLUSIVE if low <= null <= high and claimed != null else AGREES
    side = 1 if claimed > null else -1
    if (low - null) * side > 0 and (high - null) * side > 0:
        return DIRECTION
    return DISAGREES


def location_verdict(ours, paper, likely):
    """Agrees when the paper's round is among the `likely` ones (95% of the bootstrap resamples), in
    direction when ours is within two rounds of it."""
    if ours is None or paper is None:
        return MISSING
    return AGREES if paper in likely else DIRECTION if abs(ours - paper) <= 2 else DISAGREES


def _located(evidence, rounds, field, sides, locate):
    """(round of the means, likely rounds): `locate(values over sides)` gives an index into `rounds`."""
    matrix = evidence.matrix(field, sides)
    where = locate(np.mean(matrix, axis=0))
    likely = statistics.likely_locations(statistics.bootstrap_locations(matrix, locate))
    return (None if where is None else rounds[where]), [None if i is None else rounds[i] for i in likely]


def _likely_text(evidence, likely):
    where = ", ".join("nowhere" if r is None else f"{evidence.remaining(r):.1f}%" for r in likely)
    return f" [95% of resamples: {where}]"


def _interval(low, high, number):
    return " (one seed: no interval)" if low is None else f" [{number(low)}, {number(high)}]"


def _points(value, low, high):
    number = lambda v: f"{100 * v:+.2f}"  # noqa: E731
    return f"{number(value)} points{_interval(low, high, number)}"


def _iterations(value, low, high):
    number = lambda v: f"{v:+.0f}"  # noqa: E731
    return f"{number(value)} iterations{_interval(low, high, number)}"


def _ratio(value, low, high):
    number = lambda v: f"{v:.2f}"  # noqa: E731
    return f"{number(value)}x{_interval(low, high, number)}"


def _missing(claim, source, paper, what):
    return Finding(claim, source, paper, f"not measured ({what})", MISSING)


def _at(evidence, r):
    return f"at {evidence.remaining(r):.1f}%"


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
        return _missing(claim, source, paper, "random_reinit near 21.1%")
    found = evidence.compare(ITERATION, ("random_reinit", r), (None, r), ratio=True)
    return Finding(claim, source, paper, f"{_ratio(*found)} {_at(evidence, r)}",
                   effect_verdict(*found, 2.51, null=1.0))


def _against_control(evidence, claim, source, paper, percent, control, verdict, means=False):
    """A claim on IMP's accuracy minus a control's at `percent` % remaining; verdict(found) judges it."""
    r = evidence.round_at(percent, control)
    if r is None:
        return _missing(claim, source, paper, f"{control} near {percent}%")
    found = evidence.compare(ACCURACY, (None, r), (control, r))
    extra = (f" ({100 * evidence.mean(ACCURACY, r):.2f}% against "
             f"{100 * evidence.mean(ACCURACY, r, control):.2f}%)") if means else ""
    return Finding(claim, source, paper, f"{_points(*found)} {_at(evidence, r)}{extra}", verdict(found))


def _accuracy_versus_reinit(evidence):
    return _against_control(
        evidence, "At 21.1% the ticket is half a point more accurate than its mask reinitialised",
        "Frankle & Carbin 2019, Section 2", "+0.5 points", 21.1, "random_reinit",
        lambda found: effect_verdict(*found, 0.005))


def _fastest_size(evidence):
    claim = "Tickets learn fastest at 21.1%; below that, learning slows"
    source, paper = "Frankle & Carbin 2019, Section 2 and Figure 3", "21.1%"
    rounds = [r for r in evidence.rounds() if r > 0]
    if not rounds or evidence.round_at(21.1) is None:
        return _missing(claim, source, paper, "IMP rounds down to 21.1%")
    rounds = sorted(rounds)
    fastest, likely = _located(evidence, rounds, ITERATION, [(None, r) for r in rounds],
                               lambda means: int(np.argmin(means)))
    return Finding(claim, source, paper,
                   f"fastest {_at(evidence, fastest)} ({evidence.mean(ITERATION, fastest):.0f} iterations)"
                   + _likely_text(evidence, likely),
                   location_verdict(fastest, evidence.round_at(21.1), likely))


def _gain_at_13_5(evidence):
    claim = "At 13.5% the ticket is more than 0.3 points more accurate than the original network"
    source, paper = "Frankle & Carbin 2019, Section 2", ">= +0.3 points"
    r = evidence.round_at(13.5)
    if r is None:
        return _missing(claim, source, paper, "IMP near 13.5%")
    found = evidence.compare(ACCURACY, (None, r), (None, 0))
    return Finding(claim, source, paper, f"{_points(*found)} {_at(evidence, r)}",
                   effect_verdict(*found, 0.003, at_least=True))


def _back_at_3_6(evidence, field, claim, paper, text, best):
    source = "Frankle & Carbin 2019, Section 2"
    r = evidence.round_at(3.6)
    if r is None:
        return _missing(claim, source, paper, "IMP near 3.6%")
    found = evidence.compare(field, (None, r), (None, 0))
    verdict = NO_INTERVAL if found[1] is None else AGREES if found[1] <= 0 <= found[2] else None
    if verdict is None:
        means = {k: evidence.mean(field, k) for k in evidence.rounds()}
        peak = best(means.values())
        between = min(means[0], peak) < means[r] < max(means[0], peak)
        verdict = DIRECTION if between else DISAGREES
    return Finding(claim, source, paper, f"{text(*found)} {_at(evidence, r)} against round 0", verdict)


def _accuracy_back_at_3_6(evidence):
    return _back_at_3_6(evidence, ACCURACY, "At 3.6% the ticket's accuracy is back to the original "
                        "network's", "+0 points", _points, max)


def _speed_back_at_3_6(evidence):
    return _back_at_3_6(evidence, ITERATION, "At 3.6% the ticket's early stop is back to the original "
                        "network's", "+0 iterations", _iterations, min)


def _reinit_drops_at_21(evidence):
    claim = "Reinitialised, the ticket's mask falls below the original accuracy from 21.1% on"
    source, paper = "Frankle & Carbin 2019, Section 2 and Figure 3", "21.1%"
    rounds = sorted(evidence.rounds("random_reinit"))
    if not rounds or evidence.round_at(21.1, "random_reinit") is None:
        return _missing(claim, source, paper, "random_reinit down to 21.1%")

    def first_of_the_rounds_below(values):  # values: round 0's IMP accuracy, then the control's
        below = np.asarray(values[1:]) < values[0]
        return next((i for i in range(len(below)) if below[i:].all()), None)

    drop, likely = _located(evidence, rounds, ACCURACY,
                            [(None, 0)] + [("random_reinit", r) for r in rounds], first_of_the_rounds_below)
    if drop is None:
        return Finding(claim, source, paper, f"never below (round 0: "
                                             f"{100 * evidence.mean(ACCURACY, 0):.2f}%)"
                       + _likely_text(evidence, likely), DISAGREES)
    return Finding(claim, source, paper,
                   f"from {evidence.remaining(drop):.1f}% on" + _likely_text(evidence, likely),
                   location_verdict(drop, evidence.round_at(21.1, "random_reinit"), likely))


def _random_pruning_at_10_7(evidence):
    return _against_control(
        evidence, "At 10.7% IMP is more accurate than random pruning (98.3 +- 0.1% against 97.5 +- 0.3%)",
        "Frankle et al. 2019, as quoted in issue 17", "+0.8 points", 10.7, "random_prune",
        lambda found: effect_verdict(*found, 0.008), means=True)


def _one_shot_rounds(evidence, high, low):
    return [r for r, percent in evidence.rounds("one_shot").items() if low <= percent <= high]


def _all_rounds_verdict(found, good):
    """For a claimed direction: agrees if every interval is on the good side, inconclusive if every
    mean is but some interval holds no effect, disagrees otherwise."""
    if any(f[1] is None for f in found):
        return NO_INTERVAL
    if all(good(f[1]) and good(f[2]) for f in found):
        return AGREES
    return INCONCLUSIVE if all(good(f[0]) for f in found) else DISAGREES


def _one_shot_versus_dense(evidence, claim, paper, field, high, low, text, good):
    source = "Frankle & Carbin 2019, Section 2 (one-shot pruning)"
    rounds = _one_shot_rounds(evidence, high, low)
    if not rounds:
        return _missing(claim, source, paper, f"one_shot between {low}% and {high}%")
    found = [evidence.compare(field, ("one_shot", r), (None, 0)) for r in sorted(rounds)]
    ours = "; ".join(f"{text(*f)} {_at(evidence, r)}" for r, f in zip(sorted(rounds), found))
    return Finding(claim, source, paper, ours, _all_rounds_verdict(found, good))


def _one_shot_speed(evidence):
    return _one_shot_versus_dense(
        evidence, "One-shot tickets between 67.5% and 17.6% reach early stop sooner than the original "
        "network", "< 0 iterations", ITERATION, 67.5, 17.6, _iterations, lambda v: v < 0)


def _one_shot_accuracy(evidence):
    return _one_shot_versus_dense(
        evidence, "One-shot tickets between 95.0% and 5.17% are more accurate than the original network",
        "> 0 points", ACCURACY, 95.0, 5.17, _points, lambda v: v > 0)


def _iterative_beats_one_shot(evidence):
    return _against_control(
        evidence, "At small sizes (7.0%) iterative pruning gives more accurate tickets than one-shot pruning",
        "Frankle & Carbin 2019, Section 2 and Figure 4", "> 0 points", 7.0, "one_shot",
        lambda found: _all_rounds_verdict([found], lambda v: v > 0))


def check(group, name):
    """The Findings of claim set `name` on one study group."""
    return CLAIM_SETS.get(name)(Evidence(group))


def claims_table(findings):
    lines = ["| claim | source | paper | ours (mean [95% CI]) | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {f.claim} | {f.source} | {f.paper} | {f.ours} | {f.verdict} |" for f in findings]
    return "\n".join(lines)
