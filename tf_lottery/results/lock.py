"""The lock of an experiment or study folder: one run writes a folder at a time.

A run holds DIR/.lock (an exclusive `fcntl.flock`) from before its first
write until it returns or raises; the file names the holder (host, pid, when
it started, its command). A second run gets FolderLocked, a ConfigError naming
the folder and the holder, before it writes anything. The operating system
drops the lock of a process that dies, SIGKILL included: the file such a run
leaves behind is stale, and the next run takes the lock with a warning naming
the dead holder, so a killed run resumes without any cleanup. Within one
process the lock is re-entrant for the thread that holds it (a binary takes it
and the round loop it calls takes it again).

The lock needs storage with file locks (local disks, NFSv4); nothing here
imports TensorFlow.
"""

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import socket
import sys
import threading

from absl import logging

from tf_lottery import results
from tf_lottery.settings import ConfigError


class FolderLocked(ConfigError):
    """Another run holds the folder; the message names the folder and the holder."""


@dataclasses.dataclass
class _Hold:
    fd: int
    thread: int
    created: pathlib.Path | None  # the outermost folder the lock created (removed again if left empty)
    depth: int = 1


_held = {}  # resolved folder -> _Hold of this process
_guard = threading.Lock()


def _holder(info):
    """'pid P on host H since T (command)' from a lock file's record."""
    if not isinstance(info, dict) or "pid" not in info:
        return "another run (starting up)"
    text = f"pid {info['pid']} on host {info.get('host')} since {info.get('since')}"
    return text + (f" ({info['command']})" if info.get("command") else "")


def _read(path_or_fd):
    try:
        if isinstance(path_or_fd, int):
            os.lseek(path_or_fd, 0, os.SEEK_SET)
            text = os.read(path_or_fd, 1 << 16).decode()
        else:
            text = pathlib.Path(path_or_fd).read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return {}


def _locked(directory, field, holder):
    return FolderLocked(field, f"{directory} is in use by {holder}; a folder takes one run at a time: "
                               "wait for that run to end or stop it, or use another folder")


def _outermost_missing(directory):
    missing = None
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _this_run():
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""}


def _acquire(directory, field, shown):
    """Takes DIR/.lock (creating DIR); returns its _Hold. FolderLocked, naming the folder as `shown`,
    if another run holds it."""
    created = _outermost_missing(directory)
    path = results.lock_path(directory)
    while True:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed by a run that released it just now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _locked(shown, field, _holder(_read(path))) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # locked a file that its releasing holder had just removed: lock the new one
    stale = _read(fd)
    if stale is not None:
        logging.warning("%s: breaking the stale lock of %s, which is no longer running", shown,
                        _holder(stale) if stale else "a run that left no record")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(_this_run()) + "\n").encode())
    os.fsync(fd)
    return _Hold(fd, threading.get_ident(), created)


def _release(directory, hold):
    """Removes the lock file, then unlocks; removes the folders the lock created if they are empty."""
    try:
        os.ftruncate(hold.fd, 0)
        results.lock_path(directory).unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        os.close(hold.fd)
    if hold.created is not None:
        for folder in (directory, *directory.parents):
            try:
                folder.rmdir()
            except OSError:
                break
            if folder == hold.created:
                break


@contextlib.contextmanager
def hold(directory, field="experiment_dir"):
    """Holds the folder's lock while the block runs (FolderLocked, naming `field`, if another run does).

    Re-entrant for the thread that holds it. On release the lock file goes,
    and so does the folder if taking the lock created it and nothing was written.
    """
    directory = pathlib.Path(directory)
    key = directory.resolve()
    with _guard:
        held = _held.get(key)
        if held is not None:
            if held.thread != threading.get_ident():
                raise _locked(directory, field, f"another thread of this process (pid {os.getpid()})")
            held.depth += 1
        else:
            held = _held[key] = _acquire(key, field, directory)
    try:
        yield
    finally:
        with _guard:
            held.depth -= 1
            if held.depth == 0:
                del _held[key]
                _release(key, held)


def check(directory, field="experiment_dir"):
    """FolderLocked if another run holds the folder now; takes nothing and writes nothing."""
    directory = pathlib.Path(directory)
    with _guard:
        held = _held.get(directory.resolve())
    if held is not None:
        if held.thread != threading.get_ident():
            raise _locked(directory, field, f"another thread of this process (pid {os.getpid()})")
        return
    path = results.lock_path(directory)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _locked(directory, field, _holder(_read(path))) from None
    finally:
        os.close(fd)  # closing drops the shared lock
