"""Sparse tickets on CPU through TFLite: file sizes, latency and accuracy of what `export --sparse` writes.

Run by hand, not a test (about 20 minutes on 2 shared cores):

  python benchmarks/sparse_inference.py [--output=benchmarks/results/sparse_inference.json]

Cases: LeNet-300-100 tickets at 51.3%, 21.1%, 6.95% and 3.58% of the weights (rounds 3, 7, 12 and
15 of seed 0 of the packed 5-seed MNIST study), Conv-2 at 51.4% (round 3 of the packed CIFAR-10
run), and Keras' MobileNetV2 (96x96x3, 10 classes) with its 1x1 convolutions and classifier pruned
by magnitude to 25% (unstructured) and to 2:4 along the input channels (50%). The packs hold masks
only, so each ticket is theta_0 (rebuilt from the experiment's seed) with the round's mask, trained
here briefly with Keras fit (--lenet_steps, --conv2_steps); MobileNetV2 is not trained (random
batch-norm statistics) and is scored by agreement with its stripped model on random inputs.

Per case, files converted by tf_lottery.export (the functions `export --sparse` uses): the dense
float32 TFLite file (the baseline: dense kernels with zeros in them), the sparse-encoded one
(EXPERIMENTAL_SPARSITY), full-integer int8 dense and sparse-encoded, float16 sparse-encoded, the
compressed ticket (float32 and int8 survivors), and model_fast.tflite as export picks it (at batch
1, one thread). Latency: batch 1 and 64, one and two threads; the files of a case run interleaved in
one measurement (rounds rotate the order), medians of --rounds samples, each speed-up the median
of per-round ratios against the dense file of the same measurement. The machine is shared with
other work: one thread is timed by the CPU time of the thread TFLite runs in (waiting for a core
does not count), two threads by the wall clock; the load average is recorded.
"""

import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import pack_results  # noqa: E402
from tf_lottery import experiment, model_ops, numerics, results  # noqa: E402
from tf_lottery.export import compressed, fast_path, sparse, sparse_tflite, timing, tflite, tflite_graph  # noqa: E402

flags.DEFINE_string("output", str(pathlib.Path(tempfile.gettempdir()) / "sparse_inference.json"),
                    "Where to write the results as JSON.")
flags.DEFINE_list("cases", ["lenet", "conv2", "mobilenet"], "Which groups of cases to run.")
flags.DEFINE_integer("rounds", 15, "Interleaved timing rounds per (batch, threads).")
flags.DEFINE_float("sample_seconds", 0.02, "Length of one timing sample.")
flags.DEFINE_integer("lenet_steps", 3000, "Training steps (batch 60) of each LeNet ticket.")
flags.DEFINE_integer("conv2_steps", 600, "Training steps (batch 60) of the Conv-2 ticket.")
flags.DEFINE_integer("conv2_train_examples", 20000, "Training examples of Conv-2 (memory).")
FLAGS = flags.FLAGS

DATA = REPO / "docs" / "results" / "data"
LENET = ("lenet300_mnist_15rounds/imp_lenet_mnist_init_1d176bfd", (3, 7, 12, 15))
CONV2 = ("conv2_cifar10_jpeg_4000it/seed_0", (3,))
VARIANTS = ("dense", "sparse", "int8", "int8_sparse", "fast", "fast64")
BATCHES, THREADS = (1, 64), (1, 2)


@dataclasses.dataclass
class Case:
    """A stripped ticket, its masks and the inputs it is scored and calibrated on."""
    name: str
    model: keras.Model
    masks: dict
    x: np.ndarray
    labels: np.ndarray  # None: score by agreement with the stripped model only
    calibration: np.ndarray
    source: str


def _train_inputs(splits, count=None):
    train = dataclasses.replace(splits, test_x=splits.train_x[:count], test_y=splits.train_y[:count])
    return train.test_arrays()


def _trained_ticket(pack, round_index, steps, train_examples, folder):
    """Case of a packed experiment's round: theta_0 with the round's masks, trained `steps` steps."""
    unpacked = folder / pack.replace("/", "__")
    if not unpacked.exists():
        pack_results.unpack(DATA / pack, unpacked)
    prepared = experiment.load_experiment(unpacked)
    wrapped = experiment.initial_model(prepared)
    masks = results.round_masks(unpacked, round_index)
    model_ops.set_masks(wrapped, masks)
    model_ops.reset(wrapped)
    x_train, y_train = _train_inputs(prepared.splits, train_examples)
    config = prepared.config.training
    wrapped.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batch = config.batch_size
    epochs = max(1, round(steps * batch / len(x_train)))
    wrapped.fit(x_train, y_train, batch_size=batch, epochs=epochs, verbose=0,
                steps_per_epoch=min(steps, len(x_train) // batch) if epochs == 1 else None)
    x, labels = prepared.splits.test_arrays()
    record = results.read_record(results.round_dir(unpacked, round_index))
    name = f"{prepared.model_name} {100 * record['remaining_fraction']:.2f}%"
    return Case(name, model_ops.strip(wrapped), masks, x, labels, x_train[:sparse.CALIBRATION_EXAMPLES],
                f"{pack} round {round_index}, {epochs} epoch(s) of Keras fit from theta_0")


def _mobilenet(kind, rng):
    """Keras' MobileNetV2 (96x96x3, 10 classes, random weights and batch-norm statistics) with its 1x1
    convolutions and classifier pruned by magnitude: 'unstructured' to 25%, '2:4' along inputs."""
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, classes=10)
    masks = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.normal(1, 0.1, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
        pointwise = type(layer) is keras.layers.Conv2D and layer.kernel.shape[:2] == (1, 1)
        if pointwise or type(layer) is keras.layers.Dense:
            kernel = layer.kernel.numpy()
            if kind == "unstructured":
                mask = np.abs(kernel) >= np.quantile(np.abs(kernel), 0.75)
            else:
                groups = np.abs(np.moveaxis(kernel, -2, -1)).reshape(-1, 4)
                keep = np.zeros_like(groups, bool)
                np.put_along_axis(keep, np.argsort(-groups, axis=1)[:, :2], True, axis=1)
                mask = np.moveaxis(keep.reshape(np.moveaxis(kernel, -2, -1).shape), -1, -2)
            masks[f"{layer.name}/kernel"] = mask.astype(np.float32)
            layer.kernel.assign(kernel * mask)
    x = rng.normal(size=(256, 96, 96, 3)).astype(np.float32)
    density = sum(m.sum() for m in masks.values()) / sum(m.size for m in masks.values())
    return Case(f"MobileNetV2 {kind} {100 * density:.0f}%", model, masks, x, None, x[:100],
                "keras.applications.MobileNetV2, untrained, pruned here")


def _files(case, work):
    """{variant: .tflite bytes} and the fast path's summary, plus the other stored forms' sizes."""
    counter = iter(range(1 << 20))

    def saved_model_of(network):
        path = work / f"sm_{next(counter)}"
        network.export(str(path), format="tf_saved_model", verbose=False)
        return path

    source = saved_model_of(case.model)
    files = {"dense": tflite.convert(source, quantize=False),
             "sparse": sparse_tflite.convert(source, "float32", sparse=True),
             "int8": sparse_tflite.convert(source, "int8", sparse=False, calibration=case.calibration),
             "int8_sparse": sparse_tflite.convert(source, "int8", sparse=True, calibration=case.calibration),
             "float16_sparse": sparse_tflite.convert(source, "float16", sparse=True)}
    summary = {}
    for name, batch in (("fast", 1), ("fast64", 64)):
        _, files[name], summary[name], _ = sparse.fastest(case.model, case.masks, files["dense"], files["sparse"],
                                                          saved_model_of, batch=batch)
    stored = {}
    for precision in ("float32", "int8"):
        sizes = compressed.save_ticket(case.model, work / f"ticket_{precision}.npz", masks=case.masks,
                                       precision=precision)
        stored[f"ticket_{precision}"] = sizes["bytes"]
    return files, stored, summary


def _scores(case, files):
    """Per file: accuracy (or agreement), max difference to the stripped ticket, pruned weights zero."""
    reference = np.concatenate([np.asarray(case.model(case.x[i:i + 256], training=False))
                                for i in range(0, len(case.x), 256)])
    scores = {"stripped": {"accuracy": None if case.labels is None else
                           float(np.mean(reference.argmax(-1) == case.labels))}}
    for name, content in files.items():
        interpreter = sparse_tflite.interpreter(content)
        outputs = tflite.outputs(interpreter, case.x, 256)
        kernels = {} if name.startswith("fast") else sparse_tflite.check_kernels(name, interpreter, case.masks)
        scores[name] = {"max_abs_diff": float(np.abs(outputs - reference).max()),
                        "agreement": float(np.mean(outputs.argmax(-1) == reference.argmax(-1))),
                        "accuracy": None if case.labels is None else
                        float(np.mean(outputs.argmax(-1) == case.labels)),
                        "pruned_weights_zero": all(k["pruned_weights_zero"] for k in kernels.values())}
    return scores


def _latency(files):
    """{batch: {threads: {variant: median us, x_dense}}} with every variant of a case in one measurement;
    x_dense is the median over rounds of dense's time / the variant's time in the same round. One
    thread is timed by the thread's CPU time, two threads by the wall clock (timing.py)."""
    table = {}
    for batch in BATCHES:
        for threads in THREADS:
            interpreters = {v: sparse_tflite.interpreter(files[v], threads=threads) for v in VARIANTS}
            x = timing.inputs(interpreters["dense"], batch)
            clock = "cpu" if threads == 1 else "wall"
            measured = timing.measure(interpreters, x, rounds=FLAGS.rounds, sample_seconds=FLAGS.sample_seconds,
                                      clock=clock)
            ratios = timing.ratios(measured, "dense")
            table.setdefault(str(batch), {})[str(threads)] = {
                v: {"clock": clock, "median_us": m["median_us"], "min_us": m["min_us"], "x_dense": 1 / ratios[v],
                    "wall_median_us": m["wall_median_us"], "cpu_median_us": m["cpu_median_us"]}
                for v, m in measured.items()}
    return table


def _pointwise_kernels(case):
    """A few of MobileNetV2's 1x1 convolutions at batch 1: the dense CONV_2D against the same
    product as TFLite's CSR FULLY_CONNECTED over the pixels, one thread (what 'csr' would give)."""
    notes = {}
    for name in ("block_1_expand", "block_6_project", "Conv_1"):
        layer = case.model.get_layer(name)
        height, width, channels = layer.input.shape[1:]
        kernel = layer.kernel.numpy()
        conv = keras.Sequential([keras.Input((height, width, channels)),
                                 keras.layers.Conv2D(kernel.shape[-1], 1, use_bias=False)])
        conv.layers[-1].kernel.assign(kernel)
        dense = keras.Sequential([keras.Input((channels,)), keras.layers.Dense(kernel.shape[-1])])
        dense.layers[-1].kernel.assign(kernel[0, 0])
        with tempfile.TemporaryDirectory() as folder:
            conv.export(f"{folder}/c", format="tf_saved_model", verbose=False)
            dense.export(f"{folder}/d", format="tf_saved_model", verbose=False)
            conv_file = tflite.convert(f"{folder}/c", quantize=False)
            csr_file = tflite_graph.builtin_layers(tflite.convert(f"{folder}/d", quantize=False),
                                                   {dense.layers[-1].name: (kernel[0, 0], "csr")})
        pixels = timing.inputs(sparse_tflite.interpreter(csr_file), height * width)
        image = timing.inputs(sparse_tflite.interpreter(conv_file), 1)
        conv_us = timing.measure({"c": sparse_tflite.interpreter(conv_file)}, image, rounds=FLAGS.rounds)["c"]
        csr_us = timing.measure({"s": sparse_tflite.interpreter(csr_file)}, pixels, rounds=FLAGS.rounds)["s"]
        notes[name] = {"input": [height, width, channels], "outputs": int(kernel.shape[-1]),
                       "density": float(case.masks[f"{name}/kernel"].mean()),
                       "dense_conv_us": conv_us["median_us"], "csr_fully_connected_us": csr_us["median_us"]}
    return notes


def _tf_sparse(case, dense_file):
    """An MLP ticket in TensorFlow itself: dense matmuls against tf.sparse.sparse_dense_matmul (the
    SavedModel path the issue names), beside the dense TFLite file; CPU time of the whole process
    (TensorFlow's own threads included), medians of interleaved rounds, batch 1 and 64."""
    layers = [(tf.constant(layer.kernel.numpy()), tf.constant(layer.bias.numpy()),
               tf.sparse.from_dense(layer.kernel.numpy().T), layer.get_config()["activation"] == "relu")
              for layer in case.model.layers if isinstance(layer, keras.layers.Dense)]
    flat = keras.layers.Flatten()

    @tf.function
    def dense(x):
        x = flat(x)
        for kernel, bias, _, relu in layers:
            x = x @ kernel + bias
            x = tf.nn.relu(x) if relu else x
        return x

    @tf.function
    def sparse_matmul(x):
        x = flat(x)
        for _, bias, kernel, relu in layers:
            x = tf.transpose(tf.sparse.sparse_dense_matmul(kernel, x, adjoint_b=True)) + bias
            x = tf.nn.relu(x) if relu else x
        return x

    found = {}
    for batch in BATCHES:
        x = tf.constant(case.x[:batch])
        lite = timing.ready(sparse_tflite.interpreter(dense_file), case.x[:batch])
        calls = {"tflite dense": lite.invoke, "tf dense": lambda: dense(x), "tf.sparse": lambda: sparse_matmul(x)}
        samples = {name: [] for name in calls}
        for _ in range(FLAGS.rounds):
            for name, call in calls.items():
                start, count = time.process_time(), 200 if batch == 1 else 20
                for _ in range(count):
                    call()
                samples[name].append((time.process_time() - start) / count * 1e6)
        found[str(batch)] = {name: float(np.median(values)) for name, values in samples.items()}
    return found


def run_case(case, work):
    started = time.time()
    files, stored, summary = _files(case, work)
    sizes = {name: len(content) for name, content in files.items()}
    sizes.update(stored)
    dense_bytes = sizes["dense"]
    result = {"source": case.source, "density": float(sum(m.sum() for m in case.masks.values())
                                                        / sum(m.size for m in case.masks.values())),
              "bytes": sizes, "x_smaller": {k: dense_bytes / v for k, v in sizes.items()},
              "scores": _scores(case, files), "latency_us": _latency(files),
              "fast_path": {name: {k: summary[name][k] for k in ("chosen", "why", "speedup_vs_dense", "latency_us",
                                                                 "shrink", "layers")} for name in summary}}
    if case.name.startswith("MobileNetV2"):
        result["pointwise_kernels"] = _pointwise_kernels(case)
    if case.name.startswith("lenet"):
        result["tensorflow_cpu_us"] = _tf_sparse(case, files["dense"])
    result["seconds"] = time.time() - started
    return result


def _targets(results):
    """The issue's targets against the measured values."""
    found = {}
    low = next((r for name, r in results.items() if name.startswith("lenet 3.58")), None)
    if low:
        stored = low["x_smaller"]
        found["size: ticket >= 15x smaller than dense float32 at 3.6%"] = (stored["ticket_float32"], 15)
        found["size: int8 ticket >= 40x smaller at 3.6%"] = (stored["ticket_int8"], 40)
        found["latency: model_fast.tflite (float32, exact) >= 2x faster than dense at 3.6%, batch 1, 1 thread"] = (
            low["latency_us"]["1"]["1"]["fast"]["x_dense"], 2)
        found["latency: model_sparse_int8.tflite >= 2x faster than dense at 3.6%, batch 1, 1 thread"] = (
            low["latency_us"]["1"]["1"]["int8_sparse"]["x_dense"], 2)
    mid = next((r for name, r in results.items() if name.startswith("lenet 21.")), None)
    if mid:
        found["latency: model_fast.tflite no slower than dense at 21%, batch 1, 1 thread"] = (
            mid["latency_us"]["1"]["1"]["fast"]["x_dense"], 1)
    worst = {"float": 0.0, "int8": 0.0}
    for r in results.values():
        base = r["scores"]["stripped"]["accuracy"]
        if base is None:
            continue
        for variant in ("sparse", "float16_sparse", "fast", "fast64"):
            worst["float"] = max(worst["float"], 100 * (base - r["scores"][variant]["accuracy"]))
        for variant in ("int8", "int8_sparse"):
            worst["int8"] = max(worst["int8"], 100 * (base - r["scores"][variant]["accuracy"]))
    found["accuracy: largest drop of a float sparse file, points (<= 0.1)"] = (worst["float"], 0.1)
    found["accuracy: largest drop of an int8 file, points (<= 0.3)"] = (worst["int8"], 0.3)
    return {name: {"measured": value, "target": target,
                   "met": value <= target if name.startswith("accuracy") else value >= target}
            for name, (value, target) in found.items()}


def _table(results):
    lines = [f"{'case':<26} {'file':<15} {'KiB':>8} {'x smaller':>9} {'acc/agree':>9} "
             f"{'b1 t1 us':>9} {'x':>5} {'b1 t2':>7} {'b64 t1 us':>10} {'x':>5} {'b64 t2':>8}"]
    for name, r in results.items():
        for variant in VARIANTS + ("float16_sparse", "ticket_float32", "ticket_int8"):
            score = r["scores"].get(variant, {})
            quality = score.get("accuracy") if score.get("accuracy") is not None else score.get("agreement")
            cells = [f"{name:<26} {variant:<15} {r['bytes'][variant] / 1024:>8.1f} {r['x_smaller'][variant]:>9.1f} "
                     + (f"{quality:>9.4f}" if quality is not None else f"{'':>9}")]
            if variant in VARIANTS:
                lat = r["latency_us"]
                cells.append(f" {lat['1']['1'][variant]['median_us']:>9.1f} {lat['1']['1'][variant]['x_dense']:>5.2f}"
                             f" {lat['1']['2'][variant]['x_dense']:>7.2f} {lat['64']['1'][variant]['median_us']:>10.1f}"
                             f" {lat['64']['1'][variant]['x_dense']:>5.2f} {lat['64']['2'][variant]['x_dense']:>8.2f}")
            lines.append("".join(cells))
        for name, fast in r["fast_path"].items():
            lines.append(f"{'':<26} {name}: {fast['chosen']} ({fast['why']})")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel writes log at INFO
    load_before = os.getloadavg()
    results = {}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        cases = []
        if "lenet" in FLAGS.cases:
            cases += [lambda r=r: _trained_ticket(LENET[0], r, FLAGS.lenet_steps, None, folder) for r in LENET[1]]
        if "conv2" in FLAGS.cases:
            cases += [lambda: _trained_ticket(CONV2[0], CONV2[1][0], FLAGS.conv2_steps,
                                              FLAGS.conv2_train_examples, folder)]
        if "mobilenet" in FLAGS.cases:
            cases += [lambda kind=kind: _mobilenet(kind, rng) for kind in ("unstructured", "2:4")]
        for make in cases:
            case = make()
            work = folder / f"work_{len(results)}"
            work.mkdir()
            results[case.name] = run_case(case, work)
            print(f"{case.name}: done in {results[case.name]['seconds']:.0f} s", flush=True)
    targets = _targets(results)
    print(_table(results))
    for name, target in targets.items():
        print(f"{name}: {'met' if target['met'] else 'NOT met'} ({target['measured']:.2f}, target {target['target']})")
    setup = {"note": "2 CPU cores shared with other work: each case's files are timed interleaved in one "
                     "measurement (the order rotates every round), speed-ups are medians of per-round "
                     "ratios against dense; one thread is timed by the thread's CPU time, two threads by "
                     "the wall clock; the load average is the machine's, other jobs included",
             "load_average_before": load_before, "load_average_after": os.getloadavg(),
             "rounds": FLAGS.rounds, "sample_seconds": FLAGS.sample_seconds, "batches": BATCHES,
             "threads": THREADS, "fast_path_margin": fast_path.MARGIN, "numerics": numerics.identity(),
             "tensorflow": tf.__version__, "keras": keras.__version__,
             "xnnpack_sparse": fast_path.xnnpack_sparse_note(),
             "flags": {"lenet_steps": FLAGS.lenet_steps, "conv2_steps": FLAGS.conv2_steps,
                       "conv2_train_examples": FLAGS.conv2_train_examples}}
    pathlib.Path(FLAGS.output).write_text(json.dumps({"setup": setup, "results": results, "targets": targets},
                                                     indent=1) + "\n")
    print(f"results: {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
