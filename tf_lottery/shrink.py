"""Structural shrink: a physically smaller copy of a pruned network, with the same outputs.

A unit (a Dense neuron or a conv filter of a hidden layer) is removed when
nothing it computes can reach the output:

- its outgoing weights (its input rows in the next kernel, every row a
  flatten spreads it over) are all zero: it goes with its batch-norm entries;
- its incoming weights are all zero: it outputs a constant, its activated
  bias (through batch norm and activations), which is not dropped but folded
  into the next layer's bias (a Dense layer, or a 'valid' conv, whose windows
  never see padding). Before a zero-padded conv, where the border windows see
  the padding instead, the layer's constant units are merged into one kept
  unit whose row in the next kernel carries all of them.

Removing units can make units of the next layer constant in turn; the shrink
follows that through the whole stack. It takes sequential stacks of Dense and
Conv layers with batch norm, activations, pooling, dropout and flatten between
them (LeNet, Conv-2/4/6, VGG); anything else is a ShrinkError.
"""

import dataclasses

import keras
import numpy as np

from tf_lottery import model_ops

_PRODUCERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
# Weightless layers that act on each channel alone and map a constant channel to a constant.
_CHANNELWISE = (
    keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.Activation,
    keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D, keras.layers.GaussianDropout, keras.layers.GaussianNoise,
    keras.layers.ActivityRegularization, keras.layers.Identity,
    keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D, keras.layers.AveragePooling2D, keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D, keras.layers.Flatten,
)
# Layers whose value on a constant input must be computed; the others pass it through.
_VALUE_CHANGING = (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
                   keras.layers.Activation, keras.layers.BatchNormalization)
_NOT_ELEMENTWISE = ("softmax", "log_softmax")
RESIDUAL_MESSAGE = ("shrink supports sequential Dense/Conv stacks; "
                    "residual additions need equal channel sets")


class ShrinkError(ValueError):
    """The model cannot be shrunk with its outputs kept identical; the message says why."""


@dataclasses.dataclass
class Shrunk:
    """The smaller model, its masks cut the same way, and per layer (units kept, units before)."""
    model: keras.Model
    masks: dict
    units: dict
    folded: dict  # layer -> how many of its constant units were folded into the next layer
    merged: dict  # layer -> how many constant units were merged into one kept unit


@dataclasses.dataclass
class _Block:
    """A Dense or Conv layer and the channelwise layers after it, up to the next such layer."""
    layer: keras.layers.Layer
    tail: list
    kernel: np.ndarray = None
    bias: np.ndarray = None
    use_bias: bool = False
    rows: np.ndarray = None  # original indices of the inputs still feeding this block
    keep: np.ndarray = None  # original indices of this block's units that stay
    merged: np.ndarray = None  # input rows whose constants were merged into the row `anchor`
    anchor: int = None


def _chain(model):
    """The model's layers as a single path from input to output, or a ShrinkError."""
    if not isinstance(model, keras.Model):
        raise ShrinkError(f"expected a keras.Model, got {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ShrinkError("shrink supports models with one input and one output")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for layer in layers:
        if isinstance(layer, keras.Model):
            raise ShrinkError(f"shrink does not go into nested model '{layer.name}'")
        if isinstance(layer, keras.layers.Wrapper):
            raise ShrinkError(f"layer '{layer.name}' is wrapped ({type(layer).__name__}); "
                              "shrink a stripped model (tf_lottery.strip)")
    if isinstance(model, keras.Sequential):
        return layers
    previous = None
    for layer in model.layers:
        nodes = layer._inbound_nodes
        parents = [p.operation for node in nodes for p in node.parent_nodes]
        children = [n.operation for n in layer._outbound_nodes
                    if n.operation is model or n.operation in model.layers]
        if len(nodes) > 1 or len(parents) > 1 or len(children) > 1:
            raise ShrinkError(RESIDUAL_MESSAGE)
        if previous is not None and parents != [previous]:
            raise ShrinkError(RESIDUAL_MESSAGE)
        previous = layer
    return layers


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _blocks(layers):
    """(layers before the first Dense/Conv, [_Block, ...]), checking every layer is supported."""
    head, blocks = [], []
    for layer in layers:
        if not _channels_last(layer):
            raise ShrinkError(f"layer '{layer.name}' is channels_first; shrink needs channels_last")
        if isinstance(layer, model_ops.TRANSPOSED_CONVOLUTIONS):
            raise ShrinkError(f"layer '{layer.name}' ({type(layer).__name__}): shrink does not support "
                              "transposed convolutions; export without shrink")
        if type(layer) in _PRODUCERS:
            if getattr(layer, "groups", 1) != 1:
                raise ShrinkError(f"grouped conv '{layer.name}' is not supported by shrink")
            blocks.append(_Block(layer, []))
        elif not blocks:
            if layer.weights:
                raise ShrinkError(f"layer '{layer.name}' ({type(layer).__name__}) before the first "
                                  "Dense/Conv layer has weights; shrink does not support it")
            head.append(layer)
        else:
            blocks[-1].tail.append(layer)
    if not blocks:
        raise ShrinkError("the model has no Dense or Conv layer to shrink")
    for block in blocks[:-1]:
        if _activation_name(block.layer) in _NOT_ELEMENTWISE:
            raise ShrinkError(f"hidden layer '{block.layer.name}' has a {_activation_name(block.layer)} "
                              "activation, which mixes units; shrink cannot remove any of them")
        for layer in block.tail:
            _check_channelwise(layer)
    for layer in blocks[-1].tail:
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
            raise ShrinkError(f"layer '{layer.name}' ({type(layer).__name__}) after the output layer "
                              "has weights; shrink does not support it")
    return head, blocks


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") if activation is not None else ""


def _check_channelwise(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        if layer.axis not in (-1, len(layer.input.shape) - 1):
            raise ShrinkError(f"batch norm '{layer.name}' normalises axis {layer.axis}, not the "
                              "channels; shrink does not support it")
        return
    if not isinstance(layer, _CHANNELWISE):
        raise ShrinkError(f"layer '{layer.name}' ({type(layer).__name__}) is not supported by shrink; "
                          "it supports Dense/Conv stacks with batch norm, activations, pooling, "
                          "dropout and flatten between them")
    if isinstance(layer, keras.layers.Activation) and _activation_name(layer) in _NOT_ELEMENTWISE:
        raise ShrinkError(f"layer '{layer.name}' applies {_activation_name(layer)} to hidden units, "
                          "which mixes them; shrink cannot remove any of them")


def _constant_values(block, pre_activation):
    """What each of a block's units outputs when its pre-activation is the constant given."""
    value = block.layer.activation(keras.ops.convert_to_tensor(pre_activation.astype(np.float32)))
    for layer in block.tail:
        if isinstance(layer, _VALUE_CHANGING):
            shape = [1] * (len(layer.input.shape) - 1) + [-1]
            value = keras.ops.reshape(layer(keras.ops.reshape(value, shape), training=False), [-1])
    return keras.ops.convert_to_numpy(value).astype(np.float64)


def _rows_of(unit, units, rows):
    """The input rows of the next kernel fed by `unit` (a flatten spreads a channel over many)."""
    return np.arange(unit, rows, units)


def _pads(layer):
    """True for a conv whose border windows see padding (a constant input is not constant there)."""
    if isinstance(layer, keras.layers.Dense):
        return False
    return layer.padding != "valid" and any(size > 1 for size in layer.kernel_size)


def _outgoing_alive(blocks):
    """{block index: bool array}: whether each unit has a nonzero weight into a unit that stays."""
    alive = {len(blocks) - 1: np.ones(blocks[-1].kernel.shape[-1], bool)}
    for b in range(len(blocks) - 2, -1, -1):
        units = blocks[b].kernel.shape[-1]
        nxt = blocks[b + 1].kernel[..., alive[b + 1]]
        nonzero = np.any(nxt != 0, axis=tuple(i for i in range(nxt.ndim) if i != nxt.ndim - 2))
        alive[b] = np.array([nonzero[_rows_of(j, units, nonzero.size)].any() for j in range(units)])
    return alive


def _check_rows(blocks):
    for b in range(len(blocks) - 1):
        units, rows = blocks[b].kernel.shape[-1], blocks[b + 1].kernel.shape[-2]
        if rows % units:
            raise ShrinkError(f"layer '{blocks[b + 1].layer.name}' has {rows} inputs, not a multiple "
                              f"of the {units} units of '{blocks[b].layer.name}'")


def _plan(blocks):
    """Decides what each block keeps, folding or merging constant units into the next block."""
    alive = _outgoing_alive(blocks)
    folded, merged = {}, {}
    blocks[0].rows = np.arange(blocks[0].kernel.shape[-2])
    for b, block in enumerate(blocks):
        kernel = block.kernel[..., block.rows, :]
        last = b == len(blocks) - 1
        candidates = np.flatnonzero(alive[b])
        if last:
            block.keep = candidates
            break
        nxt = blocks[b + 1]
        units = block.kernel.shape[-1]
        incoming = np.any(kernel != 0, axis=tuple(range(kernel.ndim - 1)))
        constant = candidates[~incoming[candidates]]
        values = _constant_values(block, block.bias)[constant] if constant.size else np.zeros(0)
        live = constant[values != 0]
        values = values[values != 0]
        keep = set(candidates) - set(constant)
        if live.size and _pads(nxt.layer):
            # One unit carries every constant: its next-kernel rows become the weighted sum.
            anchor = live[np.argmax(np.abs(values))]
            anchor_value = values[live == anchor][0]
            total = sum(nxt.kernel[..., j, :] * (v / anchor_value) for j, v in zip(live, values))
            nxt.kernel[..., anchor, :] = total
            nxt.merged, nxt.anchor = live, anchor
            keep.add(anchor)
            merged[block.layer.name] = int(live.size)
        elif live.size:
            for j, v in zip(live, values):
                rows = _rows_of(j, units, nxt.kernel.shape[-2])
                contribution = nxt.kernel[..., rows, :].sum(axis=tuple(range(nxt.kernel.ndim - 2)))
                nxt.bias = nxt.bias + v * contribution.sum(axis=0)
            if not nxt.use_bias and np.any(nxt.bias != 0):
                nxt.use_bias = True
            folded[block.layer.name] = int(live.size)
        keep = np.array(sorted(keep), dtype=int)
        if keep.size == 0:
            # Nothing of this layer reaches the output; keep one unit that contributes nothing.
            keep = np.array([0])
            nxt.kernel[..., _rows_of(0, units, nxt.kernel.shape[-2]), :] = 0
        block.keep = keep
        nxt.rows = np.sort(np.concatenate([_rows_of(j, units, nxt.kernel.shape[-2]) for j in keep]))
    return folded, merged


def _new_layer(layer, **changes):
    config = layer.get_config()
    config.update(changes)
    return layer.__class__.from_config(config)


def _read(blocks):
    for block in blocks:
        weights = [np.asarray(w, dtype=np.float64) for w in block.layer.get_weights()]
        block.kernel = weights[0].copy()
        block.use_bias = bool(block.layer.use_bias)
        block.bias = weights[1].copy() if block.use_bias else np.zeros(block.kernel.shape[-1])


def shrink(model, masks=None):
    """A smaller copy of a plain (stripped) Keras model with the same outputs; see the module doc.

    Args:
        model: a built Sequential or functional model with masked weights baked
            in (tf_lottery.strip); zeros in its kernels define what is pruned.
        masks: optional {'layer/kernel': 0/1 array}; returned cut to the new
            shapes (a merged row is the union of the rows it replaces).
    Returns a Shrunk; raises ShrinkError if the model is not a supported stack.
    """
    head, blocks = _blocks(_chain(model))
    _read(blocks)
    _check_rows(blocks)
    units_before = {b.layer.name: b.kernel.shape[-1] for b in blocks}
    folded, merged = _plan(blocks)
    new_masks = {}
    for block in blocks:
        key = f"{block.layer.name}/kernel"
        if masks is not None and key in masks:
            mask = np.asarray(masks[key], dtype=np.float32).copy()
            if block.merged is not None:
                mask[..., block.anchor, :] = mask[..., block.merged, :].max(axis=-2)
            new_masks[key] = mask[..., block.rows, :][..., block.keep]
    return Shrunk(_rebuild(model, head, blocks), new_masks,
                  {b.layer.name: (int(b.keep.size), units_before[b.layer.name]) for b in blocks},
                  folded, merged)


def _rebuild(model, head, blocks):
    source = model.inputs[0]
    inputs = keras.Input(shape=source.shape[1:], dtype=source.dtype,
                         name=source._keras_history[0].name)
    x = inputs
    for layer in head:
        x = _new_layer(layer)(x)
    for block in blocks:
        size = "units" if isinstance(block.layer, keras.layers.Dense) else "filters"
        layer = _new_layer(block.layer, **{size: int(block.keep.size), "use_bias": block.use_bias})
        x = layer(x)
        dtype = block.layer.kernel.dtype
        weights = [block.kernel[..., block.rows, :][..., block.keep].astype(dtype)]
        if block.use_bias:
            weights.append(block.bias[block.keep].astype(dtype))
        layer.set_weights(weights)
        for old in block.tail:
            new = _new_layer(old)
            x = new(x)
            if isinstance(old, keras.layers.BatchNormalization):
                new.set_weights([w[block.keep] for w in old.get_weights()])
    return keras.Model(inputs, x, name=model.name)
