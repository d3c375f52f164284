"""Whether a run can make and write its folder, checked before it writes anything (and leaving nothing)."""

import os
import pathlib
import tempfile

from tf_lottery.settings import ConfigError


def check_folder(path, field):
    """`path` as a Path; ConfigError naming `field` unless it is a folder, or can be made as one, that
    this process can write.

    The nearest existing folder above it must be a folder, and a probe folder is made in it and removed at
    once: permissions alone do not tell (as root, os.access allows /proc, where mkdir fails).
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(field, f"{path} is a file, not a folder")
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(field, f"{path}: {existing} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write_check_", dir=existing))
    except OSError as error:
        raise ConfigError(field, f"{path}: cannot create folders in {existing} ({error.strerror})") from None
    return path
