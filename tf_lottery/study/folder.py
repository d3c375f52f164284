"""The study folder: its files, the spec a rerun must match, and study.json (the points and their states).

  study_config.json     the base config (flat names) and the axes, written once; a rerun with
                        another base config or grid in the same folder is refused naming what changed
  study.json            one entry per point: its values, folder (relative), state, attempts,
                        errors, seconds and worker (node IP:pid); rewritten atomically on every change
  .storage_check_<id>   the token of the shared-storage check, removed after it
  <point folder>/study.log   the point's own log (stdout, stderr, absl) while the study runs it
  report.md, plots/     what `analyze study` writes

States: pending, running, finished, failed, interrupted. A point is finished
when every round of its IMP branch and of its controls is
(`results.is_finished`), whatever study.json says: a rerun recomputes the
states from the experiment folders, so a driver killed at any moment loses
nothing. Nothing here imports TensorFlow or Ray.
"""

import datetime
import pathlib

from tf_lottery import atomic
from tf_lottery import controls
from tf_lottery import results
from tf_lottery import writable
from tf_lottery.config import ExperimentConfig
from tf_lottery.settings import ConfigError
from tf_lottery.study import grid as grid_lib

SPEC = "study_config.json"
STUDY = "study.json"
LOG = "study.log"
STATES = ("pending", "running", "finished", "failed", "interrupted")


def spec_path(study_dir):
    return pathlib.Path(study_dir) / SPEC


def study_path(study_dir):
    return pathlib.Path(study_dir) / STUDY


def log_path(point_dir):
    """The log a study keeps of one point, inside the point's experiment folder."""
    return pathlib.Path(point_dir) / LOG


def token_path(study_dir, token):
    return pathlib.Path(study_dir) / f".storage_check_{token}"


def _round_sets(config, directory):
    """(finished, wanted) round sets of a point: IMP's rounds 0..R, then each control's."""
    rounds = config.lottery.rounds
    pairs = [(set(results.finished_rounds(directory)), set(range(rounds + 1)))]
    for spec in controls.parse_specs(config.lottery.controls):
        pairs.append((set(results.finished_rounds(directory, spec.branch)), set(spec.round_indices(rounds))))
    return pairs


def is_point_finished(config, directory):
    """Whether rounds 0..R of IMP and the first..R rounds of every control are finished."""
    return all(wanted <= finished for finished, wanted in _round_sets(config, directory))


def point_rounds(config, directory):
    """(finished, total) trainings of a point: its IMP rounds and every control's rounds."""
    pairs = _round_sets(config, directory)
    return sum(len(wanted & finished) for finished, wanted in pairs), sum(len(w) for _, w in pairs)


def current_round(directory):
    """The round a running point is in: the number of its finished IMP rounds."""
    return len(results.finished_rounds(directory))


def _changes(saved, spec, study_dir):
    """ConfigError naming the first difference between a saved spec and the current one, or None."""
    old_axes, new_axes = saved.get("grid", []), spec["grid"]
    if old_axes != new_axes:
        def text(axes):
            return " ".join(f"--grid={grid_lib.Axis.from_json(a).entry}" for a in axes) or "no grid"
        return ConfigError(grid_lib.FIELD, f"{study_dir} holds a study of another grid (was "
                           f"{text(old_axes)}, now {text(new_axes)}); use another --study_dir")
    try:
        old = ExperimentConfig.from_flat(saved["base"]).result_fields()
    except (ConfigError, KeyError, TypeError):
        return ConfigError("study_dir", f"{spec_path(study_dir)} is not readable as a study config")
    new = ExperimentConfig.from_flat(spec["base"]).result_fields()
    differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differing:
        listed = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in differing)
        return ConfigError(differing[0], f"{study_dir} holds a study of another base config "
                           f"(differs in {listed}); use another --study_dir")
    return None


def check_folder(plan):
    """Refuses a study folder that holds another study (naming what changed) or an experiment, or that
    cannot be made or written (a file, a path under a file, a read-only place)."""
    study_dir = plan.study_dir
    writable.check_folder(study_dir, "study_dir")
    if spec_path(study_dir).is_file():
        try:
            saved = atomic.read_json(spec_path(study_dir))
        except (OSError, ValueError) as error:
            raise ConfigError("study_dir", f"{spec_path(study_dir)} is not readable ({error})") from None
        change = _changes(saved, plan.spec(), study_dir)
        if change:
            raise change
    elif results.config_path(study_dir).is_file():
        raise ConfigError("study_dir", f"{study_dir} is an experiment folder, not a study folder")


def relative(study_dir, directory):
    """A point's folder as study.json names it: relative to the study folder when inside it."""
    try:
        return pathlib.Path(directory).relative_to(study_dir).as_posix()
    except ValueError:
        return str(directory)


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


class Study:
    """study.json of a plan: one entry per point, rewritten atomically on every change."""

    def __init__(self, plan):
        self.plan = plan
        previous = self._previous()
        self.entries = []
        for point in plan.points:
            old = previous.get(point.index, {})
            finished = is_point_finished(point.config, point.directory)
            self.entries.append({
                "index": point.index,
                "values": point.values,
                "folder": relative(plan.study_dir, point.directory),
                "state": "finished" if finished else "pending",
                "attempts": old.get("attempts", 0) if finished else 0,
                "errors": [],
                "error": None,
                "seconds": old.get("seconds") if finished else None,
                "worker": old.get("worker") if finished else None,
            })

    def _previous(self):
        path = study_path(self.plan.study_dir)
        try:
            return {e["index"]: e for e in atomic.read_json(path)["points"]} if path.is_file() else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def write_spec(self):
        """Writes study_config.json if the folder has none (check_folder has compared an existing one)."""
        if not spec_path(self.plan.study_dir).is_file():
            atomic.write_json(spec_path(self.plan.study_dir), self.plan.spec())

    def write(self):
        counts = {state: sum(e["state"] == state for e in self.entries) for state in STATES}
        atomic.write_json(study_path(self.plan.study_dir), {
            "study_dir": str(self.plan.study_dir), "updated": _now(), "counts": counts,
            "axes": [axis.name for axis in self.plan.axes], "points": self.entries})

    def update(self, index, **fields):
        self.entries[index].update(fields)
        self.write()

    def indices(self, state):
        return [e["index"] for e in self.entries if e["state"] == state]


def read_study(study_dir):
    """(spec, study.json) of a study folder; ConfigError naming study_dir if it is not one."""
    study_dir = pathlib.Path(study_dir)
    if not (spec_path(study_dir).is_file() and study_path(study_dir).is_file()):
        raise ConfigError("study_dir", f"{study_dir} has no {SPEC} and {STUDY}; is it a study folder?")
    try:
        return atomic.read_json(spec_path(study_dir)), atomic.read_json(study_path(study_dir))
    except (OSError, ValueError) as error:
        raise ConfigError("study_dir", f"{study_dir}: unreadable study files ({error})") from None
