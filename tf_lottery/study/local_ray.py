"""The study's own Ray on this machine: loopback only, token authentication, no metrics export, a watchdog.

  local = local_ray.start(num_cpus=2, object_store_memory=100 * 2**20)
  ...  # ray.remote tasks and actors, as with any ray.init
  local_ray.stop(local)

`check` refuses, before anything starts, a Ray older than MIN_RAY (the first
whose local `ray.init` turns token authentication on by default) and
RAY_AUTH_MODE set to anything but token (`disabled` turns the token off).

`start` runs `ray.init(address="local")` so that every process of the node
listens on 127.0.0.1 only. Ray binds its gRPC servers (GCS, raylet, driver
and workers), the dashboard agent, the runtime-env agent and the metrics
servers to the node's address, and for a local Ray it takes this machine's
network address, except where it does not run clusters (macOS and Windows,
`ray._private.ray_constants.ENABLE_RAY_CLUSTER` off), where it takes
127.0.0.1. That switch is turned off in this process while `ray.init` starts
the node (an address given to `ray.init`, 127.0.0.1 included, is replaced by
the network address), then restored; the node must come up on 127.0.0.1, or
it is shut down and refused. Metrics collection is off
(`_system_config={"enable_metrics_collection": False}`: the dashboard agent
exports no Prometheus metrics). What a study cannot turn off stays on
127.0.0.1: the dashboard agent's HTTP server, whose job API refuses requests
without the token, and the metrics endpoints of the dashboard's head process
and of the autoscaler monitor (ports 44227 and 44217).

When RAY_AUTH_MODE is not set, `ray.init` turns token authentication on by
setting RAY_AUTH_MODE=token in this process's environment (and writes a
token to ~/.ray/auth_token if there is none); `start` removes the variable
again once the node runs, so the user's environment is left as it was. The
node's processes were started with it.

Ray's own fate sharing stops the processes `ray.init` starts when the driver
dies, but not the agents the raylet starts; a watchdog process (watchdog.py)
stops them all when the driver dies, SIGKILL included, and after `stop`.
"""

import contextlib
import dataclasses
import os
import pathlib
import subprocess
import sys

import psutil
import ray
from packaging.version import Version
from ray._private import ray_constants

from tf_lottery.settings import ConfigError

MIN_RAY = "2.59"
LOOPBACK = "127.0.0.1"
_AUTH_MODE = "RAY_AUTH_MODE"
_WATCHDOG = pathlib.Path(__file__).with_name("watchdog.py")
_WATCHDOG_READY = "noted"  # watchdog.READY (the watchdog runs as a script, not imported)
_STOP_TIMEOUT = 60


@dataclasses.dataclass
class LocalRay:
    """A running local Ray: the watchdog process that stops it (its stdin is the driver's pipe)."""
    watchdog: subprocess.Popen


def check(version=None, environ=None):
    """ConfigError naming --ray_address: a Ray without token authentication by default, or with it off."""
    version = ray.__version__ if version is None else version
    environ = os.environ if environ is None else environ
    if Version(version) < Version(MIN_RAY):
        raise ConfigError("ray_address", f"not given, so the study starts a local Ray, which needs Ray >= "
                          f"{MIN_RAY} (token authentication on by default); Ray {version} is installed: "
                          f"pip install -U 'ray[default]>={MIN_RAY},<3'")
    mode = environ.get(_AUTH_MODE)
    if mode is not None and mode.strip().lower() != "token":
        raise ConfigError("ray_address", f"not given, so the study starts a local Ray, which it refuses "
                          f"to start without token authentication ({_AUTH_MODE}={mode}); unset "
                          f"{_AUTH_MODE} or set it to token")


@contextlib.contextmanager
def _loopback_node():
    """Ray takes 127.0.0.1 as the node's address, as where it runs no clusters; the environment as it was."""
    switch, mode = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(_AUTH_MODE)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = switch
        if mode is None:
            os.environ.pop(_AUTH_MODE, None)


def _children():
    return {p.pid for p in psutil.Process().children()}


def start(num_cpus, object_store_memory, **init_options):
    """Starts the local Ray (see the module doc) and its watchdog; the LocalRay to `stop`.

    `init_options` go to ray.init (log_to_driver, logging_level, ...).
    """
    check()
    before = _children()
    with _loopback_node():
        ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_memory,
                 include_dashboard=False, _system_config={"enable_metrics_collection": False},
                 **init_options)
    roots = sorted(_children() - before)
    watchdog = subprocess.Popen([sys.executable, str(_WATCHDOG), str(os.getpid()), *map(str, roots)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    local = LocalRay(watchdog)
    with watchdog.stdout:  # the watchdog has noted the node's processes (the agents included)
        ready = watchdog.stdout.readline().strip() == _WATCHDOG_READY
    address = ray.util.get_node_ip_address()
    if not ready or address != LOOPBACK:
        stop(local)
        raise RuntimeError(f"the local Ray came up on {address}, not on {LOOPBACK}: this Ray version "
                           "no longer takes the loopback address as tf_lottery asks it to"
                           if ready else "the local Ray's watchdog did not start")
    return local


def stop(local):
    """Shuts the local Ray down and waits until the watchdog has stopped what is left of it."""
    try:
        if ray.is_initialized():
            ray.shutdown()
    finally:
        local.watchdog.stdin.close()
        try:
            local.watchdog.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            local.watchdog.kill()
            local.watchdog.wait()
