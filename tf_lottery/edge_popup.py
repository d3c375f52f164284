"""Edge-popup (Ramanujan et al. 2020): a mask learned on frozen random weights.

`EdgePopupWrapper` is a LotteryWrapper whose masks are not set but chosen in
every forward pass: each masked weight has a trainable score, and the weights
whose |score| is among the top `density` of the tensor are used. The
gradient reaches the scores straight through the choice (d loss / d |score| =
d loss / d used weight * weight), and the inner layer's weights never change
(the layer is frozen). The chosen mask is written to the wrapper's mask
variable at every call, so `model_ops.get_masks` and the results folder see it.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tf_lottery import model_ops
from tf_lottery.wrapper import LotteryWrapper, _variable_name


def kth_largest(values, k):
    """The k-th largest entry (k a scalar int32 tensor, 1 <= k <= size) of non-negative float32 `values`.

    For non-negative floats the order of the values is that of their int32 bit
    patterns, so the answer is the largest bit pattern b with at least k
    entries >= b: a bisection of at most 31 counting passes. Exact; on CPU
    under XLA the edge-popup training step is about 18x faster than with the
    full sort it replaces (benchmarks/edge_popup_step.py), and it compiles in
    well under a second, where a scatter-based radix select took a minute.
    """
    bits = tf.bitcast(tf.reshape(tf.cast(values, tf.float32), [-1]), tf.int32)
    k = tf.cast(k, tf.int32)

    def halve(low, high):
        middle = low + (high - low + 1) // 2
        enough = tf.reduce_sum(tf.cast(bits >= middle, tf.int32)) >= k
        return tf.where(enough, middle, low), tf.where(enough, high, middle - 1)

    low, _ = tf.while_loop(lambda low, high: low < high, halve,
                           (tf.constant(0), tf.constant(0x7F800000)), maximum_iterations=32)
    return tf.bitcast(low, tf.float32)


def top_fraction(scores, density):
    """A 0/1 mask of the entries of non-negative `scores` in the top `density` (a scalar tensor).

    k = round(density * size), at least 1; ties at the threshold are all kept.
    """
    size = int(np.prod(scores.shape))
    k = ops.clip(ops.cast(ops.round(density * size), "int32"), 1, size)
    return ops.cast(scores >= ops.cast(kth_largest(scores, k), scores.dtype), "float32")


@keras.saving.register_keras_serializable(package="tf_lottery")
class EdgePopupWrapper(LotteryWrapper):
    """A LotteryWrapper with a trainable score per masked weight; see the module doc."""

    def build(self, input_shape=None):
        super().build(input_shape)
        self._scores = []
        for attr, weight, _ in self._masked:
            name = _variable_name(attr)
            score = self.add_weight(name=f"{name}_score", shape=weight.shape,
                                    initializer=keras.initializers.HeUniform(), dtype="float32")
            density = self.add_weight(name=f"{name}_density", shape=(), initializer="ones",
                                      dtype="float32", trainable=False)
            setattr(self, f"{name}_score", score)
            setattr(self, f"{name}_density", density)
            self._scores.append((score, density))
        self.layer.trainable = False

    def _used_weights(self, training=None):
        mapping = []
        for (_, weight, mask), (score, density) in zip(self._masked, self._scores):
            magnitude = ops.abs(score)
            chosen = top_fraction(magnitude, density)
            mask.assign(chosen)
            # The choice passes the gradient straight through to |score| (and so, by sign, to score).
            straight_through = chosen + magnitude - ops.stop_gradient(magnitude)
            mapping.append((weight, weight * ops.cast(straight_through, weight.dtype)))
        return mapping

    @property
    def scores(self):
        """{key: (score, density)} variables."""
        return {key: pair for (key, _, _), pair in zip(self.masked_weights, self._scores)}


def wrap(plain, exclude=(), wrapper=EdgePopupWrapper):
    """A copy of a plain (stripped) model with learned masks: every layer frozen but the scores.

    `wrapper`: EdgePopupWrapper, or a subclass (supermask.SupermaskWrapper).
    """
    model = model_ops.wrap(plain, exclude=exclude, wrapper=wrapper)
    for layer in model_ops.inner_layers(model):  # wrapped layers' inner layers and all others
        layer.trainable = False
    return model


def scores(model):
    """{key: (score, density)} over the model's EdgePopupWrappers."""
    return {key: pair for wrapper in model_ops.wrappers(model) for key, pair in wrapper.scores.items()}
