"""The numbers of a study: its finished points grouped over the grid's axes, per-round statistics across
seeds, and confidence intervals of differences (ticket vs control, group vs group).

Axes over `seed` or `data_seed` are replicates: the points that differ only
there form one group, and statistics are taken across them. Every other axis
splits groups. A control's further draws (NAME.2, NAME.3, ...) are pooled
with its first draw: at a round where they ran, the control's values are
every draw of every seed. The 95% interval of a mean is Student's t interval;
differences are paired by seed when both sides have one value per seed and
the same seeds (else the two sides are independent), and their 95% interval
is Student's t interval of the paired differences (Welch's when unpaired,
Fieller's for a ratio of means). Where something happens (the round of the
fastest tickets) is located in percentile-bootstrap resamples of the seeds,
each with all its rounds, drawn with a seeded generator so that a report is
reproducible. Nothing here imports TensorFlow, Ray or matplotlib.
"""

import collections
import dataclasses
import itertools
import math
import pathlib

import numpy as np

from tf_lottery import plots
from tf_lottery import results
from tf_lottery.study import folder
from tf_lottery.study import grid as grid_lib

REPLICATE_SETTINGS = ("seed", "data_seed")
FIELDS = {"early_stop_test_accuracy": "test acc @es", "early_stop_iteration": "early-stop it",
          "final_test_accuracy": "final test acc"}
BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
# Student's t quantile 0.975 by degrees of freedom (1..30); above 30 the normal quantile plus 2.4/df.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)

RoundStat = collections.namedtuple(
    "RoundStat", "round remaining mean std low high ci_low ci_high n")


def t_interval(values):
    """(low, high): the 95% Student t interval of the mean of `values`; (None, None) below two values."""
    values = np.asarray(values, float)
    n = len(values)
    if n < 2:
        return None, None
    half = _t_quantile(n - 1) * float(values.std(ddof=1)) / math.sqrt(n)
    return float(values.mean()) - half, float(values.mean()) + half


def family(control):
    """The control a branch name belongs to: random_reinit for random_reinit and random_reinit.2."""
    return None if control is None else control.split(".")[0]


@dataclasses.dataclass(frozen=True)
class Group:
    """The finished points at one position of every non-replicate axis, keyed by their replicate values."""
    positions: tuple          # position in each non-replicate axis
    label: str
    runs: dict                # replicate key (tuple of seed values) -> plots.Run

    def records(self, key, control=None):
        return self.runs[key].records(control)

    def values(self, key, r, field, control=None):
        """The values of `field` at round r of one replicate: IMP's, or every draw of a control's."""
        run = self.runs[key]
        if control is None:
            records = run.records()
            return [float(records[r][field])] if r in records else []
        branches = [name for name in run.summary["controls"] if family(name) == control]
        return [float(run.records(name)[r][field]) for name in branches if r in run.records(name)]


@dataclasses.dataclass(frozen=True)
class StudyData:
    """A study folder read back: spec, study.json's entries, axes, and the groups of finished points."""
    study_dir: pathlib.Path
    spec: dict
    entries: list
    axes: tuple
    group_axes: tuple         # indices of the non-replicate axes
    groups: tuple

    @property
    def base(self):
        return self.spec["base"]

    def controls(self):
        """Controls (first draws) with records in every finished point, in the first one's order."""
        runs = [run for group in self.groups for run in group.runs.values()]
        return [name for name in (plots.control_names(runs) if runs else []) if family(name) == name]


def is_replicate_axis(axis):
    return all(name in REPLICATE_SETTINGS for name in axis.names)


def _position(axis, values):
    """The position of a point's values in one axis."""
    return next(i for i in range(len(axis.values)) if all(
        values.get(n) == v for n, v in axis.assignment(i).items()))


def load(study_dir):
    """StudyData of a study folder (finished points only, read through tf_lottery.results)."""
    study_dir = pathlib.Path(study_dir)
    spec, study = folder.read_study(study_dir)
    axes = tuple(grid_lib.Axis.from_json(a) for a in spec["grid"])
    group_axes = tuple(i for i, axis in enumerate(axes) if not is_replicate_axis(axis))
    replicate_axes = [axis for axis in axes if is_replicate_axis(axis)]
    members = {}
    for entry in study["points"]:
        directory = study_dir / entry["folder"]
        if entry["state"] != "finished" or not results.config_path(directory).is_file():
            continue
        values = entry["values"]
        positions = tuple(_position(axes[i], values) for i in group_axes)
        key = tuple(values[n] for axis in replicate_axes for n in axis.names)
        run = plots.Run(directory, results.read_config(directory), results.read_summary(directory))
        members.setdefault(positions, {})[key] = run
    groups = []
    for positions in itertools.product(*(range(len(axes[i].values)) for i in group_axes)):
        if positions in members:
            label = "; ".join(axes[i].label(p) for i, p in zip(group_axes, positions)) or "all points"
            groups.append(Group(positions, label, members[positions]))
    return StudyData(study_dir, spec, study["points"], axes, group_axes, tuple(groups))


def round_stats(group, field, control=None):
    """[RoundStat] over the group's replicates (and a control's draws), per round its first draw
    finished in all of them (std with n - 1; 0 for one value)."""
    per_run = [run.records(control) for run in group.runs.values()]
    rows = []
    for r in sorted(set.intersection(*(set(records) for records in per_run))):
        values = np.array([v for key in group.runs for v in group.values(key, r, field, control)])
        remaining = np.mean([100 * records[r]["remaining_fraction"] for records in per_run])
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(RoundStat(r, float(remaining), float(values.mean()), std, float(values.min()),
                              float(values.max()), *t_interval(values), len(values)))
    return rows


def _t_quantile(df):
    """Student's t quantile 0.975 for `df` degrees of freedom (rounded down: the wider interval)."""
    df = max(1, int(df))
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


def _mean_variances(a, b):
    """The variances of mean(a) and of mean(b)."""
    return a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)


def _welch_df(va, vb, na, nb):
    """Welch-Satterthwaite degrees of freedom of a sum of two mean variances from na and nb values."""
    if va + vb == 0:
        return min(na, nb) - 1
    return (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))


def mean_difference(a, b, paired):
    """(mean of a - b, low, high): the mean difference and its 95% interval.

    Paired (a[i] and b[i] belong together, same seed): Student's t interval
    of the differences; unpaired: Welch's interval. None with fewer than two
    values a side. Not a percentile bootstrap, which over 3 seeds never
    leaves the range of the values (a range that holds the true mean 75% of
    the time) and at 5 still covers less than 94%.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if paired:
        differences = a - b
        return (float(differences.mean()), *t_interval(differences))
    mean = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return mean, None, None
    va, vb = _mean_variances(a, b)
    half = _t_quantile(_welch_df(va, vb, len(a), len(b))) * math.sqrt(va + vb)
    return mean, mean - half, mean + half


def _fieller(a, b):
    """(low, high): Fieller's 95% interval of mean(a) / mean(b) for independent sides, or (None, None)
    when mean(b) is not clear of zero (the interval is then unbounded)."""
    ma, mb = a.mean(), b.mean()
    va, vb = _mean_variances(a, b)
    t2 = _t_quantile(_welch_df(va, (ma / mb) ** 2 * vb, len(a), len(b))) ** 2
    # (ma - R mb)^2 = t^2 (va + R^2 vb), a quadratic in R.
    qa, qb, qc = mb ** 2 - t2 * vb, -2 * ma * mb, ma ** 2 - t2 * va
    if qa <= 0:
        return None, None
    root = math.sqrt(max(qb ** 2 - 4 * qa * qc, 0.0))
    return float((-qb - root) / (2 * qa)), float((-qb + root) / (2 * qa))


def ratio_of_means(a, b):
    """(mean(a) / mean(b), low, high): the ratio of means of two independent sides and Fieller's 95%
    interval; None with fewer than two values a side, or when mean(b) is not clear of zero."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ratio = float(a.mean() / b.mean())
    if min(len(a), len(b)) < 2:
        return ratio, None, None
    return (ratio, *_fieller(a, b))


def bootstrap_locations(matrix, locate):
    """Where `locate(column means)` puts it in each bootstrap resample of the rows of `matrix`.

    Rows are replicates (seeds), columns rounds; a resample draws rows with
    replacement, so each seed's rounds stay together. Returns one location
    per resample (whatever `locate` returns: a column index, or None).
    """
    matrix = np.asarray(matrix, float)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = matrix[rng.integers(0, len(matrix), (BOOTSTRAP_SAMPLES, len(matrix)))].mean(axis=1)
    return [locate(row) for row in means]


def likely_locations(locations, level=LEVEL):
    """The most frequent locations whose shares add up to at least `level` (ties kept), sorted."""
    counts = collections.Counter(locations).most_common()
    chosen, total = [], 0
    for value, count in counts:
        if total >= level * len(locations) and count < counts[len(chosen) - 1][1]:
            break
        chosen.append(value)
        total += count
    return sorted(chosen, key=lambda v: (v is None, v))


def side_values(side, r, field):
    """{replicate key: [values]} of one side, (group, control or None), at round r."""
    group, control = side
    return {key: group.values(key, r, field, control) for key in sorted(group.runs)}


def difference_rows(side_a, side_b, field):
    """Per round finished on both sides: (round, % remaining of a, n, mean a - b, low, high).

    A side is (group, control or None); replicates pair by key when both
    sides have one value for each of the same keys (a control's further
    draws make it unpaired), and n is then the number of pairs, else the
    smaller side's count.
    """
    (group_a, control_a), (group_b, control_b) = side_a, side_b
    records_a = [group_a.records(k, control_a) for k in sorted(group_a.runs)]
    records_b = [group_b.records(k, control_b) for k in sorted(group_b.runs)]
    rounds = set.intersection(*(set(r) for r in records_a + records_b))
    rows = []
    for r in sorted(rounds):
        a, b = side_values(side_a, r, field), side_values(side_b, r, field)
        paired = a.keys() == b.keys() and all(len(v) == 1 for v in (*a.values(), *b.values()))
        a, b = [v for vs in a.values() for v in vs], [v for vs in b.values() for v in vs]
        remaining = float(np.mean([100 * recs[r]["remaining_fraction"] for recs in records_a]))
        rows.append((r, remaining, min(len(a), len(b)), *mean_difference(a, b, paired)))
    return rows


def gap_values(group, control, r, field):
    """{replicate key: IMP's value minus the mean of the control's draws} at round r, for the
    replicates that have both."""
    gaps = {}
    for key in sorted(group.runs):
        imp, other = group.values(key, r, field), group.values(key, r, field, control)
        if imp and other:
            gaps[key] = imp[0] - float(np.mean(other))
    return gaps


def gap_difference_rows(group, reference, control, field):
    """How much the ticket-versus-control gap moves from `reference` to `group`.

    Per round where both groups have IMP and the control in every
    replicate: (round, % remaining of group, n, mean gap of group minus mean
    gap of reference, low, high), paired by replicate when both groups have
    the same ones (a difference of differences).
    """
    rounds = set.intersection(*(set(run.records()) & set(run.records(control))
                                for g in (group, reference) for run in g.runs.values()))
    rows = []
    for r in sorted(rounds):
        a, b = gap_values(group, control, r, field), gap_values(reference, control, r, field)
        paired = a.keys() == b.keys()
        remaining = float(np.mean([100 * run.records()[r]["remaining_fraction"] for run in group.runs.values()]))
        rows.append((r, remaining, min(len(a), len(b)),
                     *mean_difference(list(a.values()), list(b.values()), paired)))
    return rows


def comparisons(data):
    """[(axis, position, context label, group, reference group)]: along each non-replicate axis with
    two or more positions, every position against the first, the other axes held fixed."""
    by_positions = {g.positions: g for g in data.groups}
    found = []
    for slot, axis_index in enumerate(data.group_axes):
        axis = data.axes[axis_index]
        for group in data.groups:
            if group.positions[slot] != 0:
                continue
            for position in range(1, len(axis.values)):
                other = by_positions.get(group.positions[:slot] + (position,) + group.positions[slot + 1:])
                if other is None:
                    continue
                context = "; ".join(data.axes[i].label(p) for s, (i, p) in enumerate(
                    zip(data.group_axes, group.positions)) if s != slot) or "all points"
                found.append((axis, position, context, other, group))
    return found
