"""The user's data checked against the model before run_rounds writes or trains anything.

For each of train_data, validation_data and test_data: a pipeline that
yields nothing or single examples; the structure (one input, a list, inputs
by name), dtype and shape of the inputs against the model's inputs; one
batch through the model; the labels against its output units and loss
(class indices in range for a sparse loss or an uncompiled model, one-hot
labels for a categorical loss); and the loss on that batch. Each problem is
one ValueError or TypeError naming the argument, what the model expects and
what it got. Labels are read in full from NumPy arrays and from the first
1,000 examples of a pipeline.
"""

import numpy as np
from etils import epy

from tf_lottery.data import structure
from tf_lottery.data.splits import Splits
from tf_lottery.data.user import DatasetSplits

with epy.lazy_imports():
    import keras
    import tensorflow as tf

_BATCH = 8  # examples of NumPy data sent through the model
_SPARSE_LOSSES = {"sparsecategoricalcrossentropy", "sparse_categorical_crossentropy"}
_CATEGORICAL_LOSSES = {"categoricalcrossentropy", "categorical_crossentropy", "categoricalfocalcrossentropy",
                       "categorical_focal_crossentropy", "categoricalhinge", "categorical_hinge"}


def check(model, splits, objective, training_config, inside_splits=False):
    """Checks every split the user gave against `model` and its objective (see the module docstring).

    `inside_splits`: validation and test came inside a Splits passed as train_data.
    """
    inputs = structure.model_inputs(model)
    arguments = (("train_data", "train_data's validation split", "train_data's test split") if inside_splits
                 else ("train_data", "validation_data", "test_data"))
    pipeline = isinstance(splits, DatasetSplits)
    for argument, (x, labels, batch_labels) in zip(arguments, _first_batches(splits, arguments)):
        if x is None:
            continue
        _check_inputs(argument, x, inputs, pipeline)
        outputs = _outputs(argument, model, x)
        _check_labels(argument, labels, outputs, objective)
        _check_loss(argument, batch_labels, outputs, objective)
    if training_config.augment and not splits.streamed:
        shape = splits.input_shape
        if not structure.is_single(shape) or len(shape) != 3:
            raise ValueError("training_config.augment pads, crops and flips one image input (height, width, "
                             f"channels); train_data has inputs of shape {shape}")


def _first_batches(splits, arguments):
    """Per split: (one batch of inputs, labels to check, that batch's labels), or Nones if it is absent."""
    if isinstance(splits, DatasetSplits):
        return [_pipeline_batch(splits, split, argument) if getattr(splits, split) is not None
                else (None, None, None) for split, argument in zip(("train", "validation", "test"), arguments)]
    if not isinstance(splits, Splits):
        return []  # a streamed dataset of the zoo: its own loader checks it
    found = []
    for part in ("train", "val", "test"):
        x, y = getattr(splits, f"{part}_x"), np.asarray(getattr(splits, f"{part}_y"))
        if not len(y):
            found.append((None, None, None))
            continue
        found.append((structure.map_arrays(lambda a: _numbers(a[:_BATCH]), x), y, y[:_BATCH]))
    return found


def _numbers(array):
    """An array of the user's as the trainer feeds it (float32), unless it holds no numbers."""
    array = np.asarray(array)
    return array.astype(np.float32) if _numeric(array.dtype) else array


def _numeric(dtype):
    return np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)


def _pipeline_batch(splits, split, argument):
    """The first batch of a pipeline and the labels of its first examples; errors for an empty or
    unbatched one."""
    spec = getattr(splits, split).element_spec
    label_spec = spec[1] if isinstance(spec, tuple) and len(spec) == 2 else None
    if not isinstance(label_spec, tf.TensorSpec):
        raise ValueError(f"{argument} must yield (inputs, labels) batches with one labels tensor, got "
                         f"elements {spec}")
    if label_spec.shape.rank == 0:
        raise ValueError(f"{argument}: the pipeline yields single examples (labels of shape ()), not "
                         "batches; batch it, e.g. dataset.batch(32)")
    batches = splits.first_batches(split)
    if not batches:
        raise ValueError(f"{argument}: the pipeline yields no batches")
    (x, batch_labels), labels = batches[0], np.concatenate([y for _, y in batches])
    return x, labels, batch_labels


def _describe(x):
    if isinstance(x, dict):
        return f"a dict of {len(x)} arrays ({', '.join(sorted(x))})"
    return f"a list of {len(x)} arrays" if isinstance(x, (list, tuple)) else "one array"


def _check_inputs(argument, x, inputs, pipeline):
    """The structure, dtype and shape of a batch of inputs against the model's inputs (if it says)."""
    if inputs is None:
        return
    if structure.is_single(inputs):
        if not structure.is_single(x):
            raise ValueError(f"{argument}: the model takes one input, got {_describe(x)}")
        _check_array(argument, "x", x, inputs, "the model takes inputs of shape", pipeline)
        return
    names = structure.input_names(inputs)
    by_name = dict(zip(names, structure.leaves(inputs)))
    if isinstance(inputs, dict) or isinstance(x, dict):
        if not isinstance(x, dict) or sorted(x) != names:
            got = ", ".join(sorted(x)) if isinstance(x, dict) else _describe(x)
            raise ValueError(f"{argument}: the model takes inputs {', '.join(names)} by name, got {got}")
        pairs = [(name, x[name], by_name[name]) for name in names]
    else:
        if structure.is_single(x) or len(x) != len(names):
            got = "one array" if structure.is_single(x) else f"{len(x)} arrays"
            raise ValueError(f"{argument}: the model takes {len(names)} inputs ({', '.join(names)}), got {got}")
        pairs = list(zip(names, x, structure.leaves(inputs)))
    for name, array, tensor in pairs:
        _check_array(argument, f"input '{name}' of x", array, tensor, f"the model's input '{name}' takes shape",
                     pipeline)


def _fits(wanted, got):
    return len(wanted) == len(got) and all(w is None or w == g for w, g in zip(wanted, got))


def _check_array(argument, what, array, tensor, expected, pipeline):
    """One input array (a batch) against the model's input tensor: numbers, then the shape (a pipeline's
    element of one example's shape is an unbatched pipeline)."""
    dtype = np.asarray(array).dtype
    if not _numeric(dtype):
        raise TypeError(f"{argument}: {what} holds {dtype} values, expected numbers (the model takes "
                        f"{tensor.dtype})")
    wanted, got = tuple(tensor.shape[1:]), tuple(np.shape(array)[1:])
    if _fits(wanted, got):
        return
    if pipeline and _fits(wanted, np.shape(array)):
        raise ValueError(f"{argument}: the pipeline yields single examples (inputs of shape "
                         f"{tuple(np.shape(array))}), not batches; batch it, e.g. dataset.batch(32)")
    raise ValueError(f"{argument}: {expected} {structure.batch_shape(wanted)}, got {structure.batch_shape(got)}")


def _outputs(argument, model, x):
    """The model's outputs on one batch; a one-line error if it cannot take it."""
    try:
        outputs = model(x, training=False)
    except Exception as error:  # noqa: BLE001 (Keras and TensorFlow raise many kinds)
        raise ValueError(f"{argument}: the model cannot take one batch of it ({_first_line(error)})") from None
    if not structure.is_single(outputs):
        raise ValueError(f"model '{model.name}' has {len(structure.leaves(outputs))} outputs; run_rounds "
                         "takes models with one output")
    return outputs


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _loss_name(objective):
    """The compiled loss's name as the user wrote it, and its kind: 'sparse', 'categorical' or None."""
    if objective.loss is None:
        return None, "sparse"
    loss = objective.loss if isinstance(objective.loss, dict) else {"class_name": str(objective.loss)}
    name = str(loss.get("class_name", ""))
    if name == "function" and isinstance(loss.get("config"), str):  # a loss function: its name
        name = loss["config"]
    kind = ("sparse" if name.lower() in _SPARSE_LOSSES else
            "categorical" if name.lower() in _CATEGORICAL_LOSSES else None)
    return name, kind


def _check_labels(argument, labels, outputs, objective):
    """Labels against the output units and the kind of labels the loss takes."""
    if not _numeric(labels.dtype):
        raise TypeError(f"{argument}: labels hold {labels.dtype} values, expected numbers")
    units = int(outputs.shape[-1]) if len(outputs.shape) > 1 else 1
    name, kind = _loss_name(objective)
    shape = structure.batch_shape(labels.shape[1:])
    if kind == "sparse":
        if labels.ndim > 1 and labels.shape[-1] > 1:
            trains = ("the model is not compiled and trains on class indices (sparse cross-entropy)"
                      if name is None else f"the loss {name} takes class indices")
            raise ValueError(f"{argument}: labels of shape {shape} look one-hot, but {trains}; pass "
                             "y.argmax(-1) or compile the model with a categorical loss")
        low, high, whole = labels.min(), labels.max(), np.all(labels == np.round(labels))
        if not whole or low < 0 or high >= units:
            plural = "s" if units != 1 else ""
            raise ValueError(f"{argument}: labels must be class indices 0..{units - 1} for the model's {units} "
                             f"output unit{plural}, got labels {_number(low)}..{_number(high)}"
                             + ("" if whole else " (not all whole numbers)"))
    elif kind == "categorical" and (labels.ndim != 2 or labels.shape[-1] != units):
        what = " are class indices" if labels.ndim == 1 else ""
        raise ValueError(f"{argument}: labels of shape {shape}{what}, but the loss {name} takes one-hot labels "
                         f"of shape (None, {units}); pass keras.utils.to_categorical(y, {units}) or compile the "
                         "model with a sparse loss")


def _number(value):
    return str(int(value)) if float(value).is_integer() else f"{float(value):g}"


def _check_loss(argument, labels, outputs, objective):
    """The loss of one batch: the compiled one, or sparse cross-entropy on logits for an uncompiled model."""
    loss = objective.loss_function() or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    try:
        loss(labels, outputs)
    except Exception as error:  # noqa: BLE001 (a user's loss may raise anything)
        raise ValueError(f"{argument}: the loss cannot take labels of shape "
                         f"{structure.batch_shape(np.shape(labels)[1:])} and outputs of shape "
                         f"{structure.batch_shape(tuple(outputs.shape[1:]))} ({_first_line(error)})") from None
