"""The export folder appears whole or not at all: files are written in a temporary folder beside it.

`staged(out, overwrite)` yields that folder; on success it is renamed into
place (replacing `out`), on any failure it is removed together with the
parent folders it created. Nothing here imports TensorFlow.
"""

import contextlib
import os
import pathlib
import shutil
import tempfile

from tf_lottery.settings import ConfigError


def umask():
    """The process's umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def share(path):
    """Gives a privately written file (atomic writes) the permissions the umask allows."""
    os.chmod(path, 0o666 & ~umask())


def _make_parents(folder):
    created = []
    for parent in reversed([folder, *folder.parents]):
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    return created


def _move_into_place(tmp, out, overwrite):
    if out.exists():
        if any(out.iterdir()) and not overwrite:
            raise ConfigError("export_dir", f"{out} exists and is not empty; pass --overwrite to replace it")
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def staged(out, overwrite):
    """Yields an empty folder beside `out` that becomes `out` when the block succeeds."""
    out = pathlib.Path(out)
    created = _make_parents(out.parent)
    for pattern in (f".{out.name}.*.tmp", f".{out.name}.*.old"):  # left by a killed export
        for stale in out.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp is private to the owner
        yield tmp
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise
