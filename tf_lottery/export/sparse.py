"""`--sparse`: files whose size or speed gains from the pruned weights, each verified like every export.

Written beside the other formats:

  model_sparse.tflite          float32 weights sparse-encoded (TFLite's converter, EXPERIMENTAL_SPARSITY)
  model_sparse_float16.tflite  the same with float16 weights
  model_sparse_int8.tflite     full-integer int8 (weights and activations; float inputs and outputs),
                               weights sparse-encoded; calibrated on training inputs
  ticket.npz                   the compressed ticket: masks as bits or gaps, surviving float32
                               values, the architecture; restores the exact ticket (tfl.load_ticket)
  ticket_int8.npz              the same with int8 survivors (one scale per output channel)
  model_fast.tflite            the fastest CPU path measured here (fast_path): dense, sparse-encoded,
                               or shrunk with CSR layers, never slower than dense

Checks: model_sparse.tflite and model_fast.tflite within the float TFLite
tolerance of the round's model (model_fast.tflite with and without XNNPACK);
float16 and int8 files within FLOAT16_MAX_DROP and INT8_MAX_DROP percentage
points of its test accuracy; every TFLite file holds exact zeros wherever a
mask prunes (int8: zero points 0); ticket.npz rebuilds bit-identical weights
and masks. The report's "sparse" section gives sizes against the dense float32
TFLite file and, per layer, the path the fast file takes and why.
"""

import dataclasses
import shutil

import numpy as np

from tf_lottery.export import compressed
from tf_lottery.export import fast_path
from tf_lottery.export import sparse_tflite
from tf_lottery.export import timing
from tf_lottery.export import tflite
from tf_lottery.export.request import ExportError
from tf_lottery.settings import ConfigError

FLOAT16_MAX_DROP = 0.1  # percentage points of test accuracy below the round's model
INT8_MAX_DROP = 0.3
CALIBRATION_EXAMPLES = 200
TFLITE_FILES = (("tflite_sparse", "model_sparse.tflite", "float32"),
                ("tflite_sparse_float16", "model_sparse_float16.tflite", "float16"),
                ("tflite_sparse_int8", "model_sparse_int8.tflite", "int8"))
TICKETS = (("ticket", "ticket.npz", "float32"), ("ticket_int8", "ticket_int8.npz", "int8"))
BATCH = 500


@dataclasses.dataclass
class Check:
    """What every file is checked against: test inputs and labels, the round's outputs, the limits."""
    x: np.ndarray
    labels: np.ndarray
    reference: np.ndarray
    max_diff: float  # float32 files against the reference

    @property
    def accuracy(self):
        return float(np.mean(self.reference.argmax(-1) == self.labels))

    def compare(self, name, outputs, limit=None, drop_points=None):
        """The result of one file's outputs; ExportError if they pass `limit` or drop more accuracy."""
        predicted = outputs.argmax(-1)
        result = {"max_abs_diff": float(np.abs(outputs - self.reference).max()),
                  "argmax_agreement": float(np.mean(predicted == self.reference.argmax(-1))),
                  "test_accuracy": float(np.mean(predicted == self.labels))}
        result["accuracy_drop_points"] = 100 * (self.accuracy - result["test_accuracy"])
        if limit is not None:
            result["max_abs_diff_limit"] = limit
            if result["max_abs_diff"] > limit:
                raise ExportError(f"{name}: outputs differ from the round's model by "
                                  f"{result['max_abs_diff']:.3g} (limit {limit:g})")
        if drop_points is not None:
            result["accuracy_drop_limit_points"] = drop_points
            if result["accuracy_drop_points"] > drop_points + 1e-9:
                raise ExportError(f"{name}: test accuracy {result['test_accuracy']:.4f} is "
                                  f"{result['accuracy_drop_points']:.2f} points below the round's model's "
                                  f"{self.accuracy:.4f} (limit {drop_points:g})")
        return result


def calibration_inputs(splits, count=CALIBRATION_EXAMPLES):
    """(inputs, source): the first `count` training inputs prepared as in training, or the test
    inputs for splits that hold no training arrays."""
    if hasattr(splits, "train_x") and hasattr(splits, "test_arrays") and len(splits.train_x):
        train = dataclasses.replace(splits, test_x=splits.train_x[:count], test_y=splits.train_y[:count])
        return train.test_arrays()[0], f"the first {min(count, len(splits.train_x))} training examples"
    return splits.test_arrays(count)[0], f"the first {count} test examples (no training arrays)"


def _tflite_result(name, path, check, masks, limit=None, drop=None, delegates=True):
    interpreter = sparse_tflite.interpreter(path, delegates=delegates)
    outputs = tflite.outputs(interpreter, check.x, BATCH)
    return {"path": path.name, "bytes": path.stat().st_size, **check.compare(name, outputs, limit, drop),
            "kernels": sparse_tflite.check_kernels(name, interpreter, masks)}


def _tickets(folder, ticket_model, ticket_masks, check, dense_bytes):
    formats = {}
    for name, filename, precision in TICKETS:
        path = folder / filename
        sizes = compressed.save_ticket(ticket_model, path, masks=ticket_masks, precision=precision)
        restored = compressed.load_ticket(path)
        outputs = np.concatenate([np.asarray(restored(check.x[i:i + BATCH], training=False), np.float32)
                                  for i in range(0, len(check.x), BATCH)])
        result = {"path": filename, **sizes, "x_smaller_than_dense_tflite": dense_bytes / sizes["bytes"]}
        if precision == "float32":
            same = all(np.array_equal(np.asarray(a), np.asarray(b))
                       for a, b in zip(restored.weights, ticket_model.weights))
            masks = compressed.read_ticket(path).masks
            if not same or set(masks) != set(ticket_masks) or any(
                    not np.array_equal(masks[k], ticket_masks[k]) for k in masks):
                raise ExportError(f"{filename}: the restored ticket's weights or masks differ from the ticket")
            result["bit_identical"] = True
            result.update(check.compare(name, outputs, check.max_diff))
        else:
            result.update(check.compare(name, outputs, drop_points=INT8_MAX_DROP))
        formats[name] = result
    return formats


def _whole_model(candidates, batch):
    """({name: median us}, {name: paired ratio to dense}) of whole .tflite files at `batch`, one
    thread, interleaved."""
    interpreters = {name: sparse_tflite.interpreter(content) for name, content in candidates.items()}
    x = timing.inputs(interpreters["dense"], batch)
    measured = timing.measure(interpreters, x, rounds=fast_path.ROUNDS, clock="cpu")
    return {name: result["median_us"] for name, result in measured.items()}, timing.ratios(measured, "dense")


def _choose(plan, candidates, batch):
    """(chosen name, its bytes, the timing summary) of the dense, sparse-encoded and plan files; sets
    every layer's path to the one it takes in the chosen file. A file is chosen over dense only if,
    round by round, it took at most 1 - MARGIN of dense's time (the median of the paired ratios)."""
    times, ratios = _whole_model({name: content for name, (content, _) in candidates.items()}, batch)
    dense_us = times["dense"]
    faster = {name: ratio for name, ratio in ratios.items() if name != "dense" and ratio <= 1 - fast_path.MARGIN}
    chosen = min(faster, key=faster.get) if faster else "dense"
    summary = {"chosen": chosen, "batch": batch, "threads": 1, "clock": "cpu", "latency_us": times,
               "x_dense": {name: 1 / ratio for name, ratio in ratios.items()},
               "speedup_vs_dense": 1 / ratios[chosen], "margin": fast_path.MARGIN}
    measured = ", ".join(f"{k} {v:.1f} us" for k, v in times.items())
    summary["why"] = (f"{chosen} ran {times[chosen]:.1f} us against dense {dense_us:.1f} us at batch {batch}, "
                      f"1 thread, {1 / ratios[chosen]:.2f}x round by round ({measured})" if faster else
                      f"no file beat the dense one by {fast_path.MARGIN:.0%} round by round at batch {batch} "
                      f"({measured})")
    paths = candidates[chosen][1]
    forms = (sparse_tflite.kernel_forms(sparse_tflite.interpreter(candidates[chosen][0]), plan.original_masks)
             if chosen == "sparse_encoded" else {})
    for key, entry in plan.layers.items():
        name = entry["layer"]
        if key in forms:
            entry.update(path="sparse-encoded", reason=f"the converter's sparse encoding ({forms[key]}); "
                                                       f"the sparse-encoded file ran fastest")
        elif name in paths:
            entry.update(path=paths[name], reason=f"{fast_path.PATH_TEXT[paths[name]]}: {entry['measured']}")
        elif "measured" in entry:
            entry.update(path="dense", reason=f"{fast_path.PATH_TEXT['dense']}: {entry['measured']}"
                         + ("" if entry["best"] == "dense" else
                            f"; alone {entry['best']} was faster, but the whole file was not"))
    return chosen, candidates[chosen][0], summary


def fastest(model, masks, dense, sparse_encoded, saved_model_of, batch):
    """(chosen name, its .tflite bytes, summary with the path of every layer and why, the Plan): the
    fastest of the dense file, the sparse-encoded one and fast_path's candidates at `batch`, one thread."""
    plan = fast_path.plan(model, masks, saved_model_of, batch=batch)
    candidates = {"dense": (dense, {}), "sparse_encoded": (sparse_encoded, {}), **plan.candidates}
    chosen, content, summary = _choose(plan, candidates, batch)
    summary.update(shrink=plan.shrink, layers=plan.layers)
    return chosen, content, summary, plan


def write(folder, model, masks, ticket_model, ticket_masks, check, splits, batch, extra):
    """Writes and checks the sparse files in `folder`; returns ({format: result}, sparse report)."""
    if not isinstance(check.x, np.ndarray):
        raise ConfigError("sparse", "takes models of one input")
    work = folder / ".sparse_work"
    work.mkdir()
    counter = iter(range(1 << 30))

    def saved_model_of(network):
        path = work / f"saved_model_{next(counter)}"
        network.export(str(path), format="tf_saved_model", verbose=False)
        return path

    source = saved_model_of(model)
    dense = tflite.convert(source, quantize=False)
    calibration, calibration_source = calibration_inputs(splits)
    formats = {}
    for name, filename, weights in TFLITE_FILES:
        path = folder / filename
        path.write_bytes(sparse_tflite.convert(source, weights, sparse=True, calibration=calibration))
        limit = check.max_diff + extra if weights == "float32" else None
        drop = {"float16": FLOAT16_MAX_DROP, "int8": INT8_MAX_DROP}.get(weights)
        formats[name] = _tflite_result(name, path, check, masks, limit, drop)
    formats.update(_tickets(folder, ticket_model, ticket_masks, check, len(dense)))
    chosen, content, summary, plan = fastest(model, masks, dense, (folder / "model_sparse.tflite").read_bytes(),
                                             saved_model_of, batch)
    path = folder / "model_fast.tflite"
    path.write_bytes(content)
    rebuilt = chosen not in ("dense", "sparse_encoded")
    fast_masks = plan.masks if rebuilt else masks
    fast_limit = check.max_diff + extra + (fast_path.SHRINK_MAX_DIFF if rebuilt and plan.shrink["applied"] else 0)
    formats["tflite_fast"] = _tflite_result("tflite_fast", path, check, fast_masks, fast_limit)
    without = _tflite_result("tflite_fast (no XNNPACK)", path, check, fast_masks, fast_limit, delegates=False)
    formats["tflite_fast"]["max_abs_diff_without_xnnpack"] = without["max_abs_diff"]
    for name, result in formats.items():
        result.setdefault("x_smaller_than_dense_tflite", len(dense) / result["bytes"])
    shutil.rmtree(work)
    report = {"dense_tflite_bytes": len(dense), "calibration": calibration_source, "fast_path": summary}
    return formats, report
