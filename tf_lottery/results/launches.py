"""launches.json of an experiment folder: every start or resume, with the code, versions and machine.

Each launch appends one entry: when it started (UTC), the command that
reruns the folder (the binaries') or "python API", tf_lottery's version and
git commit (with "-dirty" when tracked files differ from it; None outside a
git checkout), Python's, TensorFlow's, Keras' and TF-MOT's versions, the
platform and the CPU count. A result page can then name exactly what
produced each folder, across sessions and machines. Nothing here imports
TensorFlow.
"""

import datetime
import importlib.metadata
import os
import pathlib
import platform
import subprocess

from tf_lottery import __version__
from tf_lottery import atomic
from tf_lottery import results

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


def entry(command=None):
    """The record of a launch now: `command` reruns it (None: started from the Python API)."""
    return {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command or "python API", "tf_lottery": __version__, "commit": commit(),
            "python": platform.python_version(), "packages": {p: _version(p) for p in PACKAGES},
            "platform": platform.platform(), "cpus": os.cpu_count()}


def read(experiment_dir):
    """The folder's launches, oldest first ([] if none was recorded)."""
    file = results.launches_path(experiment_dir)
    if not file.is_file():
        return []
    return results.read_json(file, "it only lists the runs of this folder: repair it, or delete it to "
                                   "start a new list", kind=list)


def record(experiment_dir, command=None):
    """Appends this launch to the folder's launches.json; returns the entry."""
    new = entry(command)
    pathlib.Path(experiment_dir).mkdir(parents=True, exist_ok=True)
    atomic.write_json(results.launches_path(experiment_dir), read(experiment_dir) + [new])
    return new
