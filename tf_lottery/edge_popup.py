"""Edge-popup (Ramanujan et al. 2020): a mask learned on frozen random weights.

`EdgePopupWrapper` is a LotteryWrapper whose masks are not set but chosen in
every forward pass: each masked weight has a trainable score, and the weights
whose |score| is among the top `density` of the tensor are used. The
gradient reaches the scores straight through the choice (d loss / d |score| =
d loss / d used weight * weight), and the inner layer's weights never change
(the layer is frozen). The chosen mask is written to the wrapper's mask
variable at every call, so `model_ops.get_masks` and the results folder see it.

The threshold of each tensor is `top_k.threshold`: exact, ties kept, found by
a few counting passes; training passes start it from the tensor's last
threshold (a `top_k.Hint`, outside the weights and checkpoints), which makes
it faster and never changes the mask (benchmarks/edge_popup_step.py).
"""

import keras
import numpy as np
from keras import ops

from tf_lottery import model_ops
from tf_lottery import top_k
from tf_lottery.wrapper import LotteryWrapper, _variable_name

kth_largest = top_k.kth_largest  # the exact k-th largest |score| (its search is in top_k)


def top_fraction(scores, density, hint=None):
    """A 0/1 mask of the entries of non-negative `scores` in the top `density` (a scalar tensor).

    k = round(density * size), at least 1; ties at the threshold are all kept.
    `hint`: a top_k.Hint warm-starting the threshold's search (the mask never depends on it).
    """
    size = int(np.prod(scores.shape))
    k = ops.clip(ops.cast(ops.round(density * size), "int32"), 1, size)
    return ops.cast(scores >= ops.cast(top_k.threshold(scores, k, hint), scores.dtype), "float32")


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
        # Warm starts of the training passes' thresholds: set with object.__setattr__, outside Keras'
        # weights and every checkpoint (the masks never depend on them).
        object.__setattr__(self, "_hints", tuple(top_k.Hint() for _ in self._scores))
        self.layer.trainable = False

    def _used_weights(self, training=None):
        mapping = []
        for (_, weight, mask), (score, density), hint in zip(self._masked, self._scores, self._hints):
            magnitude = ops.abs(score)
            # Inference passes (evaluation, export) search from scratch: a traced export holds no hint.
            chosen = top_fraction(magnitude, density, hint if training else None)
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
