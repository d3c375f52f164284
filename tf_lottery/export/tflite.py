"""TFLite files of an exported network: conversion, running them, and finding the kernels inside."""

import warnings

import numpy as np
import tensorflow as tf

from tf_lottery.export.request import ExportError


def convert(saved_model, quantize):
    """The bytes of a .tflite file from a SavedModel's 'serve' signature (int8 weights if `quantize`)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serve"])
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def interpreter(path):
    """A tf.lite.Interpreter of a .tflite file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about LiteRT
        return tf.lite.Interpreter(model_path=str(path))


def outputs(model, x, batch_size):
    """The float32 outputs of the interpreter `model` on `x`, `batch_size` examples at a time; `x` is
    one array, or {input name: array} for the 'serve' signature of a model of several inputs."""
    if isinstance(x, dict):
        return _signature_outputs(model, x, batch_size)
    (inp,), (out,) = model.get_input_details(), model.get_output_details()
    results, size = [], None
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        if len(batch) != size:
            model.resize_tensor_input(inp["index"], [len(batch), *x.shape[1:]])
            model.allocate_tensors()
            size = len(batch)
        model.set_tensor(inp["index"], batch)
        model.invoke()
        results.append(model.get_tensor(out["index"]).astype(np.float32))
    return np.concatenate(results)


def _signature_outputs(model, named, batch_size):
    runner = model.get_signature_runner("serve")
    (output,) = runner.get_output_details()
    count = len(next(iter(named.values())))
    return np.concatenate([
        runner(**{name: array[i:i + batch_size] for name, array in named.items()})[output].astype(np.float32)
        for i in range(0, count, batch_size)])


def kernel_nonzeros(model, masks):
    """{key: nonzeros} of the TFLite constants that hold each kernel (output axis first), if found.

    The converter names tensors after ops, not variables, and may fold batch
    norm into conv kernels, so a kernel is recognised by its shape; it must
    be zero wherever its mask is (int8 may round more weights to zero).
    Raises ExportError if every constant of a kernel's shape breaks its mask.
    """
    constants = []
    for detail in model.get_tensor_details():
        try:
            constants.append(model.get_tensor(detail["index"]))
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
