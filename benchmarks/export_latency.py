"""CPU inference latency and SavedModel size: dense network, stripped ticket, shrunk ticket.

Run by hand, not a test (about a minute on 2 cores):

  python benchmarks/export_latency.py [--repetitions=50] [--output=latency.json]
  python benchmarks/export_latency.py --experiment_dir=DIR --round=3

The second form times a trained experiment instead: its round 0 (the dense
network, trained), and round R stripped and shrunk, on the experiment's own
test images, and also gives each SavedModel's test accuracy on the whole
test split.

LeNet-300-100 (MNIST shape) with 80% of its hidden neurons pruned and Conv-2
(CIFAR shape) with 80% of its hidden filters and neurons pruned, masks made by
tf_lottery.pruning.prune on freshly built models (latency does not need
training). Each network is exported as a SavedModel and timed through its
'serve' signature at batch 1 and 64; the three networks of a case run
interleaved (a b c a b c ...) and the medians are reported. The issue's
target: the shrunk Conv-2 runs batch-64 inference at least 3x faster than
the dense one, and its SavedModel is at least 4x smaller.
"""

import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery import experiment, model_ops, pruning, shrink  # noqa: E402

flags.DEFINE_integer("repetitions", 50, "Timed rounds per batch size (each times every network once).")
flags.DEFINE_string("output", str(pathlib.Path(tempfile.gettempdir()) / "export_latency.json"),
                    "Where to write the results as JSON.")
flags.DEFINE_string("experiment_dir", None, "A finished experiment to time instead of the built-in cases.")
flags.DEFINE_integer("round", None, "The round of --experiment_dir whose ticket is stripped and shrunk.")
FLAGS = flags.FLAGS

CASES = (
    ("lenet_300_100", "lenet", (28, 28, 1), 10, {"hidden": (300, 100)}, "neuron"),
    ("conv2", "conv2", (32, 32, 3), 10, {}, "filter"),
)
BATCHES = (1, 64)
SPARSITY = 0.8
# Calls per timed sample, so that one sample lasts well above the timer's resolution.
CALLS = {1: 20, 64: 2}


def _networks(builder, input_shape, classes, options, structure):
    """{'dense', 'stripped', 'shrunk'}: Keras models of one case, masks at SPARSITY on hidden layers."""
    dense = tfl.models.build(builder, input_shape, classes, seed=0, **options)
    wrapped = tfl.wrap(dense)
    output = model_ops.output_key(wrapped)
    masks = model_ops.get_masks(wrapped)
    fractions = {k: SPARSITY for k in masks if k != output}
    new = pruning.prune(model_ops.effective_weights(wrapped), masks, fractions, structure=structure)
    model_ops.set_masks(wrapped, {k: np.asarray(v) for k, v in new.items()})
    stripped = model_ops.strip(wrapped)
    return {"dense": dense, "stripped": stripped, "shrunk": shrink.shrink(stripped).model}


def _serve(model, folder):
    """The model exported as a SavedModel in `folder`, loaded back: (serve function, input name, bytes)."""
    model.export(str(folder), format="tf_saved_model", verbose=False)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    serve = tf.saved_model.load(str(folder)).signatures["serve"]
    (name,) = serve.structured_input_signature[1]
    return serve, name, size


def _outputs(serve, name, x):
    return next(iter(serve(**{name: x}).values())).numpy()


def _time(serve, name, x, calls):
    start = time.perf_counter()
    for _ in range(calls):
        serve(**{name: x})
    return (time.perf_counter() - start) / calls


def _experiment_networks(directory, round_index):
    """({'dense', 'stripped', 'shrunk'}, test images, test labels) of a trained experiment."""
    prepared = experiment.load_experiment(directory)
    dense = model_ops.strip(experiment.restore_round(prepared, 0))
    stripped = model_ops.strip(experiment.restore_round(prepared, round_index))
    x, labels = prepared.splits.test_arrays()
    return {"dense": dense, "stripped": stripped, "shrunk": shrink.shrink(stripped).model}, x, labels


def _accuracy(serve, name, x, labels, batch=500):
    predicted = np.concatenate([_outputs(serve, name, tf.constant(x[i:i + batch])).argmax(-1)
                                for i in range(0, len(x), batch)])
    return float(np.mean(predicted == labels))


def bench_case(label, models, x, repetitions, folder, test=None):
    """Rows of latency and size per network; `test` = (images, labels) adds each SavedModel's accuracy."""
    x = tf.constant(x[:64])
    served, rows = {}, {}
    for kind, model in models.items():
        served[kind] = _serve(model, folder / f"{label}_{kind}")
        rows[kind] = {"parameters": model.count_params(), "saved_model_bytes": served[kind][2]}
        if test is not None:
            rows[kind]["test_accuracy"] = _accuracy(*served[kind][:2], *test)
    stripped, shrunk = (_outputs(*served[kind][:2], x) for kind in ("stripped", "shrunk"))
    rows["shrunk"]["max_abs_diff_to_stripped"] = float(np.abs(shrunk - stripped).max())
    for batch in BATCHES:
        inputs = x[:batch]
        samples = {kind: [] for kind in models}
        for kind in models:  # warm-up
            _time(*served[kind][:2], inputs, CALLS[batch])
        for _ in range(repetitions):
            for kind in models:
                samples[kind].append(_time(*served[kind][:2], inputs, CALLS[batch]))
        for kind in models:
            rows[kind][f"batch{batch}_ms"] = 1000 * statistics.median(samples[kind])
    for kind in models:
        for key in ("batch1_ms", "batch64_ms"):
            rows[kind][f"{key[:-3]}_speedup"] = rows["dense"][key] / rows[kind][key]
        rows[kind]["size_ratio"] = rows["dense"]["saved_model_bytes"] / rows[kind]["saved_model_bytes"]
    return rows


def _table(results):
    lines = [f"{'network':<16} {'model':<9} {'parameters':>11} {'SavedModel':>12} {'batch 1 ms':>11} "
             f"{'batch 64 ms':>12} {'x64 speedup':>12} {'x smaller':>10} {'test acc':>9}"]
    for label, rows in results.items():
        for kind, row in rows.items():
            accuracy = f"{row['test_accuracy']:>9.4f}" if "test_accuracy" in row else f"{'':>9}"
            lines.append(f"{label:<16} {kind:<9} {row['parameters']:>11,} {row['saved_model_bytes']:>12,} "
                         f"{row['batch1_ms']:>11.3f} {row['batch64_ms']:>12.3f} "
                         f"{row['batch64_speedup']:>12.2f} {row['size_ratio']:>10.2f} {accuracy}")
    return "\n".join(lines)


def main(argv):
    del argv
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        if FLAGS.experiment_dir:
            if FLAGS.round is None:
                raise app.UsageError("--round is required with --experiment_dir")
            models, x, labels = _experiment_networks(FLAGS.experiment_dir, FLAGS.round)
            label = f"round {FLAGS.round}"
            results[label] = bench_case(label, models, x, FLAGS.repetitions, pathlib.Path(folder),
                                        test=(x, labels))
        else:
            rng = np.random.default_rng(0)
            for label, builder, shape, classes, options, structure in CASES:
                x = rng.normal(size=(64, *shape)).astype(np.float32)
                results[label] = bench_case(label, _networks(builder, shape, classes, options, structure),
                                            x, FLAGS.repetitions, pathlib.Path(folder))
    print(_table(results))
    for label, rows in results.items():
        print(f"{label}: shrunk outputs differ from the stripped ticket's by at most "
              f"{rows['shrunk']['max_abs_diff_to_stripped']:.2e}")
    target = None
    if not FLAGS.experiment_dir:
        conv = results["conv2"]["shrunk"]
        target = {"batch64_speedup": conv["batch64_speedup"], "size_ratio": conv["size_ratio"],
                  "met": conv["batch64_speedup"] >= 3 and conv["size_ratio"] >= 4}
        print(f"target (shrunk Conv-2: >= 3x faster at batch 64, >= 4x smaller): "
              f"{'met' if target['met'] else 'NOT met'} ({conv['batch64_speedup']:.1f}x, "
              f"{conv['size_ratio']:.1f}x)")
    info = {"sparsity": None if FLAGS.experiment_dir else SPARSITY,
            "experiment_dir": FLAGS.experiment_dir, "round": FLAGS.round, "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                              "cpus": os.cpu_count()},
            "repetitions": FLAGS.repetitions, "calls_per_sample": CALLS, "tensorflow": tf.__version__}
    pathlib.Path(FLAGS.output).write_text(json.dumps({"setup": info, "results": results, "target": target},
                                                     indent=2) + "\n")
    print(f"results: {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
