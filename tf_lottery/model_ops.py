"""Whole-model operations: wrap, strip, read and set masks, snapshot, reset, summary."""

import contextlib
import warnings
import weakref

import keras
import numpy as np
from absl import logging

from tf_lottery import parameters
from tf_lottery import pruning
from tf_lottery.wrapper import (LotteryWrapper, builds_from_several_shapes, default_prunable,
                                is_tf_keras_object, weight_at)

# Layers left unwrapped with more parameters than this get a warning from wrap().
LARGE_UNWRAPPED_LAYER = 10_000

# {model: [(variable, value)]}: the snapshot of the layers outside any wrapper, in memory only.
_UNWRAPPED_SNAPSHOTS = weakref.WeakKeyDictionary()


def _check_keras3_model(model):
    if is_tf_keras_object(model):
        raise TypeError(
            f"model '{getattr(model, 'name', model)}' is a tf_keras (Keras 2) model; "
            "tf_lottery works on Keras 3 models (import keras, not tf_keras)")
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def inner_layers(model):
    """Every layer of `model`, nested models included, wrapped layers as the layer they wrap."""
    return [layer.layer if isinstance(layer, LotteryWrapper) else layer for layer in _all_layers(model)]


def wrappers(model):
    """Every LotteryWrapper in `model`, nested models included, in layer order."""
    return [layer for layer in _all_layers(model) if isinstance(layer, LotteryWrapper)]


def _require_wrappers(model):
    _check_keras3_model(model)
    found = wrappers(model)
    if not found:
        raise ValueError(f"model '{model.name}' has no LotteryWrapper; call tfl.wrap(model) first")
    return found


def _unwrapped_layer_variables(model):
    return [variable for layer in _all_layers(model)
            if not isinstance(layer, (LotteryWrapper, keras.Model)) for variable in layer.weights]


def _snapshot_unwrapped(model):
    _UNWRAPPED_SNAPSHOTS[model] = [(variable, keras.ops.convert_to_numpy(variable))
                                   for variable in _unwrapped_layer_variables(model)]


def copy_weights(source, target):
    """Copies weights layer by layer (matched by name) from `source` into `target`, a wrapped
    clone of it, and makes them the snapshot (see `snapshot`); masks are untouched."""
    _copy_weights(source, target)
    _snapshot_unwrapped(target)


def _copy_weights(source, target):
    for new in target.layers:
        if not new.weights:
            continue
        old = source.get_layer(new.name)
        if isinstance(new, keras.Model):
            _copy_weights(old, new)
        elif isinstance(new, LotteryWrapper):
            new.layer.set_weights(old.get_weights())
            new.take_snapshot()
        else:
            new.set_weights(old.get_weights())


def wrap(model, exclude=(), prunable=None, wrapper=LotteryWrapper):
    """Returns a copy of `model` with a LotteryWrapper around every prunable layer.

    Prunable by default: Dense, EinsumDense, Conv (transposed ones too) and Embedding layers,
    MultiHeadAttention (query, key, value and output kernels), LSTM, GRU and
    SimpleRNN (input and recurrent kernels), and the same inside Bidirectional
    and TimeDistributed (see `wrapper.default_prunable`). The copy keeps the
    model's current weights, which become the snapshot (theta_0; `snapshot`).
    Works on Sequential and functional models, nested ones included;
    subclassed models need their layers wrapped by hand. The layers with
    weights left unwrapped that `exclude` does not name are logged (INFO), and
    those with more than LARGE_UNWRAPPED_LAYER parameters get a warning: they
    will not be pruned. A compiled model's copy is compiled the same way (loss,
    metrics, a fresh optimizer of the same config). The copy's count_params()
    and summary() count its own parameters, not the masks and snapshots
    (tf_lottery.parameters). Unknown layer names, weights or argument types
    are a one-line error naming the argument.

    Args:
        model: a built Keras 3 Sequential or functional model.
        exclude: names of layers to leave unwrapped (never pruned).
        prunable: optional {layer_name: (attribute, ...)} overriding which
            weights of a layer are masked; any layer with weights can be named,
            and a dotted attribute reaches into sublayers ('cell.kernel').
        wrapper: the LotteryWrapper class to use (edge_popup.EdgePopupWrapper).
    """
    exclude, prunable = _checked_wrap_arguments(model, exclude, prunable)

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        attrs = () if layer.name in exclude else prunable.get(layer.name, default_prunable(layer))
        if not attrs:
            return copy
        if builds_from_several_shapes(copy):
            copy.build_from_config(layer.get_build_config())
        return wrapper(copy, prunable=attrs)

    try:
        wrapped = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except ValueError as error:
        raise ValueError(f"cannot wrap model '{model.name}': {str(error).splitlines()[0]}") from None
    if not wrappers(wrapped):
        raise ValueError(f"model '{model.name}' has no prunable layer (Dense, Conv, Embedding, "
                         "attention or recurrent layers; or name weights in prunable=)")
    copy_weights(model, wrapped)
    _report_unwrapped_layers(wrapped, exclude)
    _compile_like(model, wrapped)
    parameters.install(wrapped)  # count_params() and summary() without masks and snapshots
    return wrapped


def _checked_wrap_arguments(model, exclude, prunable):
    """(set of excluded names, {name: attribute tuple}) for a built Sequential or functional Keras 3
    model, not wrapped yet, with a layer for every name and a weight for every attribute."""
    _check_keras3_model(model)
    exclude = {exclude} if isinstance(exclude, str) else set(exclude)
    if prunable is not None and not isinstance(prunable, dict):
        raise TypeError(f"prunable must be a dict {{layer_name: (attribute, ...)}}, got "
                        f"{type(prunable).__name__}")
    prunable = {name: (attrs,) if isinstance(attrs, str) else tuple(attrs)
                for name, attrs in (prunable or {}).items()}
    check_layer_names(model, exclude, "exclude")
    check_layer_names(model, prunable, "prunable")
    already = [layer.name for layer in _all_layers(model) if isinstance(layer, LotteryWrapper)]
    if already:
        raise ValueError(f"model '{model.name}' is already wrapped (layer '{already[0]}')")
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built; give it an Input or call build() first")
    if not isinstance(model, (keras.Sequential, keras.Function)):
        raise ValueError(f"model '{model.name}' is a subclassed model ({type(model).__name__}); wrap() "
                         "takes Sequential and functional models: wrap its layers with LotteryWrapper")
    layers = {layer.name: layer for layer in _all_layers(model)}
    for name, attrs in prunable.items():
        layer = layers[name]
        for attr in attrs:
            if not isinstance(weight_at(layer, attr), keras.Variable):
                raise ValueError(f"prunable: layer '{name}' ({type(layer).__name__}) has no weight "
                                 f"'{attr}'; its weights: {', '.join(w.name for w in layer.weights)}")
    return exclude, prunable


def check_layer_names(model, names, argument):
    """A one-line ValueError naming `argument` if a name in `names` is no layer of `model`."""
    known = {layer.name for layer in _all_layers(model)} | {layer.name for layer in inner_layers(model)}
    unknown = sorted(set(names) - known)
    if unknown:
        with_weights = [layer.name for layer in _all_layers(model)
                        if layer.weights and not isinstance(layer, keras.Model)]
        raise ValueError(f"{argument}: model '{model.name}' has no layer named "
                         f"{', '.join(map(repr, unknown))}; its layers with weights: "
                         f"{', '.join(with_weights)}")


def _report_unwrapped_layers(wrapped, exclude):
    """Logs the layers with weights left unwrapped (never pruned) that `exclude` does not name, and
    warns about those with more than LARGE_UNWRAPPED_LAYER parameters."""
    left = []
    for layer in _all_layers(wrapped):
        if isinstance(layer, (LotteryWrapper, keras.Model)) or layer.name in exclude or not layer.weights:
            continue
        size = sum(int(np.prod(w.shape)) for w in layer.weights)
        left.append(f"{layer.name} ({type(layer).__name__}, {size:,} parameters)")
        if size > LARGE_UNWRAPPED_LAYER:
            warnings.warn(
                f"layer '{layer.name}' ({type(layer).__name__}, {size:,} parameters) is not wrapped and "
                f"will not be pruned; name its weights in prunable={{'{layer.name}': (...)}} to prune "
                f"it, or in exclude to silence this warning", stacklevel=3)
    if left:
        logging.info("wrap: layers with weights not wrapped (never pruned): %s", ", ".join(left))


def _compile_like(model, copy, kind="wrapped"):
    """Compiles the copy as `model` was compiled (a fresh optimizer from the same config)."""
    if not getattr(model, "compiled", False):
        return
    try:
        copy.compile_from_config(model.get_compile_config())
    except (TypeError, ValueError) as error:
        warnings.warn(f"the {kind} copy of '{model.name}' could not be compiled like the original "
                      f"({str(error).splitlines()[0]}); call compile() on it", stacklevel=3)


def wrap_like(model, template):
    """Wraps `model`, a fresh copy of `template`'s architecture, exactly as `template` is wrapped.

    The same layers get a wrapper with the same masked weights, so masks of
    `template` fit the result (the random-reinitialisation control uses this).
    """
    prunable = {wrapper.name: tuple(wrapper.prunable) for wrapper in wrappers(template)}
    exclude = [layer.name for layer in _all_layers(model)
               if layer.name not in prunable and default_prunable(layer)]
    return wrap(model, exclude=exclude, prunable=prunable)


def strip(model, compile=False):
    """Returns the wrapped model with `where(mask, weight, 0)` baked in: exact zeros where pruned.

    Sequential and functional models (nested ones included) give a plain Keras
    copy without any wrapper, which needs neither tf_lottery nor its masks.
    The copy is not compiled and holds no optimizer variables, so its `.keras`
    file is the size of the plain model's; with `compile=True` it is compiled
    like `model` (loss, metrics and a fresh optimizer from the same config,
    none of the trained optimizer's state), and `model` must be compiled.

    A subclassed model, which Keras cannot clone, is stripped in place and
    returned (`compile` does not apply): every masked weight becomes
    `where(mask, weight, 0)`, so its variables (`get_weights`,
    `save_weights`) hold the stripped network. The wrappers and masks stay
    (they now change nothing: the model computes the same function as
    before, and further training keeps the zeros); build the plain
    architecture and copy the inner layers' weights into it to drop them.
    """
    _check_keras3_model(model)
    if compile and not getattr(model, "compiled", False):
        raise ValueError(f"compile=True: model '{model.name}' is not compiled")
    if not isinstance(model, (keras.Sequential, keras.Function)):
        for _, weight, mask in masked_weights(model):
            weight.assign(keras.ops.where(mask, weight, 0))
        return model

    def clone(layer):
        inner = layer.layer if isinstance(layer, LotteryWrapper) else layer
        return inner.__class__.from_config(inner.get_config())

    with _uncompiled(model):  # clone_model compiles the copy of a compiled model, optimizer slots built
        stripped = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_stripped(model, stripped)
    if compile:
        _compile_like(model, stripped, kind="stripped")
    return stripped


@contextlib.contextmanager
def _uncompiled(model):
    """`model` seen as not compiled (Keras' `compiled` flag) for the duration, then as it was."""
    compiled = getattr(model, "compiled", False)
    model.compiled = False
    try:
        yield
    finally:
        model.compiled = compiled


def _copy_stripped(source, target):
    for new in target.layers:
        if not new.weights:
            continue
        old = source.get_layer(new.name)
        if isinstance(new, keras.Model):
            _copy_stripped(old, new)
        elif isinstance(old, LotteryWrapper):
            masked = {id(w): keras.ops.where(m, w, 0) for _, w, m in old.masked_weights}
            new.set_weights([keras.ops.convert_to_numpy(masked.get(id(w), w))
                             for w in old.layer.weights])
        else:
            new.set_weights(old.get_weights())


def masked_weights(model):
    """[(key, weight, mask)] over the whole model; key is 'layer_name/attribute'."""
    return [item for wrapper in wrappers(model) for item in wrapper.masked_weights]


# Keras' convolution layers (Conv1D/2D/3D, their transposes, depthwise and separable ones).
TRANSPOSED_CONVOLUTIONS = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                           keras.layers.Conv3DTranspose)
CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                *TRANSPOSED_CONVOLUTIONS, keras.layers.DepthwiseConv1D,
                keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D,
                keras.layers.SeparableConv2D)


def conv_keys(model):
    """Keys of the masked weights of convolution layers (what --conv_prune_fraction prunes)."""
    return [key for wrapper in wrappers(model) if isinstance(wrapper.layer, CONVOLUTIONS)
            for key, _, _ in wrapper.masked_weights]


def transposed_keys(model):
    """Keys of the kernels laid out (..., out, in), not (..., in, out): Conv1D/2D/3DTranspose's."""
    return [key for wrapper in wrappers(model) if isinstance(wrapper.layer, TRANSPOSED_CONVOLUTIONS)
            for key, _, _ in wrapper.masked_weights if key.endswith("/kernel")]


def structures(model, pruning_config):
    """{key: structure name} of `pruning_config` over the masked weights (PruningConfig.structures), the
    transposed_keys as pruning.Transposed names, so that a filter is still an output channel."""
    transposed = transposed_keys(model)
    names = pruning_config.structures([key for key, _, _ in masked_weights(model)], output_key(model))
    return {k: pruning.Transposed(v) if k in transposed and v != "unstructured" else v for k, v in names.items()}


def get_masks(model):
    """{key: float32 0/1 numpy array} for every masked weight; ValueError if `model` has no wrapper."""
    _require_wrappers(model)
    return {key: keras.ops.convert_to_numpy(mask) for key, _, mask in masked_weights(model)}


def effective_weights(model):
    """{key: numpy array} of `where(mask, weight, 0)` per masked weight: what the layers compute with.

    Unlike Keras' `Model.get_weights`, keyed by 'layer/attribute' and masked.
    """
    return {key: keras.ops.convert_to_numpy(keras.ops.where(m, w, 0))
            for key, w, m in masked_weights(model)}


def raw_weights(model):
    """{key: numpy array} of the masked weights as stored (pruned positions keep their values)."""
    return {key: keras.ops.convert_to_numpy(w) for key, w, _ in masked_weights(model)}


def set_masks(model, masks, strict=True):
    """Assigns {key: 0/1 array}; shapes, values and keys are checked before anything is assigned."""
    _require_wrappers(model)
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict {{key: 0/1 array}}, got {type(masks).__name__}")
    items = {key: mask for key, _, mask in masked_weights(model)}
    if strict:
        missing = sorted(set(items) - set(masks))
        if missing:
            raise ValueError(f"masks missing for {', '.join(missing)}")
    unknown = sorted(set(masks) - set(items))
    if unknown:
        raise ValueError(f"no masked weight named {', '.join(unknown)}")
    values = {}
    for key, value in masks.items():
        value = np.asarray(value, dtype=np.float32)
        if tuple(value.shape) != tuple(items[key].shape):
            raise ValueError(
                f"mask for '{key}' has shape {value.shape}, the weight has {tuple(items[key].shape)}")
        if not np.all((value == 0) | (value == 1)):
            raise ValueError(f"mask for '{key}' holds values other than 0 and 1")
        values[key] = value
    for key, value in values.items():
        items[key].assign(value)


def snapshot(model):
    """Takes the snapshot that `reset` returns to: every weight of the model as it is now.

    Wrapped layers copy their weights into their snapshot variables, which
    checkpoints and `.keras` files carry. The layers outside any wrapper (batch
    norm with its moving statistics, excluded layers) are copied into memory
    only: a model restored from a file has the snapshot of its wrapped layers,
    and its unwrapped layers' snapshot is the one `wrap` (or the last
    `snapshot` in this process) took.
    """
    for wrapper in _require_wrappers(model):
        wrapper.take_snapshot()
    _snapshot_unwrapped(model)


def reset(model):
    """Sets every weight back to the snapshot (see `snapshot`); masks are kept.

    Wrapped layers return to their snapshot variables; unwrapped layers
    (batch-norm statistics included) to the in-memory snapshot of this model,
    if `wrap` or `snapshot` took one in this process.
    """
    for wrapper in _require_wrappers(model):
        wrapper.reset()
    for variable, value in _UNWRAPPED_SNAPSHOTS.get(model, ()):
        variable.assign(value)


def sparsity_report(model):
    """{'layers': {key: {'size', 'remaining', 'remaining_fraction'}}, 'size', 'remaining', 'remaining_fraction'}."""
    _require_wrappers(model)
    layers = {}
    for key, mask in get_masks(model).items():
        remaining = int(mask.sum())
        layers[key] = {"size": int(mask.size), "remaining": remaining,
                       "remaining_fraction": remaining / mask.size}
    size = sum(v["size"] for v in layers.values())
    remaining = sum(v["remaining"] for v in layers.values())
    return {"layers": layers, "size": size, "remaining": remaining,
            "remaining_fraction": remaining / size}


def summary(model, print_fn=None):
    """Prints and returns a table of the masked weights: key, shape, size, remaining, remaining %.

    The last line totals every masked weight. `print_fn` (default `print`)
    receives the whole table, as with Keras' `Model.summary`, whose counts
    and totals, for a model from `wrap`, leave out the wrappers' masks and
    snapshots (see tf_lottery.parameters).
    """
    report = sparsity_report(model)
    shapes = {key: tuple(weight.shape) for key, weight, _ in masked_weights(model)}
    rows = [("weight", "shape", "size", "remaining", "remaining %")]
    for key, layer in report["layers"].items():
        rows.append((key, str(shapes[key]), f"{layer['size']:,}", f"{layer['remaining']:,}",
                     f"{100 * layer['remaining_fraction']:.2f}%"))
    rows.append(("total", "", f"{report['size']:,}", f"{report['remaining']:,}",
                 f"{100 * report['remaining_fraction']:.2f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1])]
                       + [cell.rjust(width) for cell, width in zip(row[2:], widths[2:])]).rstrip()
             for row in rows]
    text = "\n".join(lines)
    (print_fn or print)(text)
    return text


def output_key(model):
    """Key of the masked weight of the layer that produces the output, or None if unwrapped."""
    with_weights = [layer for layer in _all_layers(model)
                    if layer.weights and not isinstance(layer, keras.Model)]
    last = with_weights[-1] if with_weights else None
    if isinstance(last, LotteryWrapper):
        return last.masked_weights[0][0]
    return None


def unwrapped_variables(model):
    """{path: variable} of layers outside any wrapper (e.g. batch norm), reset by the IMP driver."""
    return {variable.path: variable for variable in _unwrapped_layer_variables(model)}
