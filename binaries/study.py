"""A study: the experiment of a base flagfile at every point of a grid, in parallel on Ray.

  python -m binaries.study --flagfile=configs/quickstart.cfg --grid=seed=0,1,2
      --grid=prune_scope=layer,global [--study_dir=DIR] [--workers=2]
  python -m binaries.study --flagfile=configs/studies/quickstart_reset_scope.cfg
  python -m binaries.study ... --ray_address=auto      # an existing Ray cluster
  python -m binaries.study ... --plan                   # the points and how far each is, nothing run

Every point is an ordinary experiment folder under the study folder, named as
binaries.lottery names it; DIR/study.json lists the points, their folders and
states. Rerunning the command skips finished points and resumes the others; a
changed grid or base config in the same folder is refused. Exit status: 0
when every point finished, 1 when some failed (listed), 2 for bad input,
128 + the signal number when interrupted. The report:
`python -m binaries.analyze study --study_dir=DIR`.
"""

from absl import app
from absl import flags

from binaries import cli
from tf_lottery import flags as setting_flags
from tf_lottery import study
from tf_lottery.study import folder
from tf_lottery.study import grid as grid_lib
from tf_lottery.study import options

try:
    from tf_lottery.study import runner
except ModuleNotFoundError as missing:
    if missing.name != "ray":
        raise
    cli.fail(study.RAY_ADVICE)

setting_flags.define_experiment_flags()
flags.DEFINE_multi_string("grid", [], "An axis of the study: name=v1,v2 over one setting (the lottery "
                          "flags' names), or a:b=x1:y1,x2:y2 over settings that vary together; list "
                          "settings separate values with ';' (hidden=300,100;100,30). Repeat for more "
                          "axes; the points are their product.")
flags.DEFINE_string("study_dir", None, "The study folder (default: root_dir/study_<model>_<dataset>_"
                    "<hash of the base config and the grid>).")
flags.DEFINE_integer("workers", None, "Experiments at a time (default: the cores, or the cluster's "
                     "CPUs, divided by --cpus_per_experiment).")
flags.DEFINE_integer("cpus_per_experiment", 1, "CPUs of each experiment (its TensorFlow thread pools).")
flags.DEFINE_float("gpus_per_experiment", 0, "GPUs of each experiment (fractions share a GPU).")
flags.DEFINE_string("ray_address", None, "An existing Ray cluster (auto, host:port or ray://host:port); "
                    "default: a local Ray on this machine. An address where nothing answers within 10 s is "
                    "refused before Ray starts. The study folder must be on storage every node sees "
                    "(checked at start).")
flags.DEFINE_integer("max_retries", 2, "Retries of a point whose worker died (killed, crashed, out of "
                     "memory, node lost); errors of the experiment itself are not retried.")
flags.DEFINE_integer("experiments_per_worker", 0, "Points a worker process runs before a fresh one "
                     "replaces it (0: no limit; a worker is also replaced when its memory after a point "
                     "is more than twice what it was after its first; 1: a fresh process for each point).")
flags.DEFINE_bool("progress", True, "Show the live progress line.")
flags.DEFINE_bool("plan", False, "Print every point with its folder and finished rounds, and exit: "
                  "checks the input as a run does, writes nothing and starts no Ray.")
FLAGS = flags.FLAGS


def format_outcome(outcome):
    """One line per point: state, values, folder (and error), then the counts."""
    lines = []
    for entry in outcome.points:
        values = " ".join(f"{k}={v}" for k, v in entry["values"].items())
        line = f"{entry['state']:>11}  #{entry['index']:<3} {values:<40} {entry['folder']}"
        if entry.get("error"):
            line += f"\n{'':>17}{entry['error']}"
        lines.append(line)
    lines.append(f"{len(outcome.finished)} of {len(outcome.points)} points finished, "
                 f"{len(outcome.failed)} failed")
    return "\n".join(lines)


def format_plan(plan):
    """One line per point: finished rounds of all, values, folder; then the totals."""
    lines, done, total, finished = [], 0, 0, 0
    for point in plan.points:
        point_done, point_total = folder.point_rounds(point.config, point.directory)
        done, total, finished = done + point_done, total + point_total, finished + (point_done == point_total)
        values = " ".join(f"{k}={v}" for k, v in point.values.items())
        lines.append(f"{point_done:>4}/{point_total:<4} #{point.index:<3} {values:<40} "
                     f"{folder.relative(plan.study_dir, point.directory)}")
    lines.append(f"{finished} of {len(plan.points)} points finished; {done} of {total} rounds "
                 "(IMP and controls)")
    return "\n".join(lines)


def main(argv):
    cli.no_arguments(argv)
    with cli.usage_errors():
        base, grid = grid_lib.with_replicates(setting_flags.config_from_flags(), FLAGS.grid)
        plan = runner.prepare(base, grid, FLAGS.study_dir)
        options.check(len(plan.points), workers=FLAGS.workers, cpus_per_experiment=FLAGS.cpus_per_experiment,
                      gpus_per_experiment=FLAGS.gpus_per_experiment, ray_address=FLAGS.ray_address,
                      max_retries=FLAGS.max_retries, experiments_per_worker=FLAGS.experiments_per_worker)
    print(f"study: {plan.study_dir} ({len(plan.points)} points)", flush=True)
    if FLAGS.plan:
        print(format_plan(plan))
        return
    outcome = cli.execute(lambda: runner.execute(
        plan, workers=FLAGS.workers, cpus_per_experiment=FLAGS.cpus_per_experiment,
        gpus_per_experiment=FLAGS.gpus_per_experiment, ray_address=FLAGS.ray_address,
        max_retries=FLAGS.max_retries, experiments_per_worker=FLAGS.experiments_per_worker,
        progress=FLAGS.progress))
    print(format_outcome(outcome))
    if outcome.interrupted:
        cli.fail("interrupted; every folder is resumable: rerun the same command",
                 status=128 + outcome.interrupted)
    if outcome.failed:
        cli.fail(f"{len(outcome.failed)} of {len(outcome.points)} points failed (errors above and in "
                 f"{folder.study_path(plan.study_dir)})", status=1)
    print(f"report: python -m binaries.analyze study --study_dir={plan.study_dir}")


def run_main():
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
