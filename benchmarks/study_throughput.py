"""Throughput of the study runner: 4 LeNet-300-100 experiments on full MNIST through tf_lottery.study
with 2 workers against the same 4 one after another in one process.

Each experiment is configs/lenet300_mnist.cfg with 2,000 iterations per round and --rounds=2 (three
trained rounds: the dense round 0 and two pruning rounds), seeds 0-3. The study runs on a local Ray
started for it (`--workers` experiments at a time, one CPU and one TensorFlow thread each); the
sequential run is one Python process (TensorFlow's default thread pools, all cores) calling
experiment.prepare and experiment.run_imp four times. Both are timed end to end: the study from
before `ray.init` to the last point, the sequential run from its process start. Targets: the study
at least 1.5x faster, Ray start-up under 10 s.

    python benchmarks/study_throughput.py --output=benchmarks/results/study_throughput.json
"""

import argparse
import json
import os
import pathlib
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
    """The --phase=sequential child: the four experiments one after another in this process."""
    from tf_lottery import experiment
    config = base_config(args.data_dir, args.train_steps, args.rounds)
    for seed in SEEDS:
        prepared = experiment.prepare(config.replace(seed=seed, root_dir=str(args.work_dir)))
        experiment.run_imp(prepared)


def _records(directory):
    return [(r["round"], r["early_stop_test_accuracy"]) for r in results.read_summary(directory)["rounds"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--train_steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="pruning rounds after the dense round 0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default=str(pathlib.Path(tempfile.gettempdir()) / "study_throughput.json"))
    parser.add_argument("--work_dir", default=None)
    parser.add_argument("--phase", choices=("all", "sequential"), default="all")
    args = parser.parse_args()
    if args.phase == "sequential":
        sequential(args)
        return
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="study_throughput_"))
    config = base_config(args.data_dir, args.train_steps, args.rounds)
    load_before = os.getloadavg()

    started = time.perf_counter()
    session = execution.connect(workers=args.workers)
    ray_startup = time.perf_counter() - started
    try:
        outcome = runner.run(config, [f"seed={','.join(map(str, SEEDS))}"], work / "study",
                             workers=session.workers, progress=False)
    finally:
        execution.disconnect(session)
    study_seconds = time.perf_counter() - started
    assert outcome.ok, outcome.points

    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--phase=sequential", f"--data_dir={args.data_dir}",
                    f"--train_steps={args.train_steps}", f"--rounds={args.rounds}",
                    f"--work_dir={work / 'sequential'}"], check=True, cwd=REPO)
    sequential_seconds = time.perf_counter() - started

    same = [_records(outcome.directory(e)) == _records(
        config.replace(seed=e["values"]["seed"], root_dir=str(work / "sequential")).directory())
        for e in outcome.points]
    report = {
        "experiments": len(SEEDS), "train_steps": args.train_steps, "rounds_trained": args.rounds + 1,
        "workers": args.workers, "cores": execution.cores(),
        "study_seconds": round(study_seconds, 1), "ray_startup_seconds": round(ray_startup, 1),
        "sequential_seconds": round(sequential_seconds, 1),
        "speedup": round(sequential_seconds / study_seconds, 2),
        "target_speedup": 1.5, "target_ray_startup_seconds": 10,
        "speedup_met": sequential_seconds / study_seconds >= 1.5, "ray_startup_met": ray_startup < 10,
        "same_early_stop_accuracies": all(same),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(SEEDS)} LeNet-300-100 experiments, full MNIST, {args.rounds + 1} rounds x "
          f"{args.train_steps} iterations ({report['cores']} cores)")
    print(f"| run | wall s | s per experiment |\n|---|---:|---:|")
    print(f"| one after another, one process | {sequential_seconds:.1f} | "
          f"{sequential_seconds / len(SEEDS):.1f} |")
    print(f"| study, {args.workers} workers (Ray start-up {ray_startup:.1f} s included) | "
          f"{study_seconds:.1f} | {study_seconds / len(SEEDS):.1f} |")
    print(f"speedup {report['speedup']}x (target 1.5x: {'met' if report['speedup_met'] else 'missed'}); "
          f"Ray start-up {ray_startup:.1f} s (target < 10 s: "
          f"{'met' if report['ray_startup_met'] else 'missed'}); same early-stop accuracies: "
          f"{report['same_early_stop_accuracies']}")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
