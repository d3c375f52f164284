"""The results folder of an experiment: every path in it, when a round is finished, and its files.

  config.json            the resolved ExperimentConfig (flat names)
  summary.json           {"rounds": [record, ...], "controls": {name: [record, ...]}},
                         rewritten atomically after every round
  launches.json          every start or resume: command, commit, versions, machine
                         (results.launches)
  reset_point.npz        weights of unwrapped layers (e.g. batch norm) at the reset point
  round_XX/mask.npz      the 0/1 masks trained in round XX, keyed 'layer/attribute'
  round_XX/curve.json    the evaluation curve of round XX
  round_XX/metrics.json  the round's record, written last: its presence marks the round finished
  round_XX/ckpt/         tf.train checkpoints of model, optimizer and iteration
  round_XX/progress.json the evaluation curve up to the latest checkpoint
  controls/NAME/round_XX the same files for a control (random_reinit, random_prune, one_shot, ...),
                         and search.json for one that searched for its mask before training
                         (early_bird, snip, grasp, synflow): what the search cost and found
  controls/NAME/control.json  the settings of its own that the control was trained with
                         (--grasp_temperature, ...): a resume with others is refused
  workers/TYPE_K/        what the other tasks of a multi-worker run write
  plots/, report.md, tb/, analysis/   what binaries.analyze adds
  .lock                  the lock of the run writing the folder (results.lock)

This package is the only place that names these files. Every reader here
turns a damaged file into DamagedFile, one line naming the file and what to
do; a damaged summary.json alone is rebuilt from the rounds' metrics.json.
Nothing here imports TensorFlow; the checkpoints and the reset point are in
`results.checkpoints`.
"""

import pathlib
import zipfile
import zlib

import numpy as np
from absl import logging

from tf_lottery import atomic
from tf_lottery.settings import ConfigError

CONFIG = "config.json"
SUMMARY = "summary.json"
LAUNCHES = "launches.json"
RESET_POINT = "reset_point.npz"
MASK = "mask.npz"
CURVE = "curve.json"
METRICS = "metrics.json"
PROGRESS = "progress.json"
SEARCH = "search.json"
CONTROL_SETTINGS = "control.json"
CHECKPOINTS = "ckpt"
LOCK = ".lock"


def _entry(name):
    """path(folder) -> folder / name: one named entry of an experiment or round folder."""
    def path(folder):
        return pathlib.Path(folder) / name
    path.__doc__ = f"folder / '{name}'"
    return path


# Entries of the experiment folder.
config_path = _entry(CONFIG)
summary_path = _entry(SUMMARY)
launches_path = _entry(LAUNCHES)
reset_point_path = _entry(RESET_POINT)
analysis_dir = _entry("analysis")
plots_dir = _entry("plots")
report_path = _entry("report.md")
tensorboard_dir = _entry("tb")
lock_path = _entry(LOCK)
# Entries of a round folder.
mask_path = _entry(MASK)
curve_path = _entry(CURVE)
metrics_path = _entry(METRICS)
progress_path = _entry(PROGRESS)
checkpoint_dir = _entry(CHECKPOINTS)


def control_dir(experiment_dir, control):
    """Folder of one control's rounds."""
    return pathlib.Path(experiment_dir) / "controls" / control


def control_settings_path(experiment_dir, control):
    """The settings a control's rounds were trained with (tf_lottery.controls records and checks them)."""
    return control_dir(experiment_dir, control) / CONTROL_SETTINGS


def control_branches(experiment_dir):
    """The names of the control folders an experiment folder holds (sorted)."""
    base = pathlib.Path(experiment_dir) / "controls"
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def read_control_settings(experiment_dir, control):
    """{setting: value} recorded for a control's rounds, or None where nothing was recorded."""
    path = control_settings_path(experiment_dir, control)
    if not path.is_file():
        return None
    recorded = read_json(path, f"delete it to check {control}'s settings against config.json instead")
    settings = recorded.get("settings")
    if not isinstance(settings, dict):
        raise DamagedFile(path, "no settings object", "delete it to check the settings against config.json")
    return settings


def write_control_settings(experiment_dir, control, family, settings):
    """Records the settings a control's rounds are trained with, before the first of them."""
    path = control_settings_path(experiment_dir, control)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, {"control": family, "settings": settings})


def round_dir(experiment_dir, round_index, control=None):
    """Folder of one round (of a control, if given)."""
    base = control_dir(experiment_dir, control) if control else pathlib.Path(experiment_dir)
    return base / f"round_{round_index:02d}"


def worker_dir(experiment_dir, task_type, task_id):
    """Where a task other than the chief of a multi-worker run writes."""
    return pathlib.Path(experiment_dir) / "workers" / f"{task_type}_{task_id}"


def search_path(directory):
    """A control round's record of the search for its mask (see the module doc)."""
    return pathlib.Path(directory) / SEARCH


def holds_results(directory):
    """Whether `directory` holds anything but a lock and the temporary files of atomic writes."""
    return any(not (p.name == LOCK or (p.name.startswith(".") and p.name.endswith(".tmp")))
               for p in pathlib.Path(directory).iterdir())


class DamagedFile(ConfigError):
    """A file of a results folder that cannot be read; the one-line message names it and what to do."""

    def __init__(self, path, reason, remedy, field="experiment_dir"):
        super().__init__(field, f"{path} is damaged ({reason})" + (f"; {remedy}" if remedy else ""))
        self.path = pathlib.Path(path)
        self.reason = reason


def reason(error):
    """The first line of an exception, with its type: why a file could not be read."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


# What reading a damaged .npz raises (numpy, zipfile and zlib each have their own).
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def read_json(path, remedy, kind=dict, field="experiment_dir"):
    """A JSON file holding a `kind` (dict or list); DamagedFile naming it and `remedy` if it does not."""
    path = pathlib.Path(path)
    try:
        value = atomic.read_json(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        empty = path.is_file() and path.stat().st_size == 0
        raise DamagedFile(path, "empty" if empty else reason(error), remedy, field) from None
    if not isinstance(value, kind):
        raise DamagedFile(path, f"not a JSON {'object' if kind is dict else 'array'}", remedy, field)
    return value


def read_arrays(path, remedy, field="experiment_dir"):
    """{name: array} of an .npz file; DamagedFile naming it and `remedy` if it cannot be read."""
    try:
        return atomic.read_npz(path)
    except FileNotFoundError:
        raise
    except NPZ_ERRORS as error:
        raise DamagedFile(path, reason(error), remedy, field) from None


def rewrite_round(directory):
    """What to do about a damaged file of a finished round: have the round written again."""
    return (f"delete {metrics_path(directory)} and rerun the experiment: the round is written again "
            "from its checkpoints")


def retrain_round(directory):
    """What to do about a round whose checkpoints cannot be read: train it again from its start."""
    return f"delete {directory} and rerun the experiment: the round is trained again from its start"


def is_finished(directory):
    """Whether the round in `directory` is finished: the one test used everywhere."""
    return metrics_path(directory).is_file()


def finished_rounds(experiment_dir, control=None):
    """The indices of the finished rounds (of a control), ascending."""
    base = control_dir(experiment_dir, control) if control else pathlib.Path(experiment_dir)
    return sorted(int(d.name[len("round_"):]) for d in base.glob("round_*")
                  if d.name[len("round_"):].isdigit() and is_finished(d))


def write_round(directory, masks, record, curve=None):
    """Writes a finished round: mask, curve, then the record, so a kill never leaves it looking finished.

    `masks` is None for a dense training (binaries.train), which has no mask file.
    """
    if masks is not None:
        atomic.write_npz(mask_path(directory), masks)
    if curve is not None:
        atomic.write_json(curve_path(directory), curve)
    atomic.write_json(metrics_path(directory), record)


def read_record(directory):
    """The record (metrics.json) of a finished round."""
    return read_json(metrics_path(directory), rewrite_round(directory))


def read_curve(directory):
    """The evaluation curve (curve.json) of a finished round."""
    return read_json(curve_path(directory), rewrite_round(directory), kind=list)


def read_progress(directory):
    """The progress records of a round's checkpoints (progress.json), oldest first; [] if none."""
    path = progress_path(directory)
    if not path.exists():
        return []
    records = read_json(path, retrain_round(directory)).get("records")
    if not (isinstance(records, list) and all(isinstance(r, dict) and "iteration" in r for r in records)):
        raise DamagedFile(path, "no list of records by iteration", retrain_round(directory))
    return records


def read_masks(path, field="initial_mask", remedy=None):
    """{key: 0/1 float32 array} from an .npz mask file; ConfigError naming `field` if it is not one.

    With `remedy` (a file of a results folder) the error is DamagedFile, which says what to do.
    """
    def bad(text):
        return DamagedFile(path, text, remedy, field) if remedy else ConfigError(field, f"{path}: {text}")
    try:
        masks = atomic.read_npz(path)
    except NPZ_ERRORS as error:
        raise bad(reason(error) if remedy else f"not a readable .npz file ({error})") from None
    for key, mask in masks.items():
        if not np.all((mask == 0) | (mask == 1)):
            raise bad(f"'{key}' holds values other than 0 and 1")
    return {key: mask.astype(np.float32) for key, mask in masks.items()}


def round_masks(experiment_dir, round_index, control=None, field="round"):
    """The masks of a finished round; ConfigError naming `field` if the round is not finished."""
    directory = round_dir(experiment_dir, round_index, control)
    if not is_finished(directory):
        raise ConfigError(field, f"{directory} is not a finished round")
    return read_masks(mask_path(directory), field, rewrite_round(directory))


# What config.json records about the data beside the settings (not settings themselves).
DATA_NOTES = ("class_names",)


def _saved_config(experiment_dir):
    return read_json(config_path(experiment_dir),
                     "it records the experiment's settings: restore it from a copy (launches.json "
                     "names the commands that ran here) or use another folder")


def read_config(experiment_dir):
    """config.json as a dict of flat values (the data notes left out: see read_class_names)."""
    return {k: v for k, v in _saved_config(experiment_dir).items() if k not in DATA_NOTES}


def read_class_names(experiment_dir):
    """The class names config.json records (an image-folder dataset's sorted folders), or ()."""
    return tuple(_saved_config(experiment_dir).get("class_names", ()))


def write_config(experiment_dir, experiment_config, class_names=()):
    """config.json: the config's flat values, and the data's class names if it has any."""
    notes = {"class_names": list(class_names)} if class_names else {}
    atomic.write_json(config_path(experiment_dir), {**experiment_config.flat(), **notes})


class RoundFailed(RuntimeError):
    """A round stopped on a non-finite loss; the message names the round and the iterations."""


def read_summary(experiment_dir):
    """summary.json as a dict ({"rounds": [], "controls": {}} if there is none yet).

    A damaged summary.json is rebuilt from the finished rounds' metrics.json, with a
    warning (the next update_summary writes it); DamagedFile if one of those is damaged too.
    """
    path = summary_path(experiment_dir)
    if not path.exists():
        return {"rounds": [], "controls": {}}
    try:
        summary = read_json(path, None)
    except DamagedFile as damage:
        problem = damage.reason
    else:
        rounds, controls = summary.get("rounds", []), summary.get("controls", {})
        if isinstance(rounds, list) and isinstance(controls, dict):
            return {"rounds": rounds, "controls": controls}
        problem = "no list of rounds and dict of controls"
    rebuilt = rebuild_summary(experiment_dir)
    logging.warning("%s is damaged (%s); rebuilt from the finished rounds' metrics.json", path, problem)
    return rebuilt


def rebuild_summary(experiment_dir):
    """The summary of the finished rounds' records (a failed round that wrote no metrics.json is left out)."""
    def records(control=None):
        return [read_record(round_dir(experiment_dir, r, control))
                for r in finished_rounds(experiment_dir, control)]
    base = pathlib.Path(experiment_dir) / "controls"
    names = sorted(d.name for d in base.iterdir() if d.is_dir()) if base.is_dir() else []
    return {"rounds": records(), "controls": {n: rs for n in names if (rs := records(n))}}


def update_summary(experiment_dir, records, control=None):
    """Rewrites summary.json atomically with new records for the IMP rounds or for one control."""
    summary = read_summary(experiment_dir)
    if control is None:
        summary["rounds"] = records
    else:
        summary["controls"][control] = records
    atomic.write_json(summary_path(experiment_dir), summary)


def format_table(records):
    """A plain-text per-round table: remaining %, early-stop iteration, test accuracies, time."""
    lines = [f"{'round':>5}  {'remaining %':>11}  {'early-stop it':>13}  "
             f"{'test acc @es':>12}  {'final test acc':>14}  {'seconds':>8}"]
    for rec in records:
        if rec.get("failed"):
            lines.append(f"{rec['round']:>5}  {100 * rec['remaining_fraction']:>11.2f}  "
                         f"failed: {rec['error']}")
            continue
        lines.append(f"{rec['round']:>5}  {100 * rec['remaining_fraction']:>11.2f}  "
                     f"{rec['early_stop_iteration']:>13}  {_accuracy(rec['early_stop_test_accuracy']):>12}  "
                     f"{_accuracy(rec['final_test_accuracy']):>14}  {rec['wall_seconds']:>8.1f}")
    return "\n".join(lines)


def _accuracy(value):
    return "n/a" if value is None else f"{value:.4f}"


def format_summary(summary):
    """format_table of the IMP rounds, then one table per control."""
    parts = [format_table(summary["rounds"])]
    for name, records in summary.get("controls", {}).items():
        parts.append(f"\ncontrol: {name}\n{format_table(records)}")
    return "\n".join(parts)
