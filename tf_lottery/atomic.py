"""Atomic file writes: a finished file is either the old one or the complete new one."""

import json
import os
import pathlib
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
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
