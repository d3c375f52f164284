"""Training step time: tf_lottery's masked Trainer against plain Keras fit and TF-MOT pruning.

Run by hand, not a test (about 40 minutes on 2 cores with the defaults; Conv-2 dominates):

  python benchmarks/step_time.py [--networks=lenet_300_100,conv2] [--repetitions=3]
      [--diagnostics] [--output=/tmp/step_time.json]

Per network, at batch 60, the same architecture trained four ways:

  a  tf_lottery: the model wrapped, masks at 80% sparsity from tf_lottery.prune, trained by
     tf_lottery.Trainer (its default: XLA, except for convolutional networks on CPU; with XLA,
     one replica and in-memory data a whole chunk of steps is one XLA computation). Steady-state
     time: the timed samples call `trainer.train_chunk(step, n, ...)` exactly as Trainer.train
     does between evaluations (steps_per_call only sets n), so compilation and evaluation are
     excluded. One variant per --steps_per_call value.
  b  plain Keras 3: the unwrapped model, model.compile(...) and model.fit(...) on the same
     normalised float32 data, one variant per (--steps_per_execution, --keras_jit,
     --keras_inputs) combination; a sample is one fit epoch of --*_steps steps, timed from
     on_epoch_begin to on_epoch_end.
  c  TF-MOT: the same network built in tf_keras, prune_low_magnitude with ConstantSparsity(0.8,
     begin_step=0, frequency=100), tf_keras fit with the UpdatePruningStep callback.
  d  (LeNet only) a raw TensorFlow loop of the same masked MLP and masks: 100 whole steps
     (random batch indices, gather, normalisation, forward, backward, Adam) in one XLA
     computation, the floor a framework can reach.

LeNet-300-100 trains on full MNIST (--data_dir); Conv-2 on --conv2_examples random uint8
CIFAR-shaped images (speed does not depend on the pixels). Every variant is run once as a
warm-up (compilation), then the variants are interleaved (a b c d a b c d ...) --repetitions
times; medians are reported, the best variant of each method is compared, and the ratios are of
time per step. Targets: LeNet a/b <= 0.85 and a/d <= 1.1; Conv-2 a/b <= 0.95; a/c <= 0.5 (an
older target) is reported too.

--diagnostics adds variants that split a's time: the Trainer on the unwrapped model (no masks),
the Trainer's step-by-step loop (not fused), the masked Trainer with XLA forced the other way (on
for Conv-2, off for LeNet), and Keras fit of the wrapped model.

First, the peak resident memory of a LeNet IMP run with the random-reinitialisation control
(the lottery binary, configs/lenet300_mnist.cfg with --imp_memory_rounds rounds of
--imp_memory_steps iterations, full MNIST) is measured in a child process (target: at most
1,000 MB).
"""

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

flags.DEFINE_list("networks", ["lenet_300_100", "conv2"], "Networks to time: lenet_300_100, conv2.")
flags.DEFINE_integer("repetitions", 3, "Timed samples per variant, after one warm-up sample.")
flags.DEFINE_integer("lenet_steps", 900, "Training steps per timed LeNet sample.")
flags.DEFINE_integer("conv2_steps", 100, "Training steps per timed Conv-2 sample.")
flags.DEFINE_integer("conv2_examples", 10000, "Random CIFAR-shaped training images for Conv-2.")
flags.DEFINE_list("steps_per_call", ["1", "50", "100"], "tf_lottery steps_per_call values (a).")
flags.DEFINE_list("steps_per_execution", ["1", "10", "50", "100"], "Keras steps_per_execution values (b).")
flags.DEFINE_list("keras_jit", ["true", "false"], "Keras jit_compile values (b).")
flags.DEFINE_list("keras_inputs", ["arrays"],
                  "Keras inputs (b): arrays (numpy, fit shuffles) and/or dataset (tf.data: shuffled "
                  "indices, batched 60, gathered from the float array, prefetched).")
flags.DEFINE_integer("tfmot_steps_per_execution", 1, "tf_keras steps_per_execution for TF-MOT (c).")
flags.DEFINE_bool("diagnostics", False, "Also time the variants that split tf_lottery's step time.")
flags.DEFINE_string("data_dir", str(_ROOT.parent / "shared" / "data" / "mnist"),
                    "Folder with the MNIST IDX files.")
flags.DEFINE_bool("memory", True, "Measure the peak RSS of a LeNet IMP run with the random-reinit "
                  "control (the lottery binary, in a child process), before anything else.")
flags.DEFINE_integer("imp_memory_rounds", 12, "--rounds of the memory run.")
flags.DEFINE_integer("imp_memory_steps", 200, "--train_steps of the memory run (memory does not "
                     "depend on it).")
flags.DEFINE_string("output", str(pathlib.Path(tempfile.gettempdir()) / "step_time.json"),
                    "Where to write the results as JSON.")
FLAGS = flags.FLAGS

BATCH = 60
SPARSITY = 0.8
LEARNING_RATE = 1.2e-3
NETWORKS = ("lenet_300_100", "conv2")
METHODS = {"a": "tf_lottery masked Trainer", "b": "Keras 3 fit", "c": "TF-MOT fit",
           "d": "raw fused XLA loop"}
# Time-per-step ratios and their upper limits, per network (d exists for the MLP only).
TARGETS = {"lenet_300_100": {"a_over_b": 0.85, "a_over_d": 1.1, "a_over_c": 0.5},
           "conv2": {"a_over_b": 0.95, "a_over_c": 0.5}}
MEMORY_TARGET_MB = 1000


def _flag_bool(text):
    if text.lower() not in ("true", "false", "1", "0"):
        raise app.UsageError(f"--keras_jit takes true/false values, got {text!r}")
    return text.lower() in ("true", "1")


def _maxrss_mb(who=resource.RUSAGE_SELF):
    """Peak resident set size in MiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(who).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# Data and models


def _load_splits(network):
    """(Splits of uint8 images, steps per sample) for `network`."""
    from tf_lottery import data
    if network == "lenet_300_100":
        return data.load("mnist", data_dir=FLAGS.data_dir), FLAGS.lenet_steps
    rng = np.random.default_rng(0)
    n, held = FLAGS.conv2_examples, 600
    images = rng.integers(0, 256, size=(n + 2 * held, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n + 2 * held).astype(np.int64)
    scaled = images[:n].astype(np.float32) / 255.0
    splits = data.Splits(
        name="synthetic_cifar", train_x=images[:n], train_y=labels[:n],
        val_x=images[n:n + held], val_y=labels[n:n + held], test_x=images[n + held:],
        test_y=labels[n + held:], num_classes=10, mean=float(scaled.mean()), std=float(scaled.std()))
    return splits, FLAGS.conv2_steps


def _float_inputs(splits):
    """The training images normalised exactly as tf_lottery's ArraySource does, as float32."""
    return ((splits.train_x.astype(np.float32) / 255.0 - splits.mean) / splits.std).astype(np.float32)


def _build_keras(network, seed=0):
    import tf_lottery as tfl
    if network == "lenet_300_100":
        return tfl.models.build("lenet", (28, 28, 1), 10, seed=seed, hidden=(300, 100))
    return tfl.models.build("conv2", (32, 32, 3), 10, seed=seed)


def _build_tf_keras(network, seed=0):
    """The same architecture as tf_lottery.models (LeNet-300-100 or Conv-2), in tf_keras."""
    import tf_keras
    layers = tf_keras.layers
    seeds = iter(range(seed, seed + 10))

    def init():
        return tf_keras.initializers.GlorotNormal(seed=next(seeds))

    if network == "lenet_300_100":
        inputs = tf_keras.Input(shape=(28, 28, 1), name="image")
        x = layers.Flatten(name="flatten")(inputs)
        hidden = (300, 100)
    else:
        inputs = tf_keras.Input(shape=(32, 32, 3), name="image")
        x = inputs
        for i in (1, 2):
            x = layers.Conv2D(64, 3, padding="same", activation="relu", name=f"conv{i}",
                              kernel_initializer=init())(x)
        x = layers.Flatten(name="flatten")(layers.MaxPooling2D(2, name="pool1")(x))
        hidden = (256, 256)
    for i, width in enumerate(hidden):
        x = layers.Dense(width, activation="relu", name=f"fc{i + 1}", kernel_initializer=init())(x)
    outputs = layers.Dense(10, name="output", kernel_initializer=init())(x)
    return tf_keras.Model(inputs, outputs, name=network)


def _masked(network):
    """The wrapped network with every mask at SPARSITY, as the issue prescribes."""
    import tf_lottery as tfl
    wrapped = tfl.wrap(_build_keras(network))
    masks = tfl.get_masks(wrapped)
    tfl.set_masks(wrapped, tfl.pruning.prune(tfl.effective_weights(wrapped), masks,
                                             {k: SPARSITY for k in masks}))
    return wrapped


# ---------------------------------------------------------------------------------------------
# Variants: each has warm() (one untimed sample) and sample() -> seconds for `steps` steps.


class TrainerVariant:
    """tf_lottery.Trainer; a sample is steps/steps_per_call `train_chunk` calls, as in Trainer.train
    (the whole chunk in one XLA computation where the trainer fuses it, else its step loop)."""

    def __init__(self, model, splits, steps, steps_per_call, jit_compile=None, fused=True):
        import tf_lottery as tfl
        if steps % steps_per_call:
            raise app.UsageError(f"{steps} steps per sample is not a multiple of steps_per_call "
                                 f"{steps_per_call}")
        self.trainer = tfl.Trainer(model, splits, tfl.TrainingConfig(
            train_steps=steps, batch_size=BATCH, eval_every=steps, steps_per_call=steps_per_call,
            jit_compile=jit_compile, learning_rate=LEARNING_RATE, data_seed=0))
        self.trainer.fused = self.trainer.fused and fused
        self.steps_per_call = steps_per_call
        self.calls = steps // steps_per_call
        self.step = 0
        iterator = iter(self.trainer._train_source.batches(BATCH, seed=0))
        self.batches = lambda: iterator

    def warm(self):
        return self.sample()

    def sample(self):
        start = time.perf_counter()
        for _ in range(self.calls):
            loss = self.trainer.train_chunk(self.step, self.steps_per_call, self.batches)  # syncs
            self.step += self.steps_per_call
        if not np.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss}")
        return time.perf_counter() - start


class RawFusedVariant:
    """(d) The floor of the framework: a raw TensorFlow loop of the same masked MLP with 100 whole
    steps (batch indices, gather, normalisation, forward, backward, Adam) in one XLA computation."""

    def __init__(self, masked, splits, steps, steps_per_call=100):
        import keras
        import tensorflow as tf
        import tf_lottery as tfl
        weights, masks = tfl.effective_weights(masked), tfl.get_masks(masked)
        layers = [layer for layer in tfl.model_ops.inner_layers(masked) if layer.weights]
        self.kernels = [tf.Variable(weights[f"{layer.name}/kernel"]) for layer in layers]
        self.biases = [tf.Variable(layer.weights[1].numpy()) for layer in layers]
        self.masks = [tf.constant(masks[f"{layer.name}/kernel"]) for layer in layers]
        self.images = tf.constant(splits.train_x.reshape(len(splits.train_x), -1))
        self.labels = tf.constant(splits.train_y.astype(np.int32))
        self.mean, self.std = splits.mean, splits.std
        self.optimizer = keras.optimizers.Adam(LEARNING_RATE)
        self.params = self.kernels + self.biases
        self.optimizer.build(self.params)
        self.iteration = tf.Variable(0, dtype=tf.int64)
        self.n = tf.constant(steps_per_call)
        self.calls = steps // steps_per_call
        self.chunk = tf.function(self._chunk, jit_compile=True)

    def _chunk(self, steps):
        import tensorflow as tf
        size = int(self.images.shape[0])

        def step(i, total):
            seed = tf.stack([self.iteration + tf.cast(i, tf.int64), tf.constant(0, tf.int64)])
            indices = tf.random.stateless_uniform([BATCH], seed=seed, maxval=size, dtype=tf.int32)
            x = (tf.cast(tf.gather(self.images, indices), tf.float32) / 255.0 - self.mean) / self.std
            y = tf.gather(self.labels, indices)
            with tf.GradientTape() as tape:
                for j, (kernel, bias, mask) in enumerate(zip(self.kernels, self.biases, self.masks)):
                    x = tf.matmul(x, kernel * mask) + bias
                    x = tf.nn.relu(x) if j < len(self.kernels) - 1 else x
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, x))
            self.optimizer.apply_gradients(zip(tape.gradient(loss, self.params), self.params))
            return i + 1, total + loss

        _, total = tf.while_loop(lambda i, _: i < steps, step, (tf.constant(0), tf.constant(0.0)))
        self.iteration.assign_add(tf.cast(steps, tf.int64))
        return total

    def warm(self):
        return self.sample()

    def sample(self):
        start = time.perf_counter()
        for _ in range(self.calls):
            loss = float(self.chunk(self.n))
        if not np.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss}")
        return time.perf_counter() - start


class _EpochTimer:
    """A callback base recording the seconds of the last epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


class FitVariant:
    """Keras 3 (or tf_keras) fit; a sample is one epoch of `steps` steps."""

    def __init__(self, model, x, y, steps, steps_per_execution, jit_compile, inputs="arrays",
                 tf_keras_module=None, extra_callbacks=()):
        import keras
        import tensorflow as tf
        if steps % steps_per_execution:
            raise app.UsageError(f"{steps} steps per sample is not a multiple of steps_per_execution "
                                 f"{steps_per_execution}")
        k = tf_keras_module or keras
        timer_class = type("EpochTimer", (_EpochTimer, k.callbacks.Callback), {})
        self.timer = timer_class()
        self.model = model
        self.steps = steps
        model.compile(optimizer=k.optimizers.Adam(learning_rate=LEARNING_RATE),
                      loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
                      steps_per_execution=steps_per_execution, jit_compile=jit_compile)
        self.callbacks = [self.timer, *extra_callbacks]
        if inputs == "arrays":
            self.fit_args = {"x": x, "y": y, "batch_size": BATCH, "shuffle": True}
        elif inputs == "dataset":
            images, labels = tf.constant(x), tf.constant(y)
            self.fit_args = {"x": tf.data.Dataset.range(len(x)).shuffle(len(x))
                             .batch(BATCH, drop_remainder=True)
                             .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))
                             .repeat().prefetch(tf.data.AUTOTUNE)}
        else:
            raise app.UsageError(f"--keras_inputs takes arrays and dataset, got {inputs!r}")

    def warm(self):
        return self.sample()

    def sample(self):
        history = self.model.fit(**self.fit_args, epochs=1, steps_per_epoch=self.steps, verbose=0,
                                 callbacks=self.callbacks)
        loss = history.history["loss"][-1]
        if not np.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss}")
        return self.timer.seconds


def _tfmot_variant(network, x, y, steps):
    import tensorflow_model_optimization as tfmot
    import tf_keras
    sparsity = tfmot.sparsity.keras
    model = sparsity.prune_low_magnitude(
        _build_tf_keras(network),
        pruning_schedule=sparsity.ConstantSparsity(SPARSITY, begin_step=0, frequency=100))
    return FitVariant(model, x, y, steps, FLAGS.tfmot_steps_per_execution, jit_compile=None,
                      tf_keras_module=tf_keras, extra_callbacks=[sparsity.UpdatePruningStep()])


def _tfmot_sparsity(model):
    """Zero fraction of the pruned kernels of a prune_low_magnitude model (checks that it prunes)."""
    kernels = [w for w in model.weights
               if w.name.endswith("kernel:0") and "mask" not in w.name and "prune" in w.name]
    kernels = kernels or [w for w in model.weights if "kernel" in w.name and "mask" not in w.name]
    zeros = sum(int(np.sum(w.numpy() == 0)) for w in kernels)
    return zeros / max(1, sum(int(np.prod(w.shape)) for w in kernels))


def _variants(network, splits, steps):
    """{label: (method, variant)} in run order: a's, then b's, then c's, then diagnostics."""
    import tf_lottery as tfl
    variants = {}
    masked = _masked(network)
    remaining = tfl.sparsity_report(masked)["remaining_fraction"]
    for spc in map(int, FLAGS.steps_per_call):
        # One Trainer per setting, as a user would configure it; they share the wrapped model.
        variants[f"tf_lottery spc={spc}"] = ("a", TrainerVariant(masked, splits, steps, spc))
    x, y = _float_inputs(splits), splits.train_y
    for inputs in FLAGS.keras_inputs:
        for jit in map(_flag_bool, FLAGS.keras_jit):
            for spe in map(int, FLAGS.steps_per_execution):
                label = f"keras {inputs} jit={'T' if jit else 'F'} spe={spe}"
                variants[label] = ("b", FitVariant(_build_keras(network), x, y, steps, spe, jit, inputs))
    variants[f"tfmot spe={FLAGS.tfmot_steps_per_execution}"] = ("c", _tfmot_variant(network, x, y, steps))
    if network == "lenet_300_100":
        variants["raw fused loop spc=100"] = ("d", RawFusedVariant(masked, splits, steps))
    if FLAGS.diagnostics:
        spc = max(map(int, FLAGS.steps_per_call))
        variants[f"diag: Trainer unmasked spc={spc}"] = (
            "x", TrainerVariant(_build_keras(network), splits, steps, spc))
        a = variants[f"tf_lottery spc={spc}"][1].trainer
        if a.fused:
            variants[f"diag: Trainer step loop (not fused) spc={spc}"] = (
                "x", TrainerVariant(_masked(network), splits, steps, spc, fused=False))
        flipped = not a._jit
        variants[f"diag: Trainer masked jit={'T' if flipped else 'F'} spc={spc}"] = (
            "x", TrainerVariant(_masked(network), splits, steps, spc, jit_compile=flipped))
        for jit in map(_flag_bool, FLAGS.keras_jit):
            spe = max(map(int, FLAGS.steps_per_execution))
            variants[f"diag: keras fit masked jit={'T' if jit else 'F'} spe={spe}"] = (
                "x", FitVariant(_masked(network), x, y, steps, spe, jit))
    return variants, remaining


def bench_network(network):
    import gc
    splits, steps = _load_splits(network)
    print(f"{network}: building {network} variants ({steps} steps per sample, batch {BATCH})",
          flush=True)
    variants, remaining = _variants(network, splits, steps)
    rows = {}
    for label, (method, variant) in variants.items():
        seconds = variant.warm()
        rows[label] = {"method": method, "warmup_seconds": seconds, "samples_seconds": []}
        print(f"  warm-up {label:<40} {seconds:8.2f} s", flush=True)
    for repetition in range(FLAGS.repetitions):
        for label, (method, variant) in variants.items():
            rows[label]["samples_seconds"].append(variant.sample())
        print(f"  repetition {repetition + 1}/{FLAGS.repetitions} done, load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
    for row in rows.values():
        rates = [steps / s for s in row["samples_seconds"]]
        row["samples_steps_per_second"] = rates
        row["median_steps_per_second"] = statistics.median(rates)
        row["median_ms_per_step"] = 1000 / row["median_steps_per_second"]
    best = {}
    for method in METHODS:
        labels = [k for k, r in rows.items() if r["method"] == method]
        if not labels:
            continue
        label = max(labels, key=lambda k: rows[k]["median_steps_per_second"])
        best[method] = {"variant": label, "steps_per_second": rows[label]["median_steps_per_second"],
                        "ms_per_step": rows[label]["median_ms_per_step"]}
    ratios = {f"a_over_{m}": best["a"]["ms_per_step"] / best[m]["ms_per_step"] for m in best if m != "a"}
    c_model = next(v for m, v in variants.values() if m == "c").model
    result = {
        "steps_per_sample": steps, "batch_size": BATCH, "train_examples": int(len(splits.train_x)),
        "tf_lottery_remaining_fraction": remaining, "tfmot_kernel_sparsity": _tfmot_sparsity(c_model),
        "variants": rows, "best": best, "ratios": ratios,
        "targets": {key: {"max": limit, "value": ratios[key], "met": ratios[key] <= limit}
                    for key, limit in TARGETS[network].items()},
    }
    del variants
    gc.collect()
    return result


# ---------------------------------------------------------------------------------------------
# Peak memory of a short IMP run, in a child process


def imp_memory():
    """Peak RSS of the lottery binary running LeNet-300-100 IMP with the random-reinit control."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "binaries.lottery", "--flagfile=configs/lenet300_mnist.cfg",
                   f"--data_dir={FLAGS.data_dir}", f"--rounds={FLAGS.imp_memory_rounds}",
                   f"--train_steps={FLAGS.imp_memory_steps}", "--controls=random_reinit",
                   f"--root_dir={folder}"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=_ROOT)
        seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"memory run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak = _maxrss_mb(resource.RUSAGE_CHILDREN)  # the only child process so far
    return {"command": " ".join(command[1:-1]), "peak_rss_mb": peak, "seconds": seconds,
            "rounds": FLAGS.imp_memory_rounds, "steps_per_round": FLAGS.imp_memory_steps,
            "target_mb": MEMORY_TARGET_MB, "met": peak <= MEMORY_TARGET_MB}


# ---------------------------------------------------------------------------------------------
# Report


def _table(results):
    lines = [f"{'network':<14} {'method':<27} {'variant':<42} {'steps/s':>8} {'ms/step':>8} "
             f"{'samples (steps/s)':>24}"]
    for network, result in results.items():
        for label, row in result["variants"].items():
            method = METHODS.get(row["method"], "diagnostic")
            samples = " ".join(f"{v:.1f}" for v in row["samples_steps_per_second"])
            best = " *" if result["best"].get(row["method"], {}).get("variant") == label else ""
            lines.append(f"{network:<14} {row['method'] + ' ' + method:<27} {label + best:<42} "
                         f"{row['median_steps_per_second']:>8.2f} {row['median_ms_per_step']:>8.2f} "
                         f"{samples:>24}")
    lines += ["", "| network | a ms/step | b ms/step | c ms/step | d ms/step | ratio (target) |",
              "|---|---:|---:|---:|---:|---|"]
    for network, result in results.items():
        best, targets = result["best"], result["targets"]
        cells = [f"{best[m]['ms_per_step']:.3f}" if m in best else "-" for m in METHODS]
        checks = ", ".join(f"{key.replace('_over_', '/')} {t['value']:.3f} (<= {t['max']}: "
                           f"{'met' if t['met'] else 'MISSED'})" for key, t in targets.items())
        lines.append(f"| {network} | {' | '.join(cells)} | {checks} |")
    return "\n".join(lines)


def main(argv):
    del argv
    # Several Trainers and compiled models per network trip TensorFlow's retracing warning.
    logging.set_verbosity(logging.ERROR)
    unknown = sorted(set(FLAGS.networks) - set(NETWORKS))
    if unknown:
        raise app.UsageError(f"--networks: unknown {', '.join(unknown)}; choose from {', '.join(NETWORKS)}")
    load_start = os.getloadavg()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in load_start)} ({os.cpu_count()} CPUs)",
          flush=True)
    memory = imp_memory() if FLAGS.memory else None
    if memory:
        print(f"IMP memory run done: peak RSS {memory['peak_rss_mb']:.0f} MB", flush=True)

    import keras
    import tensorflow as tf
    results = {network: bench_network(network) for network in FLAGS.networks}
    load_end = os.getloadavg()

    import tensorflow_model_optimization as tfmot
    import tf_keras
    print()
    print(_table(results))
    print("(ratios are of time per step between the best variants of each method, marked *)")
    if memory:
        print(f"peak RSS of `{memory['command']}`: {memory['peak_rss_mb']:.0f} MB "
              f"(target <= {MEMORY_TARGET_MB} MB: {'met' if memory['met'] else 'MISSED'})")
    print(f"load average: start {' '.join(f'{v:.2f}' for v in load_start)}, "
          f"end {' '.join(f'{v:.2f}' for v in load_end)}")
    setup = {
        "batch_size": BATCH, "sparsity": SPARSITY, "learning_rate": LEARNING_RATE,
        "repetitions": FLAGS.repetitions, "steps_per_call": FLAGS.steps_per_call,
        "steps_per_execution": FLAGS.steps_per_execution, "keras_jit": FLAGS.keras_jit,
        "keras_inputs": FLAGS.keras_inputs, "tfmot_steps_per_execution": FLAGS.tfmot_steps_per_execution,
        "conv2_examples": FLAGS.conv2_examples, "cpus": os.cpu_count(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "tf_keras": tf_keras.__version__, "tfmot": tfmot.__version__},
        "load_average": {"start": list(load_start), "end": list(load_end)},
    }
    pathlib.Path(FLAGS.output).write_text(json.dumps(
        {"setup": setup, "networks": results, "imp_memory": memory, "targets": TARGETS}, indent=2) + "\n")
    print(f"results: {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
