"""Runs a checked export Job: restore the round, strip (and shrink) it, write and verify each format.

Every file is read back and checked on the experiment's whole test split
(outputs against the round's model, and the zero pattern of every kernel
against its mask) inside a staged folder (`transaction.staged`), so a failed
check leaves nothing behind.
"""

import pathlib
import shutil

import keras
import numpy as np
import tensorflow as tf

from tf_lottery import atomic
from tf_lottery import experiment
from tf_lottery import model_ops
from tf_lottery import results
from tf_lottery import shrink
from tf_lottery.data import structure
from tf_lottery.export import sparse
from tf_lottery.export import tflite
from tf_lottery.export import transaction
from tf_lottery.export.request import REPORT, ExportError
from tf_lottery.settings import ConfigError

MAX_DIFF = 1e-5         # SavedModel and .keras against the round's model (float32)
SHRINK_MAX_DIFF = 1e-4  # a shrunk network against the round's model
TFLITE_MAX_DIFF = 1e-4  # TFLite float against the round's model
INT8_MIN_AGREEMENT = 0.95  # TFLite int8: share of test predictions (argmax) unchanged
BATCH = 500


def restore(job):
    """(wrapped model, masks) of the job's round; ConfigError naming experiment_dir if the folder is damaged."""
    directory = results.round_dir(job.prepared.directory, job.round)
    try:
        model = experiment.restore_round(job.prepared, job.round)
    except ConfigError:
        raise
    except Exception as error:  # a damaged checkpoint fails in many ways (IndexError, DataLossError, ...)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("experiment_dir", f"{directory}: cannot restore the checkpoint ({first})") from None
    mask_path = results.mask_path(directory)
    saved = results.read_masks(mask_path, "experiment_dir")
    masks = model_ops.get_masks(model)
    if set(saved) != set(masks) or any(not np.array_equal(saved[k], masks[k]) for k in masks):
        raise ConfigError("experiment_dir", f"{directory}: the checkpoint's masks differ from "
                                            f"{mask_path.name}; is the folder corrupt?")
    return model, masks


def _batched(function, x):
    """function(batch) over x (one array, or a list or dict of arrays) BATCH examples at a time."""
    count = len(structure.leaves(x)[0])
    return np.concatenate([np.asarray(function(structure.map_arrays(lambda a: a[i:i + BATCH], x)),
                                      dtype=np.float32) for i in range(0, count, BATCH)])


def _named(model, x):
    """x as the exported signatures take it: one array, or {input name: array} for several inputs."""
    if structure.is_single(x):
        return x
    inputs = structure.leaves(structure.model_inputs(model))
    return {tensor.name: array for tensor, array in zip(inputs, structure.leaves(x))}


def _input_shapes(named):
    """The report's input shape: [None, ...], or {input name: [None, ...]} for several inputs."""
    if isinstance(named, dict):
        return {name: [None, *array.shape[1:]] for name, array in named.items()}
    return [None, *named.shape[1:]]


def _keras_outputs(model, x):
    return _batched(lambda batch: model(batch, training=False), x)


def _compare(outputs, reference, labels):
    """Max abs difference to the reference, argmax agreement with it, and test accuracy."""
    predicted = outputs.argmax(-1)
    return {"max_abs_diff": float(np.abs(outputs - reference).max()),
            "argmax_agreement": float(np.mean(predicted == reference.argmax(-1))),
            "test_accuracy": float(np.mean(predicted == labels))}


def _kernel_check(name, kernels, masks, exact_counts=None):
    """{key: nonzeros} of the exported kernels; raises ExportError if one is nonzero outside its mask."""
    counts = {}
    for key, mask in masks.items():
        if key not in kernels:
            raise ExportError(f"{name}: no kernel '{key}' in the exported file")
        kernel = np.asarray(kernels[key])
        if kernel.shape != mask.shape:
            raise ExportError(f"{name}: kernel '{key}' has shape {kernel.shape}, its mask {mask.shape}")
        outside = int(np.count_nonzero(kernel[mask == 0]))
        if outside:
            raise ExportError(f"{name}: kernel '{key}' has {outside} nonzero weights where its mask is 0")
        counts[key] = int(np.count_nonzero(kernel))
        if exact_counts is not None and counts[key] != exact_counts[key]:
            raise ExportError(f"{name}: kernel '{key}' has {counts[key]} nonzero weights, "
                              f"the exported model {exact_counts[key]}")
    return counts


def _size(path):
    path = pathlib.Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write_saved_model(model, path):
    model.export(str(path), format="tf_saved_model", verbose=False)


def _check_saved_model(path, x, masks, counts):
    loaded = tf.saved_model.load(str(path))
    if "serve" not in loaded.signatures:
        raise ExportError(f"{path}: no 'serve' signature")
    serve = loaded.signatures["serve"]
    specs = serve.structured_input_signature[1]
    (output_name,) = serve.structured_outputs
    named = x if isinstance(x, dict) else {next(iter(specs)): x}
    if len(specs) != 1 and set(specs) != set(named):
        raise ExportError(f"saved_model: the 'serve' signature takes {', '.join(sorted(specs))}, the model "
                          f"{', '.join(sorted(named))}")
    outputs = _batched(lambda b: serve(**{k: tf.constant(v) for k, v in b.items()})[output_name], named)
    kernels = {}
    for variable in loaded.variables:
        name = variable.name.rsplit(":", 1)[0]
        for key in masks:
            if name == key or name.endswith(f"/{key}"):  # nested models prefix their name
                kernels[key] = variable.numpy()
    signature = {"name": "serve", "inputs": {k: spec.shape.as_list() for k, spec in specs.items()},
                 "outputs": {output_name: serve.structured_outputs[output_name].shape.as_list()}}
    return outputs, _kernel_check("saved_model", kernels, masks, counts), signature


def _check_keras(path, x, masks, counts):
    loaded = keras.saving.load_model(str(path), compile=False)
    return _keras_outputs(loaded, x), _kernel_check("keras", _kernels(loaded, masks), masks, counts)


def _kernels(model, masks):
    """{key: numpy kernel} of a plain Keras model, for each 'layer/attribute' key of `masks`."""
    layers = {}
    stack = [model]
    while stack:
        for layer in stack.pop().layers:
            layers.setdefault(layer.name, layer)
            if isinstance(layer, keras.Model):
                stack.append(layer)
    kernels = {}
    for key in masks:
        name, attr = key.rsplit("/", 1)
        if name in layers and getattr(layers[name], attr, None) is not None:
            kernels[key] = keras.ops.convert_to_numpy(getattr(layers[name], attr))
    return kernels


def _layers(model, masks, original=None, units=None):
    """Per kernel: shape, size, mask ones, nonzeros and sparsity of the model to export; and totals."""
    layers = {}
    kernels = _kernels(model, masks)
    for key, mask in masks.items():
        name = key.rsplit("/", 1)[0]
        kernel = kernels[key]
        nonzeros = int(np.count_nonzero(kernel))
        layers[key] = {"shape": list(kernel.shape), "size": int(kernel.size), "mask_ones": int(mask.sum()),
                       "nonzeros": nonzeros, "sparsity": 1 - nonzeros / kernel.size}
        if original is not None:
            layers[key]["original_shape"] = list(original[key].shape)
            layers[key]["units"] = list(units.get(name, (kernel.shape[-1],) * 2))
    size = sum(v["size"] for v in layers.values())
    nonzeros = sum(v["nonzeros"] for v in layers.values())
    overall = {"size": size, "mask_ones": sum(v["mask_ones"] for v in layers.values()),
               "nonzeros": nonzeros, "sparsity": 1 - nonzeros / size, "parameters": model.count_params()}
    if original is not None:
        overall["original_size"] = int(sum(m.size for m in original.values()))
        overall["original_mask_ones"] = int(sum(m.sum() for m in original.values()))
    return layers, overall


def _gate(name, result, limit):
    result["max_abs_diff_limit"] = limit
    if result["max_abs_diff"] > limit:
        raise ExportError(f"{name}: outputs differ from the round's model by {result['max_abs_diff']:.3g} "
                          f"(limit {limit:g})")


def _write_tflite(saved_model, folder, masks, x, labels, reference, extra):
    """Writes and checks the float and int8 TFLite files; returns {name: result}."""
    formats = {}
    for name, quantize in (("tflite_float", False), ("tflite_int8", True)):
        path = folder / f"model_{name.split('_')[1]}.tflite"
        path.write_bytes(tflite.convert(saved_model, quantize))
        interpreter = tflite.interpreter(path)
        result = {"path": path.name, "bytes": _size(path),
                  **_compare(tflite.outputs(interpreter, x, BATCH), reference, labels),
                  "nonzeros": tflite.kernel_nonzeros(interpreter, masks)}
        formats[name] = result
        if quantize:
            result["argmax_agreement_limit"] = INT8_MIN_AGREEMENT
            if result["argmax_agreement"] < INT8_MIN_AGREEMENT:
                raise ExportError(f"{name}: only {result['argmax_agreement']:.1%} of test predictions "
                                  f"match the round's model (limit {INT8_MIN_AGREEMENT:.0%})")
        else:
            _gate(name, result, TFLITE_MAX_DIFF + extra)
    return formats


def _write_formats(job, model, masks, counts, x, named, labels, reference, folder, extra):
    """Writes and checks each format in `folder` (Keras on x, the signatures on `named`); returns
    {format: result} and the signature."""
    formats, signature = {}, None
    saved_model = folder / "saved_model"
    if "saved_model" in job.formats or "tflite" in job.formats:
        _write_saved_model(model, saved_model)
        outputs, nonzeros, signature = _check_saved_model(saved_model, named, masks, counts)
        if "saved_model" in job.formats:
            formats["saved_model"] = {"path": "saved_model", "bytes": _size(saved_model),
                                      **_compare(outputs, reference, labels), "nonzeros": nonzeros}
            _gate("saved_model", formats["saved_model"], MAX_DIFF + extra)
    if "keras" in job.formats:
        path = folder / "model.keras"
        model.save(str(path))
        outputs, nonzeros = _check_keras(path, x, masks, counts)
        formats["keras"] = {"path": path.name, "bytes": _size(path),
                            **_compare(outputs, reference, labels), "nonzeros": nonzeros}
        _gate("keras", formats["keras"], MAX_DIFF + extra)
    if "tflite" in job.formats:
        formats.update(_write_tflite(saved_model, folder, masks, named, labels, reference, extra))
        if "saved_model" not in job.formats:
            shutil.rmtree(saved_model)
    return formats, signature


def _shrunk(model, masks, x, reference):
    try:
        result = shrink.shrink(model, masks)
    except shrink.ShrinkError as error:
        raise ConfigError("shrink", str(error)) from None
    diff = float(np.abs(_keras_outputs(result.model, x) - reference).max())
    if diff > SHRINK_MAX_DIFF:
        raise ExportError(f"shrink: the smaller network's outputs differ by {diff:.3g} "
                          f"(limit {SHRINK_MAX_DIFF:g})")
    info = {"units": {k: list(v) for k, v in result.units.items()}, "folded_units": result.folded,
            "merged_units": result.merged, "parameters_before": model.count_params(),
            "parameters_after": result.model.count_params(), "max_abs_diff": diff,
            "max_abs_diff_limit": SHRINK_MAX_DIFF}
    return result, info


def run(job):
    """Restores the round, strips (and shrinks) it, writes and checks each format; returns the report."""
    wrapped, masks = restore(job)
    splits = job.prepared.splits
    x, labels = splits.test_arrays()
    reference = _keras_outputs(wrapped, x)
    model = model_ops.strip(wrapped)
    named = _named(model, x)
    report = {
        "source": str(job.prepared.directory.resolve()), "round": job.round,
        "selection": job.selection, "remaining_fraction": job.record["remaining_fraction"],
        "early_stop_test_accuracy": job.record["early_stop_test_accuracy"],
        "final_test_accuracy": job.record["final_test_accuracy"],
        "model": job.prepared.model_name, "dataset": job.prepared.dataset_name,
        "input": {"shape": _input_shapes(named), "dtype": "float32", **job.prepared.input_scaling},
        "test_examples": int(len(labels)),
        "reference_test_accuracy": float(np.mean(reference.argmax(-1) == labels)),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    extra = 0.0
    original = masks
    if job.shrink:
        result, report["shrink"] = _shrunk(model, masks, x, reference)
        model, masks, extra = result.model, result.masks, SHRINK_MAX_DIFF
        report["layers"], report["overall"] = _layers(model, masks, original, result.units)
    else:
        report["shrink"] = None
        report["layers"], report["overall"] = _layers(model, masks)
    counts = {k: v["nonzeros"] for k, v in report["layers"].items()}
    with transaction.staged(job.export_dir, job.overwrite) as folder:
        report["formats"], report["signature"] = _write_formats(
            job, model, masks, counts, x, named, labels, reference, folder, extra)
        if job.sparse:
            check = sparse.Check(x, labels, reference, TFLITE_MAX_DIFF)
            formats, report["sparse"] = sparse.write(folder, model, masks, model_ops.strip(wrapped), original,
                                                     check, splits, job.sparse_batch, extra)
            report["formats"].update(formats)
        atomic.write_json(folder / REPORT, report)
        transaction.share(folder / REPORT)
    return report
