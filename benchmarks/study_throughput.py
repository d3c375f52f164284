"""Throughput of the study runner: 4 LeNet-300-100 experiments on full MNIST through tf_lottery.study
with 2 workers against the same 4 one after another in one process.

Each experiment is configs/lenet300_mnist.cfg with 2,000 iterations per round and --rounds=2 (three
trained rounds: the dense round 0 and two pruning rounds), seeds 0-3. The study runs on a local Ray
started for it (`--workers` experiments at a time, one CPU and one TensorFlow thread each); the
sequential run is one Python process (TensorFlow's default thread pools, all cores) calling
experiment.prepare and experiment.run_imp four times. Both are timed end to end: the study from
before `ray.init` to the last point, the sequential run from its process start. The study runs
twice: by default (a worker process runs points in turn) and with a fresh process per point
(`experiments_per_worker=1`). The ceiling of any runner on this machine is measured without Ray:
`--workers` plain processes started at once, one TensorFlow thread each, the seeds split between
them. The four variants alternate in each repetition; the table shows medians. Targets: the study
at least 1.5x faster, Ray start-up under 10 s.

    python benchmarks/study_throughput.py --output=benchmarks/results/study_throughput.json
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tf_lottery import results  # noqa: E402
from tf_lottery.config import ExperimentConfig  # noqa: E402
from tf_lottery.study import execution, runner  # noqa: E402

SEEDS = (0, 1, 2, 3)


def base_config(data_dir, train_steps, rounds):
    """configs/lenet300_mnist.cfg with short rounds (the flagfile's values, as flat settings)."""
    return ExperimentConfig.from_flat(
        model="lenet", hidden=[300, 100], dataset="mnist", data_dir=str(data_dir), validation_size=5000,
        rounds=rounds, prune_fraction=0.2, output_prune_fraction=0.1, prune_scope="layer", reset="init",
        optimizer="adam", learning_rate=0.0012, batch_size=60, train_steps=train_steps, eval_every=100,
        checkpoint_every=1000, seed=0)


def sequential(args):
    """The --phase=sequential child: its --seeds' experiments one after another in this process."""
    if args.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from tf_lottery import experiment
    config = base_config(args.data_dir, args.train_steps, args.rounds)
    for seed in map(int, args.seeds.split(",")):
        prepared = experiment.prepare(config.replace(seed=seed, root_dir=str(args.work_dir)))
        experiment.run_imp(prepared)


def _records(directory):
    return [(r["round"], r["early_stop_test_accuracy"]) for r in results.read_summary(directory)["rounds"]]


def run_study(args, config, study_dir, experiments_per_worker):
    """(seconds end to end, Ray start-up seconds, outcome) of the study with its own local Ray."""
    started = time.perf_counter()
    session = execution.connect(workers=args.workers)
    ray_startup = time.perf_counter() - started
    try:
        outcome = runner.run(config, [f"seed={','.join(map(str, SEEDS))}"], study_dir,
                             workers=session.workers, experiments_per_worker=experiments_per_worker,
                             progress=False)
    finally:
        execution.disconnect(session)
    assert outcome.ok, outcome.points
    return time.perf_counter() - started, ray_startup, outcome


def run_sequential(args, work_dir, groups=(SEEDS,), threads=0):
    """Seconds for one process per group of seeds, all started at once, each running its
    experiments one after another (`threads`: TensorFlow threads each; 0: TensorFlow's default)."""
    started = time.perf_counter()
    children = [subprocess.Popen([sys.executable, __file__, "--phase=sequential", f"--data_dir={args.data_dir}",
                                  f"--train_steps={args.train_steps}", f"--rounds={args.rounds}",
                                  f"--work_dir={work_dir}", f"--seeds={','.join(map(str, seeds))}",
                                  f"--threads={threads}"], cwd=REPO) for seeds in groups]
    if any(child.wait() for child in children):
        raise RuntimeError("a sequential child failed")
    return time.perf_counter() - started


VARIANTS = ("sequential", "study", "study_fresh", "ceiling")
LABELS = {"sequential": "one after another, one process",
          "study": "study, {workers} workers (a worker runs points in turn)",
          "study_fresh": "study, {workers} workers, a fresh process per point (--experiments_per_worker=1)",
          "ceiling": "no Ray: {workers} plain processes side by side, one thread each, points split "
                     "between them (the most any runner can get here)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--train_steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="pruning rounds after the dense round 0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repetitions", type=int, default=3,
                        help="interleaved repetitions of each variant (the table shows medians)")
    parser.add_argument("--output", default=str(pathlib.Path(tempfile.gettempdir()) / "study_throughput.json"))
    parser.add_argument("--work_dir", default=None)
    parser.add_argument("--phase", choices=("all", "sequential"), default="all")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="(--phase=sequential)")
    parser.add_argument("--threads", type=int, default=0, help="(--phase=sequential) 0: TF's default")
    args = parser.parse_args()
    if args.phase == "sequential":
        sequential(args)
        return
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="study_throughput_"))
    config = base_config(args.data_dir, args.train_steps, args.rounds)
    load_before = os.getloadavg()
    seconds = {v: [] for v in VARIANTS}
    startups, same = [], []
    for rep in range(args.repetitions):
        shift = rep % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            folder_ = work / f"{variant}_{rep}"
            if variant == "sequential":
                seconds[variant].append(run_sequential(args, folder_))
                reference = folder_
                continue
            if variant == "ceiling":
                groups = [SEEDS[i::args.workers] for i in range(args.workers)]
                seconds[variant].append(run_sequential(args, folder_, groups, threads=1))
                continue
            wall, startup, outcome = run_study(args, config, folder_, 1 if variant == "study_fresh" else 0)
            seconds[variant].append(wall)
            startups.append(startup)
            same.append([_records(outcome.directory(e)) for e in outcome.points])
        same.append([_records(config.replace(seed=seed, root_dir=str(reference)).directory())
                     for seed in SEEDS])
    median = {v: statistics.median(t) for v, t in seconds.items()}
    ray_startup = statistics.median(startups)
    speedup = median["sequential"] / median["study"]
    report = {
        "experiments": len(SEEDS), "train_steps": args.train_steps, "rounds_trained": args.rounds + 1,
        "workers": args.workers, "cores": execution.cores(), "repetitions": args.repetitions,
        "seconds": {v: [round(t, 1) for t in ts] for v, ts in seconds.items()},
        "median_seconds": {v: round(t, 1) for v, t in median.items()},
        "ray_startup_seconds": round(ray_startup, 1),
        "speedup": round(speedup, 2),
        "speedup_fresh_processes": round(median["sequential"] / median["study_fresh"], 2),
        "speedup_ceiling_without_ray": round(median["sequential"] / median["ceiling"], 2),
        "target_speedup": 1.5, "target_ray_startup_seconds": 10,
        "speedup_met": speedup >= 1.5, "ray_startup_met": ray_startup < 10,
        "same_early_stop_accuracies": all(s == same[0] for s in same),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(SEEDS)} LeNet-300-100 experiments, full MNIST, {args.rounds + 1} rounds x "
          f"{args.train_steps} iterations ({report['cores']} cores), median of {args.repetitions} "
          "interleaved repetitions")
    print("| run | wall s | s per experiment | speed-up |\n|---|---:|---:|---:|")
    for variant in VARIANTS:
        print(f"| {LABELS[variant].format(workers=args.workers)} | {median[variant]:.1f} | "
              f"{median[variant] / len(SEEDS):.1f} | {median['sequential'] / median[variant]:.2f}x |")
    print(f"speedup {report['speedup']}x (target 1.5x: {'met' if report['speedup_met'] else 'missed'}); "
          f"Ray start-up {ray_startup:.1f} s, included in the studies' times (target < 10 s: "
          f"{'met' if report['ray_startup_met'] else 'missed'}); same early-stop accuracies in every run: "
          f"{report['same_early_stop_accuracies']}")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
