"""A study's plan: the base config and its --grid axes, checked and expanded into points with folders.

An axis is one --grid entry, `name=v1,v2,...` over one setting (the lottery
flags' names), or `a:b=x1:y1,x2:y2` over settings that vary together (e.g.
`reset:rewind_step=init:0,rewind:500`). Values of list settings (`hidden`,
`controls`, ...) are separated by `;` instead of `,` (`hidden=300,100;100,30`).
Every value is parsed by the generated experiment flags and checked as part of
the point's full ExperimentConfig, so each check of the binaries applies; any
failure is a ConfigError on `grid` that names the entry. Points are the
product of the axes, in the order given. Each point's initial mask is read,
and where the data loads here, each point's bounds that need it
(tf_lottery.bounds.check_data: validation and batch within the training
split, LeNet's size, layers and rounds) are checked too; data that does not
load here is left to the point's own run (it may be on other nodes).
Nothing here imports TensorFlow or Ray and nothing is written.

A point's folder is the one the lottery binary names (`config.directory()`
with `root_dir` = the study folder). A setting that does not change results
(such as `data_dir`) is not in that name, so an axis over one adds a folder
level `<axis>_<index>` to keep its points apart.
"""

import dataclasses
import functools
import hashlib
import itertools
import json
import pathlib

from absl import flags

from tf_lottery import bounds
from tf_lottery import config as config_lib
from tf_lottery import data
from tf_lottery import settings
from tf_lottery import flags as setting_flags
from tf_lottery import results
from tf_lottery.settings import ConfigError

FIELD = "grid"
# Settings a study decides itself, with what to use instead.
_NOT_AXES = {
    "experiment_dir": "a study names every point's folder; give --study_dir",
    "root_dir": "a study names every point's folder; give --study_dir",
    "replicates": "give a seed axis instead (--grid=seed=0,1,2)",
}
_LINK = ":"


@functools.cache
def _fields():
    """{flat name: dataclass field} of every experiment setting."""
    return {settings.flag_name(f): f for cls in config_lib.GROUPS.values()
            for f in settings.flag_fields(cls)}


def _is_list(field):
    return settings.KINDS[field.metadata["kind"]].sequence


def changes_results(name):
    """Whether the setting `name` enters the experiment folder's hash."""
    return bool(_fields()[name].metadata["result"])


@dataclasses.dataclass(frozen=True)
class Axis:
    """One --grid entry: the settings it varies and, per position, their values (JSON-ready)."""
    names: tuple
    values: tuple          # one tuple of values (one per name) per position
    entry: str             # the --grid text, for messages

    @property
    def name(self):
        return _LINK.join(self.names)

    def assignment(self, position):
        """{flat name: value} of one position."""
        return dict(zip(self.names, self.values[position]))

    def label(self, position):
        """'reset=rewind, rewind_step=500' for one position."""
        return ", ".join(f"{k}={_text(v)}" for k, v in self.assignment(position).items())

    def to_json(self):
        return {"names": list(self.names), "values": [list(v) for v in self.values]}

    @classmethod
    def from_json(cls, value):
        return cls(tuple(value["names"]), tuple(tuple(v) for v in value["values"]),
                   _entry_text(value["names"], value["values"]))


def _text(value):
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _entry_text(names, values):
    separator = ";" if any(_is_list(_fields()[n]) for n in names) else ","
    return f"{_LINK.join(names)}=" + separator.join(_LINK.join(_text(v) for v in position)
                                                   for position in values)


def _fail(entry, message):
    raise ConfigError(FIELD, f"{entry}: {message}")


def _parse_value(entry, name, text):
    """One value parsed as the flag --name=text would be."""
    flag_values = flags.FlagValues()
    setting_flags.define_experiment_flags(flag_values)
    try:
        flag_values(["study", f"--{name}={text}"])
    except flags.Error as error:
        _fail(entry, str(error).splitlines()[0])
    return flag_values[name].value


def parse_entry(entry):
    """The Axis of one --grid entry; ConfigError naming the entry if it is malformed or unknown."""
    head, sep, tail = str(entry).partition("=")
    if not sep or not head or not tail:
        _fail(entry, "must look like name=value1,value2 (or a:b=x1:y1,x2:y2)")
    names = tuple(n.strip() for n in head.split(_LINK))
    fields = _fields()
    for name in names:
        if name not in fields:
            _fail(entry, f"unknown setting '{name}' (the lottery flags' names are accepted)")
        if name in _NOT_AXES:
            _fail(entry, f"'{name}' cannot be an axis: {_NOT_AXES[name]}")
    if len(set(names)) != len(names):
        _fail(entry, "names a setting twice")
    separator = ";" if any(_is_list(fields[n]) for n in names) else ","
    positions = []
    for text in tail.split(separator):
        parts = text.split(_LINK) if len(names) > 1 else [text]
        if len(parts) != len(names):
            _fail(entry, f"value '{text}' must give {len(names)} values joined by '{_LINK}'")
        positions.append(tuple(_normalize(entry, n, _parse_value(entry, n, p.strip()))
                               for n, p in zip(names, parts)))
    if len(set(map(repr, positions))) != len(positions):
        _fail(entry, "gives a value twice")
    return Axis(names, tuple(positions), str(entry))


def _normalize(entry, name, value):
    """A parsed flag value as config.json holds it (e.g. '500it' -> 500, ['300', '100'] -> [300, 100])."""
    kind = settings.KINDS[_fields()[name].metadata["kind"]]
    if kind.parse is not None and value is not None:
        try:
            value = kind.parse(value, name)
        except ConfigError as error:
            _fail(entry, f"{error.field}: {error.message}")
    return list(value) if isinstance(value, tuple) else value


def axes_from_dict(grid):
    """Axes from {name: [values]} (or {(a, b): [(x, y), ...]}) as given from Python."""
    entries = []
    for key, values in grid.items():
        names = (key,) if isinstance(key, str) else tuple(key)
        if names[0] not in _fields():
            _fail(f"{_LINK.join(names)}=...", f"unknown setting '{names[0]}'")
        positions = [v if len(names) > 1 else (v,) for v in values]
        entries.append(_entry_text(names, positions))
    return entries


def parse_grid(entries):
    """The Axis list of --grid entries (strings, or a dict from Python); every setting in one axis only."""
    if isinstance(entries, dict):
        entries = axes_from_dict(entries)
    axes = [entry if isinstance(entry, Axis) else parse_entry(entry) for entry in entries]
    seen = {}
    for axis in axes:
        for name in axis.names:
            if name in seen:
                _fail(axis.entry, f"'{name}' is already an axis in {seen[name]}")
            seen[name] = axis.entry
    return axes


@dataclasses.dataclass(frozen=True)
class Point:
    """One experiment of the study: its axis positions, config and folder.

    `error` is set when the folder could not be resolved (the data of an
    epoch-based step count failed to load): the point fails without running.
    """
    index: int
    positions: tuple       # index into each axis's values
    values: dict           # {flat name: value} of the axes
    config: config_lib.ExperimentConfig
    directory: pathlib.Path
    error: str | None = None

    def label(self):
        return " ".join(f"{k}={_text(v)}" for k, v in self.values.items()) or "base"


@dataclasses.dataclass(frozen=True)
class Plan:
    """The study: base config, axes, folder and points (checked, nothing written)."""
    base: config_lib.ExperimentConfig
    axes: tuple
    study_dir: pathlib.Path
    points: tuple

    def spec(self):
        """What must not change between runs in one study folder (JSON-ready)."""
        return {"base": self.base.flat(), "grid": [axis.to_json() for axis in self.axes]}


def _refusal(error, axes, values):
    """The ConfigError of a point's config, on `grid` naming the entry (or the point) it comes from."""
    if not axes:
        return error
    owner = [a.entry for a in axes if error.field in a.names]
    hint = "; settings that vary together go in one axis (a:b=x1:y1,x2:y2)" if len(axes) > 1 else ""
    if owner:
        return ConfigError(FIELD, f"{owner[0]}: {error}{hint}")
    labels = ", ".join(f"{k}={_text(v)}" for k, v in values.items())
    return ConfigError(FIELD, f"point {labels} of {' '.join(a.entry for a in axes)}: {error}{hint}")


def _point_config(base, axes, positions):
    values = {}
    for axis, position in zip(axes, positions):
        values.update(axis.assignment(position))
    try:
        return base.replace(**values), values
    except ConfigError as error:
        raise _refusal(error, axes, values) from None


def _checker():
    """config -> its number of training examples (the DataError text if its data does not load, None if it
    is not read here), its data and initial mask read once each. The data is read without a validation
    split (bounds.check_data holds it out), and only from a data_dir or the package unless the steps
    are in epochs: without a data_dir, TFDS may download it."""
    loaded, masks = {}, set()

    def check(config):
        d, mask = config.data, config.lottery.initial_mask
        if mask and mask not in masks:
            results.read_masks(mask, "initial_mask")
            masks.add(mask)
        bundled = getattr(data.REGISTRY.get(d.dataset), "bundled", False)
        if d.data_dir is None and not bundled and not _uses_epochs(config):
            return None
        key = (d.dataset, d.data_dir, d.image_size, d.image_limits())
        if key not in loaded:
            try:
                loaded[key] = data.load(d.dataset, data_dir=d.data_dir, validation_size=0, seed=config.run.seed,
                                        image_size=d.image_size, image_limits=d.image_limits())
            except data.DataError as failure:
                loaded[key] = f"DataError: {failure}"
        if isinstance(loaded[key], str):
            return loaded[key]
        return bounds.check_data(config, loaded[key], held_out=False)
    return check


def _uses_epochs(config):
    steps = (config.training.train_steps, config.training.warmup_steps,
             *config.training.lr_milestones, config.lottery.rewind_step)
    return any(isinstance(s, str) for s in steps)


def plan(base, grid, study_dir=None, folder=None):
    """The Plan of `base` (an ExperimentConfig) over `grid` (--grid entries, Axis list or dict).

    `folder(config, study_dir, positions)`, if given, names each point's
    folder instead of the lottery binary's naming (replicates use seed_N).
    Raises ConfigError naming the flag or the --grid entry.
    """
    if base.run.experiment_dir:
        raise ConfigError("experiment_dir", _NOT_AXES["experiment_dir"])
    if base.lottery.replicates != 1:
        raise ConfigError("replicates", "a study takes seeds as an axis (--grid=seed=0,1,2)")
    if study_dir is not None and not str(study_dir):
        raise ConfigError("study_dir", "must not be empty (leave it out for a folder under --root_dir)")
    axes = tuple(parse_grid(grid))
    # Absolute paths: the experiments may run in other working directories (Ray workers, nodes).
    study_dir = (pathlib.Path(study_dir) if study_dir else default_study_dir(base, axes)).absolute()
    check = _checker()
    points, folders = [], {}
    for index, positions in enumerate(itertools.product(*(range(len(a.values)) for a in axes))):
        config, values = _point_config(base, axes, positions)
        if config.data.data_dir and not pathlib.Path(config.data.data_dir).is_absolute():
            config = config.replace(data_dir=str(pathlib.Path(config.data.data_dir).absolute()))
        error = None
        if folder is not None:
            config = config.replace(experiment_dir=str(folder(config, study_dir, positions)))
        else:
            nested = [f"{a.name.replace(_LINK, '+')}_{p}" for a, p in zip(axes, positions)
                      if not all(changes_results(n) for n in a.names)]
            config = config.replace(root_dir=str(study_dir.joinpath(*nested)))
        try:
            examples = check(config)
        except ConfigError as failure:
            raise _refusal(failure, axes, values) from None
        resolved = config
        if _uses_epochs(config):
            if isinstance(examples, str):
                error = examples
            else:
                resolved = config.in_iterations(examples)
        directory = resolved.directory()
        if directory in folders:
            raise ConfigError(FIELD, f"points {folders[directory].label()} and "
                              f"{' '.join(f'{k}={_text(v)}' for k, v in values.items())} would share "
                              f"the folder {directory}: give each value once")
        point = Point(index, positions, values, config, directory, error)
        folders[directory] = point
        points.append(point)
    return Plan(base, axes, study_dir, tuple(points))


def default_study_dir(base, axes):
    """root_dir/study_<model>_<dataset>_<hash of the base's result settings and the axes>."""
    text = json.dumps([base.result_fields(), [a.to_json() for a in axes]], sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return pathlib.Path(base.run.root_dir) / f"study_{base.model.name}_{base.data.dataset}_{digest}"


def with_replicates(base, entries):
    """(base, entries) with --replicates=N turned into the axis seed=seed..seed+N-1."""
    count = base.lottery.replicates
    if count == 1:
        return base, list(entries)
    entries = list(entries)
    if any("seed" in str(e).partition("=")[0].split(_LINK) for e in entries):
        raise ConfigError("replicates", "give either --replicates or a seed axis, not both")
    seeds = ",".join(str(base.run.seed + i) for i in range(count))
    return base.replace(replicates=1), entries + [f"seed={seeds}"]


def replicates(config, program="imp"):
    """The Plan of --replicates=N: a seed axis seed..seed+N-1, one seed_<seed> folder each.

    The study folder is --experiment_dir, or root_dir/<the first seed's
    experiment name (of `program`)>_x<N>.
    """
    count, first = config.lottery.replicates, config.run.seed
    single = config.replace(replicates=1, experiment_dir=None)
    study_dir = (pathlib.Path(config.run.experiment_dir) if config.run.experiment_dir
                 else pathlib.Path(config.run.root_dir) / f"{single.name(program)}_x{count}")
    seeds = [f"seed={','.join(str(first + i) for i in range(count))}"]
    return plan(single, seeds, study_dir,
                folder=lambda c, parent, _: parent / f"seed_{c.run.seed}")
