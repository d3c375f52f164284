"""Tables for tools/pages.py made from a benchmark's JSON (benchmarks/results/), not from packs.

  sparse_sizes      benchmarks/sparse_inference.py: per ticket, the size of each stored form
                    against the dense float32 TFLite file, and each file's test accuracy
  sparse_latency    the same run's latency: the dense file's median, and every other file's
                    speed-up against it paired round by round, batch 1 and 64, one thread (CPU
                    time of the thread) and two (wall clock)
  sparse_paths      the path model_fast.tflite takes, per case and layer, as export picks it
  sparse_tensorflow LeNet tickets in TensorFlow (dense and tf.sparse matmuls) beside TFLite
  sparse_targets    the issue's targets against the measured values

Each takes (sources, packs) like the other tables and ignores both.
"""

import json
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
SPARSE = REPO / "benchmarks" / "results" / "sparse_inference.json"
FILES = (("sparse", "sparse-encoded"), ("float16_sparse", "float16 sparse"), ("int8", "int8"),
         ("int8_sparse", "int8 sparse"), ("ticket_float32", "ticket.npz"), ("ticket_int8", "ticket_int8.npz"))
TIMED = (("sparse", "sparse-encoded"), ("int8", "int8"), ("int8_sparse", "int8 sparse"),
         ("fast", "fast (batch 1)"), ("fast64", "fast (batch 64)"))


def _sparse():
    return json.loads(SPARSE.read_text())


def _quality(score):
    if score.get("accuracy") is not None:
        return f"{100 * score['accuracy']:.2f}"
    return f"{100 * score['agreement']:.1f}*" if "agreement" in score else "-"


def sparse_sizes(sources, packs):
    """Sizes (KiB, and how many times smaller than the dense float32 TFLite file) and accuracies."""
    del sources, packs
    lines = ["| ticket | weights left | dense TFLite, KiB | " + " | ".join(f"{label}, x smaller" for _, label in FILES)
             + " | accuracy %: stripped / dense / sparse / float16 / int8 / int8 sparse / fast |",
             "|---|---:|---:|" + "---:|" * len(FILES) + "---|"]
    for name, case in _sparse()["results"].items():
        scores = case["scores"]
        stripped = scores["stripped"].get("accuracy")
        quality = [f"{100 * stripped:.2f}" if stripped is not None else "-"] + [
            _quality(scores[v]) for v in ("dense", "sparse", "float16_sparse", "int8", "int8_sparse", "fast")]
        lines.append(f"| {name} | {100 * case['density']:.2f}% | {case['bytes']['dense'] / 1024:,.0f} | "
                     + " | ".join(f"{case['x_smaller'][key]:.1f}" for key, _ in FILES)
                     + " | " + " / ".join(quality) + " |")
    return "\n".join(lines)


def sparse_latency(sources, packs):
    """Per case, batch and threads: the dense file's median time and each file's speed-up."""
    del sources, packs
    lines = ["| ticket | batch | threads | clock | dense, us | "
             + " | ".join(f"{label}, x dense" for _, label in TIMED) + " |",
             "|---|---:|---:|---|---:|" + "---:|" * len(TIMED)]
    for name, case in _sparse()["results"].items():
        for batch, by_threads in case["latency_us"].items():
            for threads, row in by_threads.items():
                lines.append(f"| {name} | {batch} | {threads} | {row['dense']['clock']} | "
                             f"{row['dense']['median_us']:,.1f} | "
                             + " | ".join(f"{row[key]['x_dense']:.2f}" for key, _ in TIMED) + " |")
    return "\n".join(lines)


def sparse_paths(sources, packs):
    """Per case: the file model_fast.tflite is at batch 1 and 64, and the path of each layer at batch 1."""
    del sources, packs
    lines = ["| ticket | fast file, batch 1 | fast file, batch 64 | layers at batch 1 (path, density) |",
             "|---|---|---|---|"]
    for name, case in _sparse()["results"].items():
        fast, fast64 = case["fast_path"]["fast"], case["fast_path"]["fast64"]
        paths = {}
        for key, layer in fast["layers"].items():
            paths.setdefault(layer["path"], []).append(f"{layer['layer']} {100 * layer['density']:.0f}%")
        summary = "; ".join(f"{path}: {', '.join(items) if len(items) <= 4 else f'{len(items)} layers'}"
                            for path, items in paths.items())
        lines.append(f"| {name} | {fast['chosen']} ({fast['speedup_vs_dense']:.2f}x) | "
                     f"{fast64['chosen']} ({fast64['speedup_vs_dense']:.2f}x) | {summary} |")
    return "\n".join(lines)


def sparse_tensorflow(sources, packs):
    """LeNet tickets in TensorFlow itself (dense matmuls, tf.sparse) beside the dense TFLite file: CPU
    time per inference of the whole process."""
    del sources, packs
    lines = ["| ticket | batch | TFLite dense, us | TensorFlow dense, us | TensorFlow tf.sparse, us |",
             "|---|---:|---:|---:|---:|"]
    for name, case in _sparse()["results"].items():
        for batch, row in case.get("tensorflow_cpu_us", {}).items():
            lines.append(f"| {name} | {batch} | {row['tflite dense']:,.1f} | {row['tf dense']:,.1f} | "
                         f"{row['tf.sparse']:,.1f} |")
    return "\n".join(lines)


def sparse_targets(sources, packs):
    """The issue's targets, what was measured, and whether it was met."""
    del sources, packs
    lines = ["| target | measured | met |", "|---|---:|---|"]
    for name, target in _sparse()["targets"].items():
        lines.append(f"| {name} | {target['measured']:.2f} | {'yes' if target['met'] else '**no**'} |")
    return "\n".join(lines)


TABLES = {"sparse_sizes": sparse_sizes, "sparse_latency": sparse_latency, "sparse_paths": sparse_paths,
          "sparse_tensorflow": sparse_tensorflow, "sparse_targets": sparse_targets}
