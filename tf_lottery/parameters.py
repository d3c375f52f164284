"""Keras' parameter counts of a wrapped model: the model's own parameters, masks and snapshots apart.

Keras counts every variable a layer holds: `count_params()` and the totals of
`summary()` of a wrapped model would add each wrapper's masks and snapshots
(three times the parameters of a Dense kernel). `tfl.wrap` gives the model it
returns (and its nested models) a `count_params` and a `summary` that run
Keras' own inside `wrapper.counting_parameters()`, so they count what the
unwrapped model counts (batch-norm statistics included), and `summary()`
reports the masks and snapshots on a line of their own.
"""

import functools

import keras
import numpy as np

from tf_lottery.wrapper import LotteryWrapper, counting_parameters

LINE = " tf_lottery masks and snapshots: {count:,} (not parameters, not counted above)"


def _models(model):
    yield model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _models(layer)


def bookkeeping_count(model):
    """How many values the masks and snapshots of `model`'s wrappers (nested models included) hold."""
    return sum(int(np.prod(v.shape)) for layer in model._flatten_layers(include_self=False)
               if isinstance(layer, LotteryWrapper) for v in layer.bookkeeping_variables)


def count_params(model):
    """Keras' Model.count_params of `model` without the wrappers' masks and snapshots."""
    with counting_parameters():
        return type(model).count_params(model)


def summary(model, *args, print_fn=None, **kwargs):
    """Keras' Model.summary of `model` whose totals leave out the masks and snapshots, reported after."""
    with counting_parameters():
        type(model).summary(model, *args, print_fn=print_fn, **kwargs)
    (print_fn or print)(LINE.format(count=bookkeeping_count(model)))


def install(model):
    """Gives `model` and its nested models this module's count_params and summary."""
    for each in _models(model):
        # Plain attributes of this instance: the class, its config and its saved files are Keras' own.
        object.__setattr__(each, "count_params", functools.partial(count_params, each))
        object.__setattr__(each, "summary", functools.partial(summary, each))
