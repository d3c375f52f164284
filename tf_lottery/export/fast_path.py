"""The fastest CPU inference path TFLite offers a sparse ticket, chosen layer by layer by measurement.

What this stack can run faster because weights are zero (TensorFlow 2.21):

- shrink: units whose weights all died are removed (`shrink.shrink`), the
  network itself gets smaller (sequential Dense/Conv stacks);
- csr: TFLite's own FULLY_CONNECTED kernel reads a CSR-encoded weight matrix
  directly and does work in proportion to the surviving weights. The
  converter never emits that form for unstructured masks (it adds a DENSIFY op,
  and XNNPACK then runs the dense matrix); `tflite_graph.builtin_layers` edits
  the file so that it does, in a way that keeps XNNPACK off those nodes;
- dense-builtin: the same TFLite kernel on the dense matrix, which at small
  batches can beat XNNPACK's;
- XNNPACK's sparse (NCHW) inference of 1x1 convolutions, which it applies to a
  sparse-encoded file whose graph qualifies; XNNPACK disables it on x86 CPUs
  with AVX, where it expects dense to be faster.

`plan` times the model with each Dense layer in turn as csr and as
dense-builtin against the model with every layer on XNNPACK (interleaved, the
thread's CPU time, medians of per-round ratios), takes per layer the fastest that gains at least MARGIN, and returns
that file and the files with every such layer csr or dense-builtin as
candidates. The caller (sparse.fastest) times them against the dense and the
sparse-encoded files as whole models and keeps dense unless another is faster
by MARGIN: a path slower than dense is never chosen.
"""

import dataclasses

import keras
import numpy as np

from tf_lottery import model_ops
from tf_lottery import numerics
from tf_lottery import shrink
from tf_lottery.export import sparse_tflite
from tf_lottery.export import timing
from tf_lottery.export import tflite
from tf_lottery.export import tflite_graph

MARGIN = 0.10  # a path must be this much faster than the one it replaces (noise on a shared machine)
SHRINK_MAX_DIFF = 1e-4  # a shrunk network's outputs against the unshrunk one's (as export --shrink)
ROUNDS = 15


@dataclasses.dataclass
class Plan:
    """Candidate files {label: (bytes, {layer: path})}, the model they were built from (shrunk or not)
    with its masks, per kernel key what was measured and why, and what shrink did."""
    candidates: dict
    model: keras.Model
    masks: dict
    layers: dict
    shrink: dict
    original_masks: dict


def pattern(mask, m=4):
    """'N:M' if every M consecutive weights along the input axis keep at most N < M and most groups
    keep exactly N (an N:M mask, perhaps pruned further), else None."""
    if mask.ndim < 2 or mask.shape[-2] % m:
        return None
    groups = np.moveaxis(mask, -2, -1).reshape(-1, m).sum(-1)
    most = int(groups.max())
    return f"{most}:{m}" if 0 < most < m and np.mean(groups == most) >= 0.5 else None


def _dense_layers(model, masks):
    """{layer name: kernel} of the Dense layers with a masked 2-D kernel whose inputs are 2-D."""
    found = {}
    for layer in model_ops.inner_layers(model):
        key = f"{layer.name}/kernel"
        if type(layer) is keras.layers.Dense and key in masks and _input_rank(layer) == 2:
            found[layer.name] = keras.ops.convert_to_numpy(layer.kernel)
    return found


def _input_rank(layer):
    try:
        return len(layer.input.shape)
    except (AttributeError, ValueError):  # a layer called more than once, or never
        return None


def xnnpack_sparse_note():
    """Why XNNPACK's sparse inference does or may not apply on this CPU."""
    if "avx" in numerics.identity()["isa"]:
        return ("XNNPACK disables its sparse (NCHW) inference on x86 CPUs with AVX, this one included "
                "(it expects dense kernels to be faster there)")
    return ("XNNPACK runs 1x1 convolutions sparse only in an NCHW-compatible graph (a 3x3 stride-2 stem "
            "on 3 channels with padding 1, 1x1 convolutions with at least 2/3 zeros, 3x3 or 5x5 "
            "depthwise convolutions with explicit padding, global average pooling)")


def _shrunk(model, masks):
    """(model to build on, its masks, shrink info): the shrunk network if shrinking removes units."""
    try:
        result = shrink.shrink(model, masks)
    except shrink.ShrinkError as error:
        return model, masks, {"applied": False, "reason": str(error)}
    removed = {name: list(units) for name, units in result.units.items() if units[0] < units[1]}
    if not removed:
        return model, masks, {"applied": False, "reason": "no unit lost all its weights"}
    return result.model, result.masks, {"applied": True, "units": removed,
                                        "parameters": [result.model.count_params(), model.count_params()]}


def _layer_entry(key, layer, mask, base_masks, shrink_info):
    """What a kernel's layer is and, before measuring, the path it takes and why."""
    entry = {"layer": key.rsplit("/", 1)[0], "type": type(layer).__name__,
             "density": float(mask.mean()), "pattern": pattern(mask)}
    units = shrink_info.get("units", {}).get(entry["layer"])
    if units:
        entry["units"] = units
    if key not in base_masks:
        entry.update(path="removed", reason="shrink removed the whole layer")
    elif isinstance(layer, model_ops.CONVOLUTIONS):
        entry.update(path="dense", reason="TFLite has no sparse convolution kernel; " + xnnpack_sparse_note())
    elif type(layer) is keras.layers.Dense:
        entry.update(path="dense", reason="left dense: its inputs have more than two dimensions, or no "
                                          "weight of it is left")
    else:
        entry.update(path="dense", reason="no sparse kernel for this layer type in TFLite")
    if entry["pattern"]:
        entry["reason"] += f"; no {entry['pattern']} kernel on CPU in TFLite or XNNPACK"
    return entry


PATH_TEXT = {"csr": "TFLite's sparse FULLY_CONNECTED kernel on CSR weights",
             "dense-builtin": "TFLite's own dense FULLY_CONNECTED kernel (not XNNPACK's)",
             "dense": "XNNPACK's dense FULLY_CONNECTED kernel"}


def _measured_paths(dense, candidates, batch, rounds):
    """{layer: {path: model us}} with each candidate layer alone as csr and as dense-builtin, and the
    model's time with every layer dense (on XNNPACK), all interleaved in one measurement."""
    variants = {("", "dense"): dense}
    for name, kernel in candidates.items():
        variants[(name, "csr")] = tflite_graph.builtin_layers(dense, {name: (kernel, "csr")})
        variants[(name, "dense-builtin")] = tflite_graph.builtin_layers(dense, {name: (kernel, "dense")})
    interpreters = {key: sparse_tflite.interpreter(content) for key, content in variants.items()}
    x = timing.inputs(interpreters[("", "dense")], batch)
    measured = timing.measure(interpreters, x, rounds=rounds, clock="cpu")
    ratios = timing.ratios(measured, ("", "dense"))
    return {name: {path: (measured[key]["median_us"], ratios[key]) for path, key in
                   (("dense", ("", "dense")), ("csr", (name, "csr")), ("dense-builtin", (name, "dense-builtin")))}
            for name in candidates}


def plan(model, masks, saved_model_of, batch=1, rounds=ROUNDS):
    """Candidate fast files for `model` (stripped or shrunk, with `masks`) at `batch`, one thread.

    `saved_model_of(model)` writes a model as a SavedModel and returns its
    path (the caller's staged folder, so the signature is the export's).
    """
    base, base_masks, shrink_info = _shrunk(model, masks)
    dense = tflite.convert(saved_model_of(base), quantize=False)
    layers = {}
    for key, mask in masks.items():
        name = key.rsplit("/", 1)[0]
        layer = next((l for l in model_ops.inner_layers(model) if l.name == name), None)
        layers[key] = _layer_entry(key, layer, mask, base_masks, shrink_info)
    fc = {name: kernel for name, kernel in _dense_layers(base, base_masks).items() if np.count_nonzero(kernel)}
    candidates = {}
    if shrink_info["applied"]:
        candidates["shrunk"] = (dense, {})
    if not fc:
        return Plan(candidates, base, base_masks, layers, shrink_info, masks)
    measured = _measured_paths(dense, fc, batch, rounds)
    chosen = {}
    for name, times in measured.items():
        entry = layers[f"{name}/kernel"]
        best = min(times, key=lambda path: times[path][1])
        if times[best][1] > 1 - MARGIN:
            best = "dense"
        entry.update(best=best, model_us={path: round(us, 3) for path, (us, _) in times.items()},
                     x_dense={path: round(1 / ratio, 3) for path, (_, ratio) in times.items()})
        entry["measured"] = (f"the model ran {times['csr'][0]:.1f} us with this layer csr, "
                             f"{times['dense-builtin'][0]:.1f} us dense-builtin, {times['dense'][0]:.1f} us dense "
                             f"(XNNPACK), batch {batch}, 1 thread (medians of CPU time; paired ratios "
                             f"{times['csr'][1]:.2f} and {times['dense-builtin'][1]:.2f})")
        if entry["pattern"]:
            entry["measured"] += f"; no {entry['pattern']} kernel on CPU in TFLite or XNNPACK"
        entry["reason"] = f"{PATH_TEXT[best]}: {entry['measured']}"
        if best != "dense":
            chosen[name] = best
    prefix = "shrunk " if shrink_info["applied"] else ""
    forms = {"csr": "csr", "dense-builtin": "dense"}
    if chosen:
        candidates[prefix + "per-layer"] = (tflite_graph.builtin_layers(
            dense, {n: (fc[n], forms[p]) for n, p in chosen.items()}), chosen)
    for path in ("csr", "dense-builtin"):
        candidates[f"{prefix}all {path}"] = (tflite_graph.builtin_layers(
            dense, {n: (k, forms[path]) for n, k in fc.items()}), {n: path for n in fc})
    return Plan(candidates, base, base_masks, layers, shrink_info, masks)
