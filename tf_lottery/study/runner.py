"""A study from start to end: check the plan and the folder, skip finished points, run the rest on Ray.

  outcome = runner.run(base_config, ["seed=0,1,2", "prune_scope=layer,global"], "studies/scope")

`prepare` checks everything that can fail on bad input (the grid, every
point's config, the study folder) without Ray or TensorFlow and writes
nothing; `execute` takes the study folder's lock (results.lock: a study
folder that another driver holds is refused before anything is written),
connects to Ray, runs the unfinished points and returns the Outcome. A study
whose points are all finished does not start Ray.
"""

import dataclasses

from tf_lottery.results import lock
from tf_lottery.study import execution
from tf_lottery.study import folder
from tf_lottery.study import grid as grid_lib
from tf_lottery.study import progress as progress_lib


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a run of a study left: the plan, study.json's point entries, and the signal if interrupted."""
    plan: grid_lib.Plan
    points: list
    interrupted: int | None = None

    @property
    def failed(self):
        return [p for p in self.points if p["state"] == "failed"]

    @property
    def finished(self):
        return [p for p in self.points if p["state"] == "finished"]

    @property
    def ok(self):
        return self.interrupted is None and len(self.finished) == len(self.points)

    def directory(self, entry):
        return self.plan.study_dir / entry["folder"]


def prepare(base, grid, study_dir=None):
    """The checked Plan of a study (ConfigError naming the flag or --grid entry); writes nothing."""
    plan = grid_lib.plan(base, grid, study_dir)
    folder.check_folder(plan)
    return plan


def execute(plan, *, workers=None, cpus_per_experiment=1, gpus_per_experiment=0, ray_address=None,
            max_retries=2, experiments_per_worker=0, progress=True):
    """Runs the plan's unfinished points on Ray (local, or the cluster at `ray_address`).

    A worker process runs points one after another (at most
    `experiments_per_worker` when it is not 0; 1: a fresh process for each).
    `progress`: True for the live line on stdout, a stream, or False.
    Returns the Outcome; failed points are in it, not raised.
    """
    execution.check_options(workers, cpus_per_experiment, gpus_per_experiment, experiments_per_worker)
    with lock.hold(plan.study_dir, "study_dir"):
        return _execute(plan, workers=workers, cpus_per_experiment=cpus_per_experiment,
                        gpus_per_experiment=gpus_per_experiment, ray_address=ray_address,
                        max_retries=max_retries, experiments_per_worker=experiments_per_worker,
                        progress=progress)


def _execute(plan, *, workers, cpus_per_experiment, gpus_per_experiment, ray_address, max_retries,
             experiments_per_worker, progress):
    study = folder.Study(plan)
    if not study.indices("pending"):
        study.write_spec()
        study.write()
        return Outcome(plan, study.entries)
    session = execution.connect(ray_address, workers, cpus_per_experiment, gpus_per_experiment)
    line = None
    try:
        if session.cluster:
            execution.check_shared_storage(plan.study_dir)
        study.write_spec()
        study.write()
        if progress:
            line = progress_lib.Progress(plan, None if progress is True else progress)
        execution.run_points(plan, study, session, cpus_per_experiment=cpus_per_experiment,
                             gpus_per_experiment=gpus_per_experiment, max_retries=max_retries,
                             experiments_per_worker=experiments_per_worker,
                             progress=line)
    except execution.Interrupted as interruption:
        return Outcome(plan, study.entries, interruption.signum)
    finally:
        if line:
            line.close()
        execution.disconnect(session)
    return Outcome(plan, study.entries)


def run(base, grid, study_dir=None, **options):
    """prepare() then execute(); `options` are execute()'s."""
    return execute(prepare(base, grid, study_dir), **options)


def replicates(config, **options):
    """--replicates=N of one config: a study over seeds seed..seed+N-1 (seed_<seed> folders)."""
    plan = grid_lib.replicates(config)
    folder.check_folder(plan)
    return execute(plan, **options)
