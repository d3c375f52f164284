"""A study's run options (experiments at a time, CPUs and GPUs of each, retries, the Ray address),
checked before Ray starts: ConfigError naming the option. Nothing here imports Ray.

The Ray address is checked by connecting to it: `ray.init` waits for a
cluster that does not answer without end, so an address where nothing accepts
a connection within CONNECT_SECONDS is refused first.
"""

import os
import re
import socket

from tf_lottery.settings import ConfigError

MAX_RETRIES = 100  # a point whose worker died 100 times will not finish on the 101st
MAX_GPUS = 16  # GPUs of one experiment: more than any single machine holds
CONNECT_SECONDS = 10
_ADDRESS = re.compile(r"(ray://)?(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(\d{1,5})")


def cores():
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def check_address(address, timeout=CONNECT_SECONDS):
    """Refuses a Ray address that is not auto, host:port or ray://host:port, or where nothing accepts a
    TCP connection within `timeout` seconds (auto is Ray's to look up)."""
    if address is None or address == "auto":
        return
    match = _ADDRESS.fullmatch(address)
    if not match or not 0 < int(match.group(3)) < 2**16:
        raise ConfigError("ray_address", f"must be auto, host:port or ray://host:port, got {address!r}")
    host, port = match.group(2).strip("[]"), int(match.group(3))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else error.strerror or str(error)
        raise ConfigError("ray_address", f"cannot connect to {address} ({reason} within {timeout:g} s): "
                                         "is a Ray cluster running there?") from None


def check(points, *, workers=None, cpus_per_experiment=1, gpus_per_experiment=0, ray_address=None,
          max_retries=2, experiments_per_worker=0):
    """Checks the options of a study of `points` points; a local Ray (no address) must have the CPUs."""
    if workers is not None and not 1 <= workers <= points:
        raise ConfigError("workers", f"must be in [1, {points}] (the study's points; more never run at "
                                     f"once), got {workers}")
    if not 0 <= experiments_per_worker <= points:
        raise ConfigError("experiments_per_worker", f"must be in [0, {points}] (0: no limit; the study has "
                                                    f"{points} points), got {experiments_per_worker}")
    if not 0 <= max_retries <= MAX_RETRIES:
        raise ConfigError("max_retries", f"must be in [0, {MAX_RETRIES}], got {max_retries}")
    if cpus_per_experiment < 1:
        raise ConfigError("cpus_per_experiment", f"must be >= 1, got {cpus_per_experiment}")
    if ray_address is None and cpus_per_experiment > cores():  # a cluster's nodes are checked once joined
        raise ConfigError("cpus_per_experiment", f"must be at most the {cores()} cores of the local Ray, "
                                                 f"got {cpus_per_experiment}")
    gpus = gpus_per_experiment
    if not (0 <= gpus <= MAX_GPUS and (gpus <= 1 or gpus == int(gpus))):  # NaN fails too
        raise ConfigError("gpus_per_experiment", f"must be in [0, {MAX_GPUS}], whole above 1 (as Ray "
                                                 f"requires), got {gpus}")
    check_address(ray_address)
