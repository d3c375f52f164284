"""Training step time of the learned-mask controls: edge-popup's top-k threshold by sort, bisection
and tf_lottery.top_k's warm-started counting search.

Run by hand, not a test (about 5 minutes on 2 cores):

  python benchmarks/edge_popup_step.py [--repetitions=5] [--steps=200] [--output=edge_popup_step.json]

LeNet-300-100 on full MNIST (--data_dir), batch 60, every tensor at 21% density, trained by
tf_lottery's Trainer (XLA, the fused chunk of steps, as the controls train):

  sort       edge-popup with the k-th largest |score| read from a full sort (first version)
  bisection  edge-popup with the k-th largest by a bisection over the float bits, 31 counting passes
             (second version)
  top_k      edge-popup as it is: top_k.threshold, packed counts of several probes per pass, started
             from the last step's threshold (a top_k.Hint per tensor)
  cold       the same search without the hint (how evaluation passes and the supermask's ticket run)
  given      edge-popup with a fixed threshold and no search: the floor of any search
  supermask  the Bernoulli supermask (a sample per weight per step; the ticket only in inference)
  imp        the masked network with fixed masks (what an IMP round trains), for scale

Each variant is warmed up (compiled) once, then the variants are interleaved --repetitions
times; a sample is --steps steps. Medians per step, their ratios to `imp`, `sort` and `bisection`,
and the median over repetitions of each sample's ratio to the `imp` sample run just before it.
The edge-popup variants start from the same scores and batches, so the exact ones (sort,
bisection, top_k, cold) must end with bit-identical variables; the run checks it.
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery import data, edge_popup, model_ops, supermask, top_k, training  # noqa: E402

flags.DEFINE_integer("repetitions", 5, "Timed samples per variant, after one warm-up sample.")
flags.DEFINE_integer("steps", 200, "Training steps per timed sample.")
flags.DEFINE_string("data_dir", str(_ROOT.parent / "shared" / "data" / "mnist"), "MNIST IDX files.")
flags.DEFINE_string("output", str(pathlib.Path(tempfile.gettempdir()) / "edge_popup_step.json"),
                    "Where to write the results as JSON.")
FLAGS = flags.FLAGS

DENSITY = 0.21
VARIANTS = ("imp", "sort", "bisection", "top_k", "cold", "given", "supermask")


def _by_sort(values, k, hint=None):
    return tf.gather(tf.sort(tf.reshape(values, [-1]), direction="DESCENDING"), k - 1)


def _by_bisection(values, k, hint=None):
    """The largest bit pattern b with at least k entries >= b: at most 31 counting passes."""
    bits = tf.bitcast(tf.reshape(tf.cast(values, tf.float32), [-1]), tf.int32)

    def halve(low, high):
        middle = low + (high - low + 1) // 2
        enough = tf.reduce_sum(tf.cast(bits >= middle, tf.int32)) >= k
        return tf.where(enough, middle, low), tf.where(enough, high, middle - 1)

    low, _ = tf.while_loop(lambda low, high: low < high, halve,
                           (tf.constant(0), tf.constant(top_k.INF_BITS)), maximum_iterations=32)
    return tf.bitcast(low, tf.float32)


def _cold(values, k, hint=None):
    return _THRESHOLD(values, k, None)


def _given(values, k, hint=None):
    return tf.constant(0.069)  # a constant (fc1's 21% at the start): the step without any search


_THRESHOLD = top_k.threshold
# How each edge-popup variant finds its threshold (top_k: as the library does).
_THRESHOLDS = {"sort": _by_sort, "bisection": _by_bisection, "cold": _cold, "given": _given}


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
    for index, (score, density) in enumerate(edge_popup.scores(model).values()):
        score.assign(keras.initializers.HeUniform(seed=index)(score.shape))  # every variant from the same scores
        density.assign(DENSITY)
    return model


class Variant:
    def __init__(self, name, splits):
        self.name = name
        self.trainer = training.Trainer(_model(name), splits, tfl.TrainingConfig(
            batch_size=60, learning_rate=1.2e-3, steps_per_call=FLAGS.steps, eval_every=FLAGS.steps))
        self.step = 0
        top_k.threshold = _THRESHOLDS.get(name, _THRESHOLD)  # the compiled chunk keeps what it traced
        try:
            self.sample()
        finally:
            top_k.threshold = _THRESHOLD

    def sample(self):
        start = time.perf_counter()
        self.trainer.train_chunk(self.step, FLAGS.steps, batches=None)
        self.step += FLAGS.steps
        return time.perf_counter() - start


def main(argv):
    del argv
    training.configure_runtime(0)
    load_start = os.getloadavg()
    splits = data.load("mnist", data_dir=FLAGS.data_dir)
    variants = [Variant(name, splits) for name in VARIANTS]
    assert all(v.trainer.fused for v in variants), "every variant should run the fused XLA chunk"
    times = {v.name: [] for v in variants}
    for _ in range(FLAGS.repetitions):
        for v in variants:
            times[v.name].append(v.sample() / FLAGS.steps)
    medians = {name: statistics.median(t) for name, t in times.items()}
    rows = [{"variant": name, "ms_per_step": 1000 * medians[name], "over_imp": medians[name] / medians["imp"],
             "over_sort": medians[name] / medians["sort"],
             "over_bisection": medians[name] / medians["bisection"]} for name in VARIANTS]
    print(f"{'variant':<10} {'ms/step':>9} {'x imp':>7} {'x sort':>7} {'x bisection':>11}")
    for row in rows:
        print(f"{row['variant']:<10} {row['ms_per_step']:>9.2f} {row['over_imp']:>7.2f} {row['over_sort']:>7.3f} "
              f"{row['over_bisection']:>11.3f}")
    # Per-sample ratios (each repetition's samples ran back to back): less exposed to the load changing.
    paired = {name: statistics.median(t / i for t, i in zip(times[name], times["imp"])) for name in VARIANTS}
    print("median per-repetition ratio to imp: " + ", ".join(f"{n} {r:.2f}" for n, r in paired.items()))
    # The exact variants trained the same steps from the same scores: the same masks every step.
    exact = [v for v in variants if v.name in ("sort", "bisection", "top_k", "cold")]
    same = all(np.array_equal(a.numpy(), b.numpy()) for v in exact[1:]
               for a, b in zip(exact[0].trainer.model.variables, v.trainer.model.variables))
    print(f"sort, bisection, top_k and cold end with bit-identical variables: {same}")
    report = {"density": DENSITY, "steps_per_sample": FLAGS.steps, "repetitions": FLAGS.repetitions,
              "exact_variants_bit_identical": same, "load_average_start": load_start,
              "load_average": os.getloadavg(), "rows": rows, "median_ratio_to_imp_per_repetition": paired,
              "samples_ms_per_step": {k: [1000 * t for t in v] for k, v in times.items()}}
    pathlib.Path(FLAGS.output).write_text(json.dumps(report, indent=2))
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
