"""Runs a study's points on Ray, in worker processes that import TensorFlow once and run points in turn.

By default a local Ray starts on this machine (local_ray: on the loopback
address only, with token authentication, no metrics export, stopped by a
watchdog if the driver dies) with `workers` experiments at a time; with an
address (`auto`, `host:port`, `ray://host:port`)
the same points run on an existing cluster, after a shared-storage check (the
driver writes a token into the study folder that a task on every node must
read back). Each worker process (a Ray actor) sizes TensorFlow's thread pools
to its CPUs once, then runs points one after another: it writes the point's
log into the point's folder, runs `experiment.prepare` then
`experiment.run_imp`, clears Keras' state and reports its resident memory; an
error of the experiment comes back as text (a point folder that another run
holds is such an error: each worker holds its point's lock while it runs it,
as the driver holds the study folder's). A worker is retired (its process
exits) after `experiments_per_worker` points when that is set, and whenever
its memory after a point is more than twice what it was after its first, so
TensorFlow memory does not pile up. A worker that dies (killed, crashed, out
of memory, node lost) is the worker's failure: the point is retried up to
`max_retries` times, in a new worker, and resumes from its last checkpoint.
SIGINT and SIGTERM stop the running workers; every folder stays resumable.
"""

import contextlib
import dataclasses
import gc
import logging as std_logging
import os
import signal
import sys
import time
import uuid

import ray
from absl import logging
from etils import epy
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tf_lottery import experiment
from tf_lottery import results
from tf_lottery.config import ExperimentConfig
from tf_lottery.results import launches
from tf_lottery.results import lock
from tf_lottery.settings import ConfigError
from tf_lottery.study import folder
from tf_lottery.study import local_ray

with epy.lazy_imports():
    import keras
    import tensorflow as tf

_LOCAL_OBJECT_STORE = 100 * 2**20  # points exchange only small dicts
_STORAGE_CHECK_TIMEOUT = 300


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the driver; `signum` says which."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclasses.dataclass
class Session:
    """The Ray the study runs on: whether this driver started it, and how many experiments at a time.

    `local` is the local_ray.LocalRay this driver started, None on a Ray it joined.
    """
    owned: bool
    workers: int
    cluster: bool
    local: local_ray.LocalRay | None = None


def cores():
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def check_options(workers=None, cpus_per_experiment=1, gpus_per_experiment=0, experiments_per_worker=0):
    """ConfigError naming the option that is out of range."""
    if experiments_per_worker < 0:
        raise ConfigError("experiments_per_worker", f"must be >= 0, got {experiments_per_worker}")
    if cpus_per_experiment < 1:
        raise ConfigError("cpus_per_experiment", f"must be >= 1, got {cpus_per_experiment}")
    if gpus_per_experiment < 0:
        raise ConfigError("gpus_per_experiment", f"must be >= 0, got {gpus_per_experiment}")
    if workers is not None and workers < 1:
        raise ConfigError("workers", f"must be >= 1, got {workers}")


def connect(address=None, workers=None, cpus_per_experiment=1, gpus_per_experiment=0):
    """Starts a local Ray (or joins `address`, or the one already initialised in this process).

    The local Ray is local_ray's (loopback only, token authentication; a
    ConfigError naming --ray_address before it starts without them). The
    session is a cluster (the study folder must pass the shared-storage
    check) when an address is given or Ray has more than one node.
    """
    check_options(workers, cpus_per_experiment, gpus_per_experiment)
    owned = not ray.is_initialized()
    quiet = {"log_to_driver": False, "logging_level": std_logging.ERROR}
    local = None
    if owned and address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise ConfigError("ray_address", f"cannot connect to {address}: "
                              f"{str(error).splitlines()[0]} (for a cluster with token "
                              "authentication an explicit address needs RAY_AUTH_MODE=token and "
                              "its token)") from None
    elif owned:
        workers = workers or max(1, cores() // cpus_per_experiment)
        local = local_ray.start(workers * cpus_per_experiment, _LOCAL_OBJECT_STORE, **quiet)
    session = Session(owned, workers, bool(address), local)
    try:
        session.workers = _check_resources(workers, cpus_per_experiment, gpus_per_experiment)
    except ConfigError:
        disconnect(session)
        raise
    session.cluster = bool(address) or len([n for n in ray.nodes() if n["Alive"]]) > 1
    return session


def _check_resources(workers, cpus, gpus):
    """The number of experiments at a time; ConfigError if no node can run one."""
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if not any(node.get("CPU", 0) >= cpus for node in nodes):
        raise ConfigError("cpus_per_experiment", f"no Ray node has {cpus} CPUs "
                          f"(largest: {max((n.get('CPU', 0) for n in nodes), default=0):g})")
    if gpus and not any(node.get("GPU", 0) >= gpus for node in nodes):
        raise ConfigError("gpus_per_experiment", f"no Ray node has {gpus:g} GPUs "
                          f"(largest: {max((n.get('GPU', 0) for n in nodes), default=0):g})")
    if workers:
        return workers
    total = ray.cluster_resources()
    count = int(total.get("CPU", 0) // cpus)
    if gpus:
        count = min(count, int(total.get("GPU", 0) // gpus))
    return max(1, count)


def disconnect(session):
    """Leaves Ray; a Ray this driver started is shut down (a local one with every process it ran)."""
    if session.local is not None:
        local_ray.stop(session.local)
    elif session.owned and ray.is_initialized():
        ray.shutdown()


def read_token(path):
    """(this node's IP, the text of `path` or '<error>'): the task of the shared-storage check."""
    try:
        with open(path) as f:
            return ray.util.get_node_ip_address(), f.read()
    except OSError as error:
        return ray.util.get_node_ip_address(), f"<{error.strerror or error}>"


# Tasks wrap module-level functions, so that Ray pickles them by reference (the workers import
# this module) rather than by value with the module's lazily imported globals.
_read_token = ray.remote(num_cpus=0, max_retries=0)(read_token)


def check_shared_storage(study_dir):
    """Refuses a study folder that a task on some Ray node cannot read back a token from."""
    token = uuid.uuid4().hex
    path = folder.token_path(study_dir, token)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        refs = [_read_token.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(str(path)) for n in nodes]
        answers = ray.get(refs, timeout=_STORAGE_CHECK_TIMEOUT)
    finally:
        path.unlink(missing_ok=True)
    blind = [f"{ip} ({answer if answer.startswith('<') else 'another file'})"
             for ip, answer in answers if answer != token]
    if blind:
        raise ConfigError("study_dir", f"{study_dir} is not visible at the same path from Ray "
                          f"node {', '.join(blind)}: on a cluster the study folder must be on storage "
                          "every node mounts at the same path (NFS, a shared disk)")


@contextlib.contextmanager
def _output_to(path):
    """Points stdout, stderr (TensorFlow's C++ log included) and absl logging at `path` while the
    block runs, then back where they went before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    verbosity = logging.get_verbosity()
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            logging.set_verbosity(logging.INFO)
            yield
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        logging.set_verbosity(verbosity)
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def resident_bytes():
    """This process's resident memory now (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_point(flat):
    """Runs one point's experiment in this worker; returns {'error': None or text, 'rss': bytes,
    'worker': node IP:pid}."""
    try:
        prepared = experiment.prepare(ExperimentConfig.from_flat(flat))
        launches.check_numerics(prepared.directory, prepared.config.run.strict_numerics)
        with lock.hold(prepared.directory):  # before any write; run_imp takes it again
            # config.json first, so the folder is an experiment folder before the log goes into it.
            results.write_config(prepared.directory, prepared.config)
            with _output_to(folder.log_path(prepared.directory)):
                try:
                    experiment.run_imp(prepared)
                except Exception:
                    logging.exception("the experiment failed")
                    raise
    except Exception as error:  # the point's own failure (data, NaN, a bug): reported, not retried
        outcome = {"error": f"{type(error).__name__}: {str(error).strip()}"}
    else:
        outcome = {"error": None}
    # What one experiment built (models, compiled steps, datasets) goes before the next one.
    keras.backend.clear_session()
    gc.collect()
    return {**outcome, "rss": resident_bytes(), "worker": f"{ray.util.get_node_ip_address()}:{os.getpid()}"}


class ExperimentWorker:
    """A worker process that runs points one after another, TensorFlow imported once.

    Its thread pools are sized to its CPUs before TensorFlow does any work.
    The driver retires it (its process exits) after `experiments_per_worker`
    points, or when its memory after a point is more than twice what it was
    after its first, so memory does not pile up.
    """

    def __init__(self, threads):
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)

    def run(self, flat):
        return run_point(flat)


# A module-level class, so that Ray pickles it by reference (the workers import this module).
_ExperimentWorker = ray.remote(max_restarts=0, max_task_retries=0)(ExperimentWorker)


@contextlib.contextmanager
def _signals_noted():
    """Notes SIGINT and SIGTERM in the yielded list instead of acting on them (main thread only).

    The scheduling loop looks at it between waits: raising from the handler
    could land inside Ray's C code.
    """
    received = []
    try:
        previous = {s: signal.signal(s, lambda signum, _: received.append(signum))
                    for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield received
        return
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _worker_failure(error):
    """Whether a Ray error is the worker's (process or node lost) rather than the task's code."""
    return not isinstance(error, ray.exceptions.RayTaskError)


class _Pool:
    """The study's worker processes: started on demand, reused until `give_back` retires them."""

    def __init__(self, cpus, gpus, experiments_per_worker):
        self.options = {"num_cpus": cpus, "num_gpus": gpus}
        self.threads = cpus
        self.limit = experiments_per_worker
        self.idle = []
        self.busy = set()

    def take(self):
        worker = self.idle.pop() if self.idle else _Slot(
            _ExperimentWorker.options(**self.options).remote(self.threads))
        self.busy.add(worker)
        return worker

    def give_back(self, worker, rss):
        """Keeps `worker` for the next point unless it ran its share, its memory grew, or (`rss` None)
        it died or its point raised."""
        self.busy.discard(worker)
        worker.points += 1
        worker.first_rss = worker.first_rss or rss
        if rss is None or (self.limit and worker.points >= self.limit) or rss > 2 * worker.first_rss:
            ray.kill(worker.actor)
        else:
            self.idle.append(worker)

    def close(self):
        for worker in self.idle + list(self.busy):
            ray.kill(worker.actor)
        self.idle, self.busy = [], set()


@dataclasses.dataclass(eq=False)
class _Slot:
    """One worker process of the pool and what it has run."""
    actor: object
    points: int = 0
    first_rss: int | None = None


def run_points(plan, study, session, *, cpus_per_experiment=1, gpus_per_experiment=0, max_retries=2,
               experiments_per_worker=0, progress=None):
    """Runs the unfinished points of `study`, `session.workers` at a time; updates study.json.

    Worker processes run points one after another (at most
    `experiments_per_worker` each when it is not 0). Raises Interrupted
    (after stopping the running points and recording them) on SIGINT or SIGTERM.
    """
    points = {p.index: p for p in plan.points}
    for index in study.indices("pending"):
        if points[index].error:
            study.update(index, state="failed", error=points[index].error)
    queue = study.indices("pending")
    running = {}  # ref -> (index, start time, worker)
    pool = _Pool(cpus_per_experiment, gpus_per_experiment, experiments_per_worker)
    try:
        with _signals_noted() as received:
            while queue or running:
                if received:
                    for index, _, _ in running.values():
                        study.update(index, state="interrupted")
                    raise Interrupted(received[0])
                while queue and len(running) < session.workers:
                    index = queue.pop(0)
                    worker = pool.take()
                    running[worker.actor.run.remote(points[index].config.flat())] = (
                        index, time.monotonic(), worker)
                    study.update(index, state="running", attempts=study.entries[index]["attempts"] + 1)
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in done:
                    index, started, worker = running.pop(ref)
                    rss = _finish(study, points[index], ref, time.monotonic() - started, max_retries,
                                  queue)
                    pool.give_back(worker, rss)
                if progress:
                    progress.update(study, [i for i, _, _ in running.values()])
    finally:
        pool.close()  # a point still running stops here, resumable from its last checkpoint


def _finish(study, point, ref, seconds, max_retries, queue):
    """Records the outcome of one point; requeues a point whose worker failed, up to max_retries.

    Returns the worker's resident memory after the point, or None when the worker failed.
    """
    entry = study.entries[point.index]
    try:
        outcome = ray.get(ref)
    except ray.exceptions.RayError as error:
        message = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
        errors = entry["errors"] + [message]
        if _worker_failure(error) and entry["attempts"] <= max_retries:
            study.update(point.index, state="pending", errors=errors, error=None)
            queue.insert(0, point.index)
        else:
            study.update(point.index, state="failed", errors=errors, error=message)
        return None
    if outcome["error"]:
        study.update(point.index, state="failed", errors=entry["errors"] + [outcome["error"]],
                     error=outcome["error"], worker=outcome["worker"])
    elif folder.is_point_finished(point.config, point.directory):
        study.update(point.index, state="finished", error=None, seconds=round(seconds, 1),
                     worker=outcome["worker"])
    else:
        study.update(point.index, state="failed", error="the experiment ended with rounds unfinished",
                     worker=outcome["worker"])
    return outcome["rss"]
