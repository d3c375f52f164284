"""Stops a study's local Ray when its driver dies: a process of its own, started by local_ray.start.

  python watchdog.py DRIVER_PID ROOT_PID...     (standard input: a pipe from the driver)

The roots are the processes `ray.init` started (GCS, raylet, dashboard,
monitors). Every second the watchdog notes them and every process below them
(the raylet's agents and workers); it writes READY on its standard output
once it has noted them the first time. Its standard input is the read end
of a pipe whose write end only the driver holds: when the driver closes it
(local_ray.stop, after ray.shutdown) or dies in any way, SIGKILL included,
the read returns end-of-file, and the watchdog sends SIGTERM to every noted
process still running, SIGKILL to those left after GRACE seconds, and exits.
Ray's own fate sharing stops the roots when the driver dies, but not the
raylet's dashboard agent and runtime-env agent, which otherwise keep
listening for 40 to 90 s until they notice.

Run as a script (no tf_lottery import): it needs only psutil. It ignores
SIGINT, which a terminal sends to the driver's whole process group.
"""

import os
import select
import signal
import sys

import psutil

GRACE = 5.0
READY = "noted"


def _note(roots, noted):
    """Adds every running root and every process below it to `noted` ({pid: psutil.Process})."""
    for root in roots:
        try:
            if root.is_running():
                for process in [root] + root.children(recursive=True):
                    noted.setdefault(process.pid, process)
        except psutil.Error:
            pass


def _driver_gone(driver):
    """Whether the driver closed the pipe or died (end-of-file) or this process lost it as parent."""
    ready, _, _ = select.select([sys.stdin], [], [], 1.0)
    if ready and not os.read(sys.stdin.fileno(), 4096):
        return True
    return os.getppid() != driver


def stop(processes):
    """SIGTERM to every process still running, SIGKILL to those left after GRACE seconds."""
    running = [p for p in processes if p.is_running()]
    for process in running:
        try:
            process.terminate()  # psutil checks that the pid was not reused
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(running, timeout=GRACE)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=GRACE)


def main(argv):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    driver = int(argv[1])
    roots = []
    for pid in argv[2:]:
        try:
            roots.append(psutil.Process(int(pid)))
        except psutil.Error:
            pass
    noted = {}
    _note(roots, noted)
    print(READY, flush=True)  # the driver waits for this: what runs now is noted before it goes on
    sys.stdout.close()
    while not _driver_gone(driver):
        _note(roots, noted)
    _note(roots, noted)
    stop(noted.values())


if __name__ == "__main__":
    main(sys.argv)
