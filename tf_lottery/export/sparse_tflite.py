"""TFLite files with sparse-encoded weights, and reading every kernel back out of a TFLite interpreter.

`convert(saved_model, weights=..., sparse=...)` asks TensorFlow's converter for
float32, float16 or int8 weights, sparse-encoded with
tf.lite.Optimize.EXPERIMENTAL_SPARSITY when `sparse` (a tensor with at least
30% zeros is stored in CSR form; the runtime densifies it with a DENSIFY op
unless the kernel reads that form itself). Float16 files get the DENSIFY ops
the converter forgets before DEQUANTIZE (tflite_graph.densify_sparse_inputs). int8 is full-integer post-training
quantisation calibrated on `calibration` inputs, with float32 inputs and
outputs: weights are symmetric (zero point 0), so a pruned weight stays 0.

`constants(interpreter)` gives every constant tensor as a dense array, the
sparse-encoded ones decoded from the CSR layout the interpreter reports
(`get_tensor_details()[i]["sparsity_parameters"]`), so that `check_kernels` can
verify, per kernel, that every weight its mask prunes is exactly zero in the file.
"""

import warnings

import numpy as np
import tensorflow as tf

from tf_lottery.export import tflite_graph
from tf_lottery.export.request import ExportError

WEIGHTS = ("float32", "float16", "int8")
_DENSE, _CSR = 0, 1  # tflite DimensionType


def convert(saved_model, weights="float32", sparse=True, calibration=None):
    """The bytes of a .tflite file of a SavedModel's 'serve' signature with `weights` weights."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serve"])
    optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    if weights == "float16":
        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.target_spec.supported_types = [tf.float16]
    elif weights == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("int8 weights need calibration inputs")
        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.optimizations = optimizations
    content = converter.convert()
    return tflite_graph.densify_sparse_inputs(content) if sparse and weights == "float16" else content


def densify(values, shape, sparsity):
    """The dense array of a sparse-encoded tensor: its stored `values`, dense `shape` and the
    interpreter's `sparsity_parameters` (leading dimensions dense, the last CSR, optionally in
    blocks along the last axis, as the converter writes them)."""
    order = list(sparsity["traversal_order"])
    block_map = list(sparsity["block_map"])
    metadata = sparsity["dim_metadata"]
    rank = len(shape)
    block = 1
    if block_map:
        if block_map != [rank - 1] or len(metadata) != rank + 1 or metadata[rank]["format"] != _DENSE:
            raise ExportError(f"tflite: unsupported sparse layout (block map {block_map})")
        block = int(metadata[rank]["dense_size"])
    if order[:rank] != list(range(rank)) or any(m["format"] != _DENSE for m in metadata[:rank - 1]) \
            or metadata[rank - 1]["format"] != _CSR:
        raise ExportError(f"tflite: unsupported sparse layout (traversal order {order})")
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    segments = np.asarray(metadata[rank - 1]["array_segments"], np.int64)
    indices = np.asarray(metadata[rank - 1]["array_indices"], np.int64)
    if len(segments) != rows + 1 or segments[-1] != len(indices) or len(values) != len(indices) * block:
        raise ExportError("tflite: a sparse tensor's segments, indices and values do not agree")
    dense = np.zeros((rows, shape[-1]), values.dtype)
    row_of = np.repeat(np.arange(rows), np.diff(segments))
    for offset in range(block):
        dense[row_of, indices * block + offset] = values[offset::block]
    return dense.reshape(shape)


def constants(interpreter):
    """[(tensor details, dense array)] of every constant tensor of `interpreter`."""
    found = []
    for detail in interpreter.get_tensor_details():
        try:
            value = interpreter.get_tensor(detail["index"])
        except ValueError:  # activations and densified copies have no data before invoke
            continue
        sparsity = detail.get("sparsity_parameters") or {}
        if sparsity.get("dim_metadata"):
            value = densify(value, tuple(detail["shape"]), sparsity)
        found.append((detail, value))
    return found


def check_kernels(name, interpreter, masks):
    """{key: {"nonzeros", "sparse_encoded", "dtype"}} of the constants that hold each kernel.

    A kernel is recognised by its shape (output axis first, as TFLite stores
    them); for quantised weights the zero point must be 0, so that a stored 0
    is the weight 0.0. Raises ExportError if a kernel's every candidate has a
    nonzero where its mask is 0, or if none is found.
    """
    found = constants(interpreter)
    result = {}
    for key, mask in masks.items():
        moved = np.moveaxis(mask, -1, 0)
        candidates = [(d, v) for d, v in found if v.shape == moved.shape]
        if not candidates:
            raise ExportError(f"{name}: no constant of kernel '{key}' (shape {moved.shape}) in the file")
        inside = [(d, v) for d, v in candidates if not np.count_nonzero(v[moved == 0])]
        if not inside:
            raise ExportError(f"{name}: kernel '{key}' has nonzero weights where its mask is 0")
        detail, value = max(inside, key=lambda item: np.count_nonzero(item[1]))
        zero_points = detail["quantization_parameters"]["zero_points"]
        if np.issubdtype(value.dtype, np.integer) and np.count_nonzero(zero_points):
            raise ExportError(f"{name}: kernel '{key}' is quantised with zero points "
                              f"{sorted(set(zero_points.tolist()))[:3]}, so 0 is not the weight 0.0")
        result[key] = {"nonzeros": int(np.count_nonzero(value)), "dtype": value.dtype.name,
                       "sparse_encoded": bool((detail.get("sparsity_parameters") or {}).get("dim_metadata")),
                       "pruned_weights_zero": True}
    return result


def kernel_forms(interpreter, masks):
    """{key: how the file stores and runs each kernel}: dense, CSR or blocks densified when the
    interpreter starts (DENSIFY), or read as they are by TFLite's sparse kernel."""
    ops = interpreter._get_ops_details()  # pylint: disable=protected-access  # the only view of the graph
    densified = {int(i) for op in ops if op["op_name"] == "DENSIFY" for i in op["inputs"]}
    details = interpreter.get_tensor_details()
    forms = {}
    for key, mask in masks.items():
        shape = tuple(np.moveaxis(mask, -1, 0).shape)
        stored = [d for d in details if tuple(d["shape"]) == shape and (d.get("sparsity_parameters") or {})]
        if not stored:
            forms[key] = "dense weights"
            continue
        sparsity = stored[0]["sparsity_parameters"]
        layout = (f"1x{sparsity['dim_metadata'][-1]['dense_size']} blocks" if len(sparsity["block_map"]) else "CSR")
        forms[key] = (f"{layout}, densified when the interpreter starts" if stored[0]["index"] in densified
                      else f"{layout}, read as they are by TFLite's sparse kernel")
    if any(op["op_name"] == "DELEGATE" for op in ops):
        return forms
    return {key: form + "; XNNPACK takes no node of this file" for key, form in forms.items()}


def interpreter(path_or_bytes, threads=1, delegates=True):
    """A tf.lite.Interpreter of a file (path) or of .tflite bytes; `delegates=False` runs TFLite's
    own kernels only (no default XNNPACK delegate)."""
    resolver = (tf.lite.experimental.OpResolverType.AUTO if delegates
                else tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    source = ({"model_content": bytes(path_or_bytes)} if isinstance(path_or_bytes, (bytes, bytearray))
              else {"model_path": str(path_or_bytes)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about LiteRT
        return tf.lite.Interpreter(**source, num_threads=threads, experimental_op_resolver_type=resolver)
