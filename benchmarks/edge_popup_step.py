"""Training step time of the learned-mask controls: edge-popup's top-k by sort against by bisection.

Run by hand, not a test (about 3 minutes on 2 cores):

  python benchmarks/edge_popup_step.py [--repetitions=5] [--steps=200] [--output=edge_popup_step.json]

LeNet-300-100 on full MNIST (--data_dir), batch 60, every tensor at 21% density, trained by
tf_lottery's Trainer (XLA, the fused chunk of steps, as the controls train):

  sort       edge-popup with the k-th largest |score| read from a full sort (before)
  bisection  edge-popup with edge_popup.kth_largest (a bisection over the float bits; now)
  supermask  the Bernoulli supermask (a sample per weight per step, the ticket by bisection)
  imp        the masked network with fixed masks (what an IMP round trains), for scale

Each variant is warmed up (compiled) once, then the variants are interleaved --repetitions
times; a sample is --steps steps. Medians per step and their ratios to `imp` and to `sort`.
"""

import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery import data, edge_popup, model_ops, supermask, training  # noqa: E402

flags.DEFINE_integer("repetitions", 5, "Timed samples per variant, after one warm-up sample.")
flags.DEFINE_integer("steps", 200, "Training steps per timed sample.")
flags.DEFINE_string("data_dir", str(_ROOT.parent / "shared" / "data" / "mnist"), "MNIST IDX files.")
flags.DEFINE_string("output", str(pathlib.Path(tempfile.gettempdir()) / "edge_popup_step.json"),
                    "Where to write the results as JSON.")
FLAGS = flags.FLAGS

DENSITY = 0.21
VARIANTS = ("sort", "bisection", "supermask", "imp")


def _kth_largest_by_sort(values, k):
    return tf.gather(tf.sort(tf.reshape(values, [-1]), direction="DESCENDING"), k - 1)


def _model(variant):
    plain = tfl.models.build("lenet", (28, 28, 1), 10, seed=0, hidden=(300, 100))
    if variant == "imp":
        model = tfl.wrap(plain)
        masks = tfl.get_masks(model)
        tfl.set_masks(model, tfl.pruning.prune(tfl.effective_weights(model), masks,
                                               {k: 1 - DENSITY for k in masks}))
        return model
    if variant == "supermask":
        model = supermask.wrap(plain)
        supermask.start(model, {key: DENSITY for key, _, _ in model_ops.masked_weights(model)}, seed=1)
        return model
    model = edge_popup.wrap(plain)
    for _, density in edge_popup.scores(model).values():
        density.assign(DENSITY)
    return model


class Variant:
    def __init__(self, name, splits):
        self.name = name
        self.trainer = training.Trainer(_model(name), splits, tfl.TrainingConfig(
            batch_size=60, learning_rate=1.2e-3, steps_per_call=FLAGS.steps, eval_every=FLAGS.steps))
        self.step = 0
        original = edge_popup.kth_largest
        if name == "sort":  # the compiled chunk keeps what it traced
            edge_popup.kth_largest = _kth_largest_by_sort
        try:
            self.sample()
        finally:
            edge_popup.kth_largest = original

    def sample(self):
        start = time.perf_counter()
        self.trainer.train_chunk(self.step, FLAGS.steps, batches=None)
        self.step += FLAGS.steps
        return time.perf_counter() - start


def main(argv):
    del argv
    training.configure_runtime(0)
    splits = data.load("mnist", data_dir=FLAGS.data_dir)
    variants = [Variant(name, splits) for name in VARIANTS]
    assert all(v.trainer.fused for v in variants), "every variant should run the fused XLA chunk"
    times = {v.name: [] for v in variants}
    for _ in range(FLAGS.repetitions):
        for v in variants:
            times[v.name].append(v.sample() / FLAGS.steps)
    medians = {name: statistics.median(t) for name, t in times.items()}
    rows = [{"variant": name, "ms_per_step": 1000 * medians[name], "over_imp": medians[name] / medians["imp"],
             "over_sort": medians[name] / medians["sort"]} for name in VARIANTS]
    print(f"{'variant':<10} {'ms/step':>9} {'x imp':>7} {'x sort':>7}")
    for row in rows:
        print(f"{row['variant']:<10} {row['ms_per_step']:>9.2f} {row['over_imp']:>7.2f} {row['over_sort']:>7.3f}")
    report = {"density": DENSITY, "steps_per_sample": FLAGS.steps, "repetitions": FLAGS.repetitions,
              "load_average": os.getloadavg(), "rows": rows,
              "samples_ms_per_step": {k: [1000 * t for t in v] for k, v in times.items()}}
    pathlib.Path(FLAGS.output).write_text(json.dumps(report, indent=2))
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
