"""Inputs as structures: what a model takes (one input, a list of inputs or inputs by name), the user's x
of the same kinds, and how a test sample stores every input in an .npz file.

x is one array, a list or tuple of arrays (one per model input, in order) or
a dict of arrays by input name; leaves are taken in tf.nest order (a dict's
keys sorted), as Keras takes them.
"""

import re

import numpy as np
from etils import epy

with epy.lazy_imports():
    import keras
    import tensorflow as tf

# Keys of a test sample's inputs: 'x' (one input), 'x0', 'x1', ... (a list) or 'x/<name>' (by name).
_POSITION = re.compile(r"x(\d+)")


def model_inputs(model):
    """The model's inputs as it takes them: a KerasTensor, a list of them or a dict by name; None
    if the model does not say (a subclassed model that was only called)."""
    if isinstance(model, keras.Sequential):
        inputs = model.inputs if model.built else None
        return inputs[0] if inputs else None
    try:
        inputs = model.input
    except (AttributeError, ValueError):
        return None
    if isinstance(inputs, (list, tuple)):
        return inputs[0] if len(inputs) == 1 else list(inputs)
    return inputs


def is_single(inputs):
    """Whether `inputs` (model inputs or x) is one tensor or array rather than a list or dict of them."""
    return not isinstance(inputs, (list, tuple, dict))


def input_names(inputs):
    """The names of several model inputs, in tf.nest order: the dict's keys or each input's name."""
    if isinstance(inputs, dict):
        return sorted(inputs)
    return [tensor.name for tensor in inputs]


def leaves(x):
    """The arrays of x in tf.nest order."""
    return tf.nest.flatten(x)


def map_arrays(function, x):
    """x with `function` applied to each of its arrays (the structure kept)."""
    return tf.nest.map_structure(function, x)


def sample_arrays(x):
    """{npz key: array} of a test sample's inputs (float32): 'x', 'x0', 'x1', ... or 'x/<name>'."""
    if isinstance(x, dict):
        return {f"x/{name}": np.asarray(x[name], np.float32) for name in sorted(x)}
    if isinstance(x, (list, tuple)):
        return {f"x{i}": np.asarray(array, np.float32) for i, array in enumerate(x)}
    return {"x": np.asarray(x, np.float32)}


def from_sample(arrays):
    """The inputs stored by `sample_arrays` (one array, a list or a dict); None if the keys are not theirs."""
    keys = sorted(k for k in arrays if k != "y")
    if keys == ["x"]:
        return arrays["x"]
    if keys and all(k.startswith("x/") for k in keys):
        return {k[2:]: arrays[k] for k in keys}
    positions = sorted(int(match.group(1)) for k in keys if (match := _POSITION.fullmatch(k)))
    if keys and positions == list(range(len(keys))):
        return [arrays[f"x{i}"] for i in positions]
    return None


def batch_shape(shape):
    """The shape of a batch of examples of `shape`, as Keras prints it: (None, 28, 28, 1), (None,)."""
    return str((None, *(None if d is None else int(d) for d in shape)))
