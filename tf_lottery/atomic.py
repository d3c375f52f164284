"""Atomic file writes: a finished file is either the old one or the complete new one.

The temporary file of a write is named `.NAME.HOST.PID.XXXXXXXX.tmp`; a write
removes only the temporary files of its own path that a writer on this host
which is no longer running left behind, never those of a live writer.
"""

import glob
import json
import os
import pathlib
import socket
import tempfile

import numpy as np


def _write_atomic(path, write):
    """Writes through `write(file)` to a temporary file beside `path`, then renames it over `path`.

    On failure the temporary file is removed, `path` keeps its old content,
    and an OSError names `path`.
    """
    path = pathlib.Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            if _left_by_a_dead_writer(stale, path):
                stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.",
                                   suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if tmp:
            pathlib.Path(tmp).unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    except BaseException:
        if tmp:
            pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _host():
    return socket.gethostname()[:64]  # a file name has room for it


def _left_by_a_dead_writer(temporary, path):
    """Whether `temporary` (of a write to `path`) was left by a process of this host that has ended."""
    middle = temporary.name[len(path.name) + 2:-len(".tmp")]  # HOST.PID.XXXXXXXX
    try:
        host, pid, _ = middle.rsplit(".", 2)
        pid = int(pid)
    except ValueError:
        return False  # not named by this module: leave it alone
    if host != _host() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def write_json(path, obj):
    """Writes `obj` as indented JSON to `path` via a temporary file and a rename."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    _write_atomic(path, lambda f: f.write(data))


def write_npz(path, arrays):
    """Writes {name: array} as a compressed .npz to `path` via a temporary file and a rename."""
    _write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def read_json(path):
    """Reads a JSON file."""
    with open(path) as f:
        return json.load(f)


def read_npz(path):
    """Reads an .npz file into a {name: array} dict."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
