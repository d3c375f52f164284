"""Whole-model operations: wrap, strip, read and set masks, snapshot, reset."""

import keras
import numpy as np

from tf_lottery.wrapper import LotteryWrapper, default_prunable, is_tf_keras_object


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


def copy_weights(source, target):
    """Copies weights layer by layer (matched by name) from `source` into `target`, a wrapped
    clone of it, and makes them the snapshot; masks are untouched."""
    for new in target.layers:
        if not new.weights:
            continue
        old = source.get_layer(new.name)
        if isinstance(new, keras.Model):
            copy_weights(old, new)
        elif isinstance(new, LotteryWrapper):
            new.layer.set_weights(old.get_weights())
            new.take_snapshot()
        else:
            new.set_weights(old.get_weights())


def wrap(model, exclude=(), prunable=None):
    """Returns a copy of `model` with a LotteryWrapper around every prunable layer.

    The copy keeps the model's current weights, which become the snapshot
    (theta_0). Works on Sequential and functional models, nested ones included;
    subclassed models need their layers wrapped by hand.

    Args:
        model: a built Keras 3 Sequential or functional model.
        exclude: names of layers to leave unwrapped (never pruned).
        prunable: optional {layer_name: (attribute, ...)} overriding which
            weights of a layer are masked.
    """
    _check_keras3_model(model)
    exclude = set(exclude)
    prunable = dict(prunable or {})
    names = {layer.name for layer in _all_layers(model)}
    unknown = sorted((exclude | set(prunable)) - names)
    if unknown:
        raise ValueError(f"model '{model.name}' has no layer named {', '.join(map(repr, unknown))}")
    already = [layer.name for layer in _all_layers(model) if isinstance(layer, LotteryWrapper)]
    if already:
        raise ValueError(f"model '{model.name}' is already wrapped (layer '{already[0]}')")
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built; give it an Input or call build() first")

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        if layer.name in exclude:
            return copy
        attrs = prunable.get(layer.name, default_prunable(layer))
        return LotteryWrapper(copy, prunable=attrs) if attrs else copy

    try:
        wrapped = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except ValueError as error:
        raise ValueError(
            f"cannot wrap model '{model.name}' ({error}); wrap() takes Sequential and "
            "functional models, wrap the layers of a subclassed model with LotteryWrapper") from None
    if not wrappers(wrapped):
        raise ValueError(f"model '{model.name}' has no prunable layer (Dense, Conv, Embedding)")
    copy_weights(model, wrapped)
    return wrapped


def wrap_like(model, template):
    """Wraps `model`, a fresh copy of `template`'s architecture, exactly as `template` is wrapped.

    The same layers get a wrapper with the same masked weights, so masks of
    `template` fit the result (the random-reinitialisation control uses this).
    """
    prunable = {wrapper.name: tuple(wrapper.prunable) for wrapper in wrappers(template)}
    exclude = [layer.name for layer in _all_layers(model)
               if layer.name not in prunable and default_prunable(layer)]
    return wrap(model, exclude=exclude, prunable=prunable)


def strip(model):
    """Returns a plain Keras copy of a wrapped model with `weight * mask` baked in."""
    _check_keras3_model(model)

    def clone(layer):
        inner = layer.layer if isinstance(layer, LotteryWrapper) else layer
        return inner.__class__.from_config(inner.get_config())

    stripped = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_stripped(model, stripped)
    return stripped


def _copy_stripped(source, target):
    for new in target.layers:
        if not new.weights:
            continue
        old = source.get_layer(new.name)
        if isinstance(new, keras.Model):
            _copy_stripped(old, new)
        elif isinstance(old, LotteryWrapper):
            masked = {id(w): w * keras.ops.cast(m, w.dtype) for _, w, m in old.masked_weights}
            new.set_weights([keras.ops.convert_to_numpy(masked.get(id(w), w))
                             for w in old.layer.weights])
        else:
            new.set_weights(old.get_weights())


def masked_weights(model):
    """[(key, weight, mask)] over the whole model; key is 'layer_name/attribute'."""
    return [item for wrapper in wrappers(model) for item in wrapper.masked_weights]


def get_masks(model):
    """{key: float32 0/1 numpy array} for every masked weight."""
    return {key: keras.ops.convert_to_numpy(mask) for key, _, mask in masked_weights(model)}


def effective_weights(model):
    """{key: numpy array} of the masked weights times their masks: what the layers compute with.

    Unlike Keras' `Model.get_weights`, keyed by 'layer/attribute' and masked.
    """
    return {key: keras.ops.convert_to_numpy(w * keras.ops.cast(m, w.dtype))
            for key, w, m in masked_weights(model)}


def raw_weights(model):
    """{key: numpy array} of the masked weights as stored (pruned positions keep their values)."""
    return {key: keras.ops.convert_to_numpy(w) for key, w, _ in masked_weights(model)}


def set_masks(model, masks, strict=True):
    """Assigns {key: 0/1 array}; shapes and keys are checked before anything is assigned."""
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
    """Copies the current weights of every wrapped layer into its snapshot."""
    for wrapper in wrappers(model):
        wrapper.take_snapshot()


def reset(model):
    """Sets every wrapped layer's weights back to its snapshot (masks are kept)."""
    for wrapper in wrappers(model):
        wrapper.reset()


def sparsity_report(model):
    """{'layers': {key: {'size', 'remaining', 'remaining_fraction'}}, 'size', 'remaining', 'remaining_fraction'}."""
    layers = {}
    for key, mask in get_masks(model).items():
        remaining = int(mask.sum())
        layers[key] = {"size": int(mask.size), "remaining": remaining,
                       "remaining_fraction": remaining / mask.size}
    size = sum(v["size"] for v in layers.values())
    remaining = sum(v["remaining"] for v in layers.values())
    return {"layers": layers, "size": size, "remaining": remaining,
            "remaining_fraction": remaining / size}


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
    result = {}
    for layer in _all_layers(model):
        if isinstance(layer, (LotteryWrapper, keras.Model)):
            continue
        for variable in layer.weights:
            result[variable.path] = variable
    return result
