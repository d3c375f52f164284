"""The numbers of a study: its finished points grouped over the grid's axes, per-round statistics across
seeds, and intervals of differences (ticket vs control, round vs round, group vs group).

Axes over `seed` or `data_seed` are replicates: the points that differ only
there form one group, and statistics are taken across them. Every other axis
splits groups. The experiment seed is the unit of every interval: a
control's further draws (NAME.2, NAME.3, ...) are averaged with its first
draw within their seed before anything is compared, and their spread within
the seed is reported apart (`RoundStat.within_sd`). The 95% interval of a
mean is Student's t interval of the seed values; differences and ratios are
paired by seed when both sides have the same seeds, and independent
otherwise (tf_lottery.study.inference says how each is computed, and each
Estimate names its method). Nothing here imports TensorFlow, Ray or
matplotlib.
"""

import collections
import dataclasses
import itertools
import pathlib

import numpy as np

from tf_lottery import plots
from tf_lottery import results
from tf_lottery.study import folder
from tf_lottery.study import grid as grid_lib
from tf_lottery.study import inference

REPLICATE_SETTINGS = ("seed", "data_seed")
FIELDS = {"early_stop_test_accuracy": "test acc @es", "early_stop_iteration": "early-stop it",
          "final_test_accuracy": "final test acc"}
LEVEL = inference.LEVEL

# Per round over the seeds (each seed's draws averaged first): the mean, standard deviation, min and
# max of the seed values, the 95% t interval, n seeds, the draws in all, and the pooled standard
# deviation of draws within a seed (None with one draw per seed).
RoundStat = collections.namedtuple(
    "RoundStat", "round remaining mean std low high ci_low ci_high n draws within_sd")


def t_interval(values):
    """(low, high): the 95% Student t interval of the mean of `values`; (None, None) below two values."""
    return inference.t_interval(values)


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
    """[RoundStat] over the group's seeds, per round the control's first draw finished in all of them;
    a seed's draws are averaged first (std with n - 1; 0 for one seed)."""
    per_run = [run.records(control) for run in group.runs.values()]
    rows = []
    for r in sorted(set.intersection(*(set(records) for records in per_run))):
        draws = side_values((group, control), r, field)
        values = np.array(list(inference.seed_means(draws).values()))
        remaining = np.mean([100 * records[r]["remaining_fraction"] for records in per_run])
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(RoundStat(r, float(remaining), float(values.mean()), std, float(values.min()),
                              float(values.max()), *t_interval(values), len(values),
                              sum(len(d) for d in draws.values()), inference.within_seed_sd(draws)))
    return rows


def compare(values_a, values_b, ratio=False):
    """Side a minus (or over) side b, each {seed: [draws]}, as an inference.Estimate.

    A seed's draws are averaged first. Sides with the same seeds are paired
    by seed (t interval of the per-seed differences, or of the per-seed log
    ratios for a ratio); sides with other seeds are independent (Welch's
    interval, Fieller's for a ratio of means).
    """
    a, b = inference.seed_means(values_a), inference.seed_means(values_b)
    if a.keys() == b.keys():
        keys = sorted(a)
        first, second = [a[k] for k in keys], [b[k] for k in keys]
        if ratio:
            return inference.paired_ratio(first, second)
        return inference.paired_difference(first, second)
    first, second = list(a.values()), list(b.values())
    return inference.fieller_ratio(first, second) if ratio else inference.welch_difference(first, second)


def seed_locations(matrix, locate):
    """`locate(row)` of each seed's row of `matrix` (seeds x columns): where each seed puts it."""
    return [locate(np.asarray(row, float)) for row in matrix]


def side_values(side, r, field):
    """{replicate key: [values]} of one side, (group, control or None), at round r."""
    group, control = side
    return {key: group.values(key, r, field, control) for key in sorted(group.runs)}


DifferenceRow = collections.namedtuple("DifferenceRow", "round remaining estimate")


def difference_rows(side_a, side_b, field):
    """[DifferenceRow] per round finished on both sides: % remaining of a and the Estimate of a - b.

    A side is (group, control or None); a seed's draws are averaged first,
    and the sides pair by seed when they have the same seeds (`compare`).
    """
    (group_a, control_a), (group_b, control_b) = side_a, side_b
    records_a = [group_a.records(k, control_a) for k in sorted(group_a.runs)]
    records_b = [group_b.records(k, control_b) for k in sorted(group_b.runs)]
    rounds = set.intersection(*(set(r) for r in records_a + records_b))
    rows = []
    for r in sorted(rounds):
        remaining = float(np.mean([100 * recs[r]["remaining_fraction"] for recs in records_a]))
        rows.append(DifferenceRow(r, remaining, compare(side_values(side_a, r, field),
                                                        side_values(side_b, r, field))))
    return rows


def gap_values(group, control, r, field):
    """{seed: [IMP's value minus the mean of the control's draws]} at round r, for the seeds that
    have both."""
    gaps = {}
    for key in sorted(group.runs):
        imp, other = group.values(key, r, field), group.values(key, r, field, control)
        if imp and other:
            gaps[key] = [imp[0] - float(np.mean(other))]
    return gaps


def gap_difference_rows(group, reference, control, field):
    """How much the ticket-versus-control gap moves from `reference` to `group`.

    [DifferenceRow] per round where both groups have IMP and the control in
    every seed: the Estimate of the gap of group minus the gap of reference
    (a difference of differences), paired by seed when both groups have the
    same seeds.
    """
    rounds = set.intersection(*(set(run.records()) & set(run.records(control))
                                for g in (group, reference) for run in g.runs.values()))
    rows = []
    for r in sorted(rounds):
        remaining = float(np.mean([100 * run.records()[r]["remaining_fraction"] for run in group.runs.values()]))
        rows.append(DifferenceRow(r, remaining, compare(gap_values(group, control, r, field),
                                                        gap_values(reference, control, r, field))))
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
