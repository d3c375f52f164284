"""launches.json of an experiment folder: every start or resume, with the code, versions and machine.

Each launch appends one entry: when it started (UTC), the command that
reruns the folder (the binaries') or "python API", tf_lottery's version and
git commit (with "-dirty" when tracked files differ from it; None outside a
git checkout), Python's, TensorFlow's, Keras' and TF-MOT's versions, the
platform and the CPU count, its numerics identity (tf_lottery.numerics: CPU
model, instruction-set features, numeric library versions, threads) and the
rounds already finished when it started, so the rounds each launch trained
can be read from this file alone (`rounds_by_launch`). A result page can then
name exactly what produced each folder and round, across sessions and
machines. A resume under another numerics identity warns, naming both
(`check_numerics`; refused with --strict_numerics). Nothing here imports
TensorFlow.
"""

import datetime
import importlib.metadata
import os
import pathlib
import platform
import subprocess

from absl import logging

from tf_lottery import __version__
from tf_lottery import atomic
from tf_lottery import numerics
from tf_lottery import results
from tf_lottery.settings import ConfigError

PACKAGES = ("tensorflow", "keras", "tensorflow-model-optimization")
_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _git(*args):
    try:
        done = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit():
    """The git commit of the tf_lottery checkout ('-dirty' if tracked files changed), or None."""
    if not (_ROOT / ".git").exists():
        return None
    head = _git("rev-parse", "HEAD")
    if not head:
        return None
    return head + ("-dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def finished(experiment_dir):
    """{"rounds": [...], "controls": {name: [...]}}: the rounds the folder holds finished now."""
    return {"rounds": results.finished_rounds(experiment_dir),
            "controls": {name: results.finished_rounds(experiment_dir, name)
                         for name in _controls(experiment_dir)}}


def _controls(experiment_dir):
    base = results.control_dir(experiment_dir, "_").parent
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def entry(command=None, experiment_dir=None):
    """The record of a launch now: `command` reruns it (None: started from the Python API)."""
    return {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command or "python API", "tf_lottery": __version__, "commit": commit(),
            "python": platform.python_version(), "packages": {p: _version(p) for p in PACKAGES},
            "platform": platform.platform(), "cpus": os.cpu_count(), "numerics": numerics.identity(),
            "finished": finished(experiment_dir) if experiment_dir else {"rounds": [], "controls": {}}}


def read(experiment_dir):
    """The folder's launches, oldest first ([] if none was recorded)."""
    file = results.launches_path(experiment_dir)
    if not file.is_file():
        return []
    return results.read_json(file, "it only lists the runs of this folder: repair it, or delete it to "
                                   "start a new list", kind=list)


def record(experiment_dir, command=None):
    """Appends this launch to the folder's launches.json; returns the entry."""
    new = entry(command, experiment_dir)
    pathlib.Path(experiment_dir).mkdir(parents=True, exist_ok=True)
    atomic.write_json(results.launches_path(experiment_dir), read(experiment_dir) + [new])
    return new


def check_numerics(experiment_dir, strict=False):
    """Warns (strict: raises ConfigError) if the folder's last launch ran under another numerics identity.

    A launch recorded before numerics identities were is not compared.
    Returns the differences ('' if none).
    """
    previous = [launch.get("numerics") for launch in read(experiment_dir) if isinstance(launch, dict)]
    if not previous or not isinstance(previous[-1], dict):
        return ""
    current = numerics.identity()
    if previous[-1].get("key") == current["key"]:
        return ""
    changed = numerics.differences(previous[-1], current) or "numerics key differs"
    if strict:
        raise ConfigError("strict_numerics", f"{experiment_dir} was last run under another numerics "
                                             f"identity ({changed}); rerun it there, or use another folder")
    logging.warning("%s was last run under another numerics identity (%s): its rounds from now on "
                    "may differ in the low bits; launches.json records which rounds ran where",
                    experiment_dir, changed)
    return changed


def rounds_by_launch(experiment_dir):
    """[(launch, {"rounds": [...], "controls": {name: [...]}}), ...]: the rounds each launch finished."""
    launches = read(experiment_dir)
    marks = [launch.get("finished") or {"rounds": [], "controls": {}} for launch in launches[1:]]
    marks.append(finished(experiment_dir))
    out = []
    for launch, after in zip(launches, marks):
        before = launch.get("finished") or {"rounds": [], "controls": {}}
        rounds = sorted(set(after["rounds"]) - set(before["rounds"]))
        controls = {name: sorted(set(done) - set(before["controls"].get(name, ())))
                    for name, done in after["controls"].items()}
        out.append((launch, {"rounds": rounds, "controls": {n: r for n, r in controls.items() if r}}))
    return out
