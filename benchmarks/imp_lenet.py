"""Wall time of one paper-protocol LeNet-300-100 IMP round on full MNIST, through the binary.

Run by hand, not a test (about 10 minutes on 2 cores with the defaults):

  python benchmarks/imp_lenet.py [--train_steps=50000] [--eval_every=100,1000] [--repetitions=1]
      [--data_dir=../shared/data/mnist] [--output=/tmp/imp_lenet.json]

Each run is

  python -m binaries.lottery --flagfile=configs/lenet300_mnist.cfg --data_dir=DATA --rounds=0
      --experiment_dir=TMP --train_steps=N --eval_every=E

(Adam 1.2e-3, batch 60, evaluation on the 5,000 validation and 10,000 test examples), once per
--eval_every value, interleaved over --repetitions. Reported per run: the process's wall time
(imports, data loading and compilation included), the round's own wall_seconds from
round_00/metrics.json (Trainer.train: compilation, training, evaluations, checkpoints), both
per 1,000 iterations, and the number of evaluations. From two eval_every values, the cost of
one evaluation is the difference in round time over the difference in evaluation counts, and
the training-only time is the round time less that cost times the evaluation count.
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

_ROOT = pathlib.Path(__file__).resolve().parents[1]

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer("train_steps", 50000, "Iterations of the round (the paper: 50,000).")
flags.DEFINE_list("eval_every", ["100", "1000"], "Evaluation intervals to run (the paper: 100).")
flags.DEFINE_integer("repetitions", 1, "Runs per eval_every value, interleaved.")
flags.DEFINE_string("config", str(_ROOT / "configs" / "lenet300_mnist.cfg"), "The protocol's flagfile.")
flags.DEFINE_string("data_dir", str(_ROOT.parent / "shared" / "data" / "mnist"),
                    "Folder with the MNIST IDX files.")
flags.DEFINE_list("extra_flags", [], "More flags for binaries.lottery, e.g. --extra_flags=--nojit_compile.")
flags.DEFINE_string("output", str(pathlib.Path(tempfile.gettempdir()) / "imp_lenet.json"),
                    "Where to write the results as JSON.")
FLAGS = flags.FLAGS


def run_once(eval_every, folder):
    """Runs the binary for one round 0; returns its timings and round record."""
    directory = pathlib.Path(folder) / f"eval{eval_every}_{time.monotonic_ns()}"
    command = [sys.executable, "-m", "binaries.lottery", f"--flagfile={FLAGS.config}",
               f"--data_dir={FLAGS.data_dir}", "--rounds=0", f"--experiment_dir={directory}",
               f"--train_steps={FLAGS.train_steps}", f"--eval_every={eval_every}", *FLAGS.extra_flags]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, text=True, check=False)
    total = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed with status {done.returncode}:\n{done.stderr[-3000:]}")
    record = json.loads((directory / "round_00" / "metrics.json").read_text())
    curve = json.loads((directory / "round_00" / "curve.json").read_text())
    evaluations = len(curve["curve"] if isinstance(curve, dict) else curve)
    thousands = FLAGS.train_steps / 1000
    return {
        "command": " ".join(command), "total_seconds": total, "round_seconds": record["wall_seconds"],
        "startup_seconds": total - record["wall_seconds"],
        "total_seconds_per_1000": total / thousands,
        "round_seconds_per_1000": record["wall_seconds"] / thousands,
        "evaluations": evaluations, "final_test_accuracy": record["final_test_accuracy"],
        "early_stop_iteration": record["early_stop_iteration"],
        "early_stop_test_accuracy": record["early_stop_test_accuracy"],
        "load_average_after": list(os.getloadavg()),
    }


def _median_run(runs):
    keys = ("total_seconds", "round_seconds", "startup_seconds", "total_seconds_per_1000",
            "round_seconds_per_1000")
    return {**{k: statistics.median(r[k] for r in runs) for k in keys},
            "evaluations": runs[0]["evaluations"]}


def split_time(medians):
    """Per-evaluation and training-only seconds from two eval intervals, or None."""
    if len(medians) < 2:
        return None
    many, few = (medians[k] for k in sorted(medians, key=lambda k: -medians[k]["evaluations"])[:2])
    extra = many["evaluations"] - few["evaluations"]
    if extra <= 0:
        return None
    per_eval = (many["round_seconds"] - few["round_seconds"]) / extra
    training = few["round_seconds"] - per_eval * few["evaluations"]
    return {"seconds_per_evaluation": per_eval, "training_seconds": training,
            "training_seconds_per_1000": training / (FLAGS.train_steps / 1000),
            "evaluation_seconds_at": {str(k): per_eval * m["evaluations"] for k, m in medians.items()},
            "evaluation_share_at": {str(k): per_eval * m["evaluations"] / m["round_seconds"]
                                    for k, m in medians.items()}}


def _table(medians, split):
    lines = [f"{'eval every':>10} {'evals':>6} {'total s':>9} {'round s':>9} {'startup s':>10} "
             f"{'total s/1k it':>14} {'round s/1k it':>14}"]
    for every, m in medians.items():
        lines.append(f"{every:>10} {m['evaluations']:>6} {m['total_seconds']:>9.1f} "
                     f"{m['round_seconds']:>9.1f} {m['startup_seconds']:>10.1f} "
                     f"{m['total_seconds_per_1000']:>14.2f} {m['round_seconds_per_1000']:>14.2f}")
    if split:
        lines.append(f"one evaluation (5,000 validation + 10,000 test examples): "
                     f"{1000 * split['seconds_per_evaluation']:.1f} ms; training alone: "
                     f"{split['training_seconds']:.1f} s ({split['training_seconds_per_1000']:.2f} s per "
                     f"1,000 iterations); evaluation share of the round: "
                     + ", ".join(f"{100 * v:.1f}% at eval_every={k}"
                                 for k, v in split["evaluation_share_at"].items()))
    return "\n".join(lines)


def main(argv):
    del argv
    intervals = [int(e) for e in FLAGS.eval_every]
    load_start = os.getloadavg()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in load_start)} ({os.cpu_count()} CPUs)",
          flush=True)
    runs = {every: [] for every in intervals}
    with tempfile.TemporaryDirectory() as folder:
        for repetition in range(FLAGS.repetitions):
            for every in intervals:
                run = run_once(every, folder)
                runs[every].append(run)
                print(f"  eval_every={every} repetition {repetition + 1}: {run['total_seconds']:.1f} s "
                      f"total, {run['round_seconds']:.1f} s in the round", flush=True)
    load_end = os.getloadavg()
    medians = {every: _median_run(r) for every, r in runs.items()}
    split = split_time(medians)
    print()
    print(f"LeNet-300-100, full MNIST, one IMP round of {FLAGS.train_steps:,} iterations "
          f"(medians of {FLAGS.repetitions}):")
    print(_table(medians, split))
    print(f"command: {runs[intervals[0]][0]['command']}")
    print(f"load average: start {' '.join(f'{v:.2f}' for v in load_start)}, "
          f"end {' '.join(f'{v:.2f}' for v in load_end)}")
    result = {"train_steps": FLAGS.train_steps, "repetitions": FLAGS.repetitions,
              "config": FLAGS.config, "cpus": os.cpu_count(),
              "load_average": {"start": list(load_start), "end": list(load_end)},
              "runs": {str(k): v for k, v in runs.items()},
              "medians": {str(k): v for k, v in medians.items()}, "split": split}
    pathlib.Path(FLAGS.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
