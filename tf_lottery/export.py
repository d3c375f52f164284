"""Export a round's pruned network as SavedModel, .keras and TFLite, each reloaded and verified.

`export(experiment_dir, export_dir, round="best")` writes into export_dir:

  saved_model/          tf.saved_model, 'serve' signature (input named after the model's
                        input layer, output 'output_0'); loads with plain TensorFlow
  model.keras           the same network as a Keras 3 file (standard layers only)
  model_float.tflite    TFLite, float32
  model_int8.tflite     TFLite with dynamic-range int8 weights (tf.lite.Optimize.DEFAULT)
  export_report.json    source round, sparsity per kernel, and per format: difference to
                        the round's model, test accuracy, file size

The network has no wrapper, mask or snapshot: kernels are weight * mask
(`model_ops.strip`), optionally shrunk (`shrink.shrink`). Every file is read
back and checked on the experiment's whole test split (outputs, and the zero
pattern of every kernel against its mask) before the folder appears: it is
written beside export_dir and renamed into place, or removed on failure.

`prepare` does the checks that need no TensorFlow (flags, folders, round);
`run` does the work.
"""

import dataclasses
import os
import pathlib
import shutil
import tempfile
import warnings

import numpy as np

from tf_lottery import atomic
from tf_lottery import experiment
from tf_lottery import results
from tf_lottery.config import ConfigError

FORMATS = ("saved_model", "keras", "tflite")
MAX_DIFF = 1e-5         # SavedModel and .keras against the round's model (float32)
SHRINK_MAX_DIFF = 1e-4  # a shrunk network against the round's model
TFLITE_MAX_DIFF = 1e-4  # TFLite float against the round's model
INT8_MIN_AGREEMENT = 0.95  # TFLite int8: share of test predictions (argmax) unchanged
REPORT = "export_report.json"
_BATCH = 500


class ExportError(RuntimeError):
    """An exported file failed its check; nothing was left in the export folder."""


@dataclasses.dataclass(frozen=True)
class Job:
    """A checked export request: the experiment, the chosen round and where the files go."""
    prepared: experiment.Prepared
    round: int
    record: dict
    selection: dict
    export_dir: pathlib.Path
    formats: tuple
    shrink: bool
    overwrite: bool


def _parse_round(value):
    if isinstance(value, str) and value.strip().lower() == "best":
        return "best"
    try:
        index = int(str(value).strip())
    except ValueError:
        index = -1
    if isinstance(value, bool) or index < 0:
        raise ConfigError("round", f"must be a round number or 'best', got {value!r}")
    return index


def select_round(records, round="best", tolerance=0.5):
    """(round index, selection details) from summary.json's round records.

    'best' is the sparsest finished round whose early-stop test accuracy is
    within `tolerance` percentage points of round 0's; ties go to the higher
    accuracy, then the earlier round. Failed rounds are never chosen.
    """
    requested = _parse_round(round)
    if tolerance < 0:
        raise ConfigError("tolerance", f"must be >= 0 percentage points, got {tolerance}")
    finished = {r["round"]: r for r in records if not r.get("failed")}
    if requested != "best":
        return requested, {"requested": requested}
    if 0 not in finished:
        raise ConfigError("round", "'best' compares with round 0, which has not finished (or failed)")
    baseline = finished[0]["early_stop_test_accuracy"]
    threshold = baseline - tolerance / 100
    good = [r for r in finished.values() if r["early_stop_test_accuracy"] >= threshold - 1e-12]
    best = min(good, key=lambda r: (r["remaining_fraction"], -r["early_stop_test_accuracy"], r["round"]))
    return best["round"], {"requested": "best", "tolerance_points": tolerance,
                           "round0_early_stop_test_accuracy": baseline,
                           "threshold": threshold, "eligible_rounds": sorted(r["round"] for r in good)}


def _check_export_dir(export_dir, experiment_dir, overwrite):
    if not export_dir:
        raise ConfigError("export_dir", "is required")
    out = pathlib.Path(export_dir).resolve()
    source = pathlib.Path(experiment_dir).resolve()
    if out == source or out in source.parents:
        raise ConfigError("export_dir", f"{out} holds the experiment folder {source}; choose another")
    if out.exists() and not out.is_dir():
        raise ConfigError("export_dir", f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError("export_dir", f"{out} exists and is not empty; pass --overwrite to replace it")
    return out


def prepare(experiment_dir, export_dir, round="best", formats=FORMATS, shrink=False, overwrite=False,
            tolerance=0.5, data_dir=None):
    """Checks everything that can be checked without TensorFlow; returns a Job. Writes nothing."""
    if isinstance(formats, str):
        formats = formats.split(",")
    formats = tuple(dict.fromkeys(f.strip() for f in formats if f.strip()))
    if not formats or any(f not in FORMATS for f in formats):
        raise ConfigError("format", f"must be names from {', '.join(FORMATS)}, got {','.join(formats)!r}")
    requested = _parse_round(round)
    if tolerance < 0:
        raise ConfigError("tolerance", f"must be >= 0 percentage points, got {tolerance}")
    if not experiment_dir:
        raise ConfigError("experiment_dir", "is required")
    out = _check_export_dir(export_dir, experiment_dir, overwrite)
    prepared = experiment.load_experiment(experiment_dir, data_dir=data_dir)
    records = results.read_summary(prepared.directory)["rounds"]
    index, selection = select_round(records, requested, tolerance)
    metrics = results.round_dir(prepared.directory, index) / "metrics.json"
    if not metrics.is_file():
        done = sorted(r["round"] for r in records if not r.get("failed"))
        raise ConfigError("round", f"{metrics.parent} is not a finished round "
                                   f"(finished: {', '.join(map(str, done)) or 'none'})")
    record = atomic.read_json(metrics)
    if record.get("failed"):
        raise ConfigError("round", f"round {index} failed ({record.get('error')}); choose another")
    return Job(prepared, index, record, selection, out, formats, bool(shrink), bool(overwrite))


def export(experiment_dir, export_dir, round="best", formats=FORMATS, shrink=False, overwrite=False,
           tolerance=0.5, data_dir=None):
    """Exports and verifies one round of an experiment folder; returns the report dict.

    Raises ConfigError or DataError for bad input, ExportError when an exported
    file fails its check; in both cases export_dir is left as it was.
    """
    return run(prepare(experiment_dir, export_dir, round=round, formats=formats, shrink=shrink,
                       overwrite=overwrite, tolerance=tolerance, data_dir=data_dir))


# TensorFlow is imported in the functions below, once the cheap checks have passed.

def _restore(job):
    from tf_lottery import model_ops
    directory = results.round_dir(job.prepared.directory, job.round)
    try:
        model = experiment.restore_round(job.prepared, job.round)
    except ConfigError:
        raise
    except Exception as error:  # a damaged checkpoint fails in many ways (IndexError, DataLossError, ...)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("experiment_dir", f"{directory}: cannot restore the checkpoint ({first})") from None
    try:
        saved = experiment.read_mask_file(directory / "mask.npz")
    except ConfigError as error:
        raise ConfigError("experiment_dir", error.message) from None
    masks = model_ops.get_masks(model)
    if set(saved) != set(masks) or any(not np.array_equal(saved[k], masks[k]) for k in masks):
        raise ConfigError("experiment_dir",
                          f"{directory}: the checkpoint's masks differ from mask.npz; is the folder corrupt?")
    return model, masks


def _batched(function, x):
    return np.concatenate([np.asarray(function(x[i:i + _BATCH]), dtype=np.float32)
                           for i in range(0, len(x), _BATCH)])


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
    import tensorflow as tf
    loaded = tf.saved_model.load(str(path))
    if "serve" not in loaded.signatures:
        raise ExportError(f"{path}: no 'serve' signature")
    serve = loaded.signatures["serve"]
    (input_name,) = serve.structured_input_signature[1]
    (output_name,) = serve.structured_outputs
    outputs = _batched(lambda b: serve(**{input_name: tf.constant(b)})[output_name], x)
    kernels = {}
    for variable in loaded.variables:
        name = variable.name.rsplit(":", 1)[0]
        for key in masks:
            if name == key or name.endswith(f"/{key}"):  # nested models prefix their name
                kernels[key] = variable.numpy()
    spec_in, spec_out = serve.structured_input_signature[1][input_name], serve.structured_outputs[output_name]
    signature = {"name": "serve", "inputs": {input_name: spec_in.shape.as_list()},
                 "outputs": {output_name: spec_out.shape.as_list()}}
    return outputs, _kernel_check("saved_model", kernels, masks, counts), signature


def _check_keras(path, x, masks, counts):
    import keras
    loaded = keras.saving.load_model(str(path), compile=False)
    return _keras_outputs(loaded, x), _kernel_check("keras", _kernels(loaded, masks), masks, counts)


def _convert_tflite(saved_model, quantize):
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serve"])
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _interpreter(path):
    import tensorflow as tf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about LiteRT
        return tf.lite.Interpreter(model_path=str(path))


def _tflite_outputs(interpreter, x):
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs, size = [], None
    for i in range(0, len(x), _BATCH):
        batch = x[i:i + _BATCH]
        if len(batch) != size:
            interpreter.resize_tensor_input(inp["index"], [len(batch), *x.shape[1:]])
            interpreter.allocate_tensors()
            size = len(batch)
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"]).astype(np.float32))
    return np.concatenate(outputs)


def _tflite_kernels(interpreter, masks):
    """{key: nonzeros} of the TFLite constants that hold each kernel (output axis first), if found.

    The converter names tensors after ops, not variables, and may fold batch
    norm into conv kernels, so a kernel is recognised by its shape; it must
    be zero wherever its mask is (int8 may round more weights to zero).
    """
    constants = []
    for detail in interpreter.get_tensor_details():
        try:
            constants.append(interpreter.get_tensor(detail["index"]))
        except ValueError:  # activations have no data
            continue
    counts = {}
    for key, mask in masks.items():
        moved = np.moveaxis(mask, -1, 0)
        candidates = [c for c in constants if c.shape == moved.shape]
        inside = [c for c in candidates if not np.count_nonzero(c[moved == 0])]
        if candidates and not inside:
            raise ExportError(f"tflite: kernel '{key}' has nonzero weights where its mask is 0")
        counts[key] = max(int(np.count_nonzero(c)) for c in inside) if inside else None
    return counts


def _kernels(model, masks):
    """{key: numpy kernel} of a plain Keras model, for each 'layer/attribute' key of `masks`."""
    import keras
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


def _write_formats(job, model, masks, counts, x, labels, reference, folder, extra):
    """Writes and checks each format in `folder`; returns {format: result} and the signature."""
    formats, signature = {}, None
    saved_model = folder / "saved_model"
    if "saved_model" in job.formats or "tflite" in job.formats:
        _write_saved_model(model, saved_model)
        outputs, nonzeros, signature = _check_saved_model(saved_model, x, masks, counts)
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
        for name, quantize in (("tflite_float", False), ("tflite_int8", True)):
            path = folder / f"model_{name.split('_')[1]}.tflite"
            path.write_bytes(_convert_tflite(saved_model, quantize))
            interpreter = _interpreter(path)
            result = {"path": path.name, "bytes": _size(path),
                      **_compare(_tflite_outputs(interpreter, x), reference, labels),
                      "nonzeros": _tflite_kernels(interpreter, masks)}
            formats[name] = result
            if quantize:
                result["argmax_agreement_limit"] = INT8_MIN_AGREEMENT
                if result["argmax_agreement"] < INT8_MIN_AGREEMENT:
                    raise ExportError(f"{name}: only {result['argmax_agreement']:.1%} of test predictions "
                                      f"match the round's model (limit {INT8_MIN_AGREEMENT:.0%})")
            else:
                _gate(name, result, TFLITE_MAX_DIFF + extra)
        if "saved_model" not in job.formats:
            shutil.rmtree(saved_model)
    return formats, signature


def _shrunk(model, masks, x, reference):
    from tf_lottery import shrink
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


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parents(folder):
    created = []
    for parent in reversed([folder, *folder.parents]):
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    return created


def _move_into_place(tmp, out, overwrite):
    if out.exists():
        if any(out.iterdir()) and not overwrite:
            raise ConfigError("export_dir", f"{out} exists and is not empty; pass --overwrite to replace it")
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def run(job):
    """Restores the round, strips (and shrinks) it, writes and checks each format; returns the report."""
    import keras
    import tensorflow as tf
    from tf_lottery import model_ops
    wrapped, masks = _restore(job)
    splits = job.prepared.splits
    x, labels = splits.test_arrays()
    reference = _keras_outputs(wrapped, x)
    model = model_ops.strip(wrapped)
    report = {
        "source": str(job.prepared.directory.resolve()), "round": job.round,
        "selection": job.selection, "remaining_fraction": job.record["remaining_fraction"],
        "early_stop_test_accuracy": job.record["early_stop_test_accuracy"],
        "final_test_accuracy": job.record["final_test_accuracy"],
        "model": job.prepared.config.model, "dataset": job.prepared.config.dataset,
        "input": {"shape": [None, *splits.input_shape], "dtype": "float32",
                  "normalization": splits.normalization["formula"],
                  "mean": splits.normalization["mean"], "std": splits.normalization["std"]},
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
    out = job.export_dir
    created = _make_parents(out.parent)
    for pattern in (f".{out.name}.*.tmp", f".{out.name}.*.old"):  # left by a killed export
        for stale in out.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = _umask()
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp and atomic writes are private to the owner
        report["formats"], report["signature"] = _write_formats(
            job, model, masks, counts, x, labels, reference, tmp, extra)
        atomic.write_json(tmp / REPORT, report)
        os.chmod(tmp / REPORT, 0o666 & ~umask)
        _move_into_place(tmp, out, job.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return report


def format_report(report):
    """A plain-text summary: the round, the sparsity, and one line per exported format."""
    overall = report["overall"]
    lines = [f"round {report['round']} of {report['source']}: {100 * report['remaining_fraction']:.2f}% "
             f"of prunable weights remain, early-stop test accuracy {report['early_stop_test_accuracy']:.4f}",
             f"kernels: {overall['nonzeros']:,} nonzero of {overall['size']:,} "
             f"(sparsity {100 * overall['sparsity']:.2f}%), {overall['parameters']:,} parameters"]
    if report.get("shrink"):
        shrunk = report["shrink"]
        units = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in shrunk["units"].items())
        lines.append(f"shrunk: {shrunk['parameters_before']:,} -> {shrunk['parameters_after']:,} "
                     f"parameters; units kept: {units}")
    lines.append(f"{'format':<14} {'max abs diff':>12} {'agreement':>10} {'test acc':>9} {'bytes':>12}")
    for name, result in report["formats"].items():
        lines.append(f"{name:<14} {result['max_abs_diff']:>12.2e} {result['argmax_agreement']:>10.4f} "
                     f"{result['test_accuracy']:>9.4f} {result['bytes']:>12,}")
    return "\n".join(lines)
