"""The Bernoulli supermask (Zhou et al. 2019): a mask learned on frozen random weights.

Each masked weight has a trainable score s and a keep probability
p = sigmoid(logit_scale * s). In training, every forward pass samples the
mask m ~ Bernoulli(p) and passes the gradient straight through the sample to
p (d loss / d p = d loss / d used weight * weight), as the authors' code
does. The weights never change. Three differences from the paper make the
supermask comparable with the other methods at a fixed sparsity, trained by
the experiment's own optimizer:

- each tensor's probabilities are rescaled to the mean `density` (and
  clipped at 1) before sampling, so the sampled masks keep IMP's density on
  average (the paper's density is whatever the scores reach);
- the ticket, used outside training and written to the wrapper's mask
  variable by every inference pass (the Trainer's evaluations; training
  passes skip it), is the top `density` fraction of p (the authors also
  sample at test time);
- `logit_scale` multiplies the scores (the authors train them by SGD at
  learning rate 100; with Adam at 1.2e-3 a scale of 100 moves the logits at
  a comparable pace).

The scores start at logit(density), the same value for every weight of a
tensor (the authors start from one constant); the samples break the tie.
"""

import functools

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tf_lottery import edge_popup
from tf_lottery import model_ops


def sample(keep, seed):
    """A 0/1 sample of Bernoulli(keep) (seed: 2 int32) whose gradient passes straight through to `keep`."""
    drawn = ops.cast(tf.random.stateless_uniform(keep.shape, seed=seed, alg="philox") < keep, keep.dtype)
    return drawn + keep - ops.stop_gradient(keep)


def rescaled(keep, density):
    """`keep` scaled to the mean `density` and clipped at 1: the probabilities a training pass samples."""
    return ops.minimum(keep * density / ops.mean(keep), 1.0)


@keras.saving.register_keras_serializable(package="tf_lottery")
class SupermaskWrapper(edge_popup.EdgePopupWrapper):
    """A LotteryWrapper whose mask is sampled from sigmoid(scores); see the module doc.

    Args:
        logit_scale: the keep probability is sigmoid(logit_scale * score).
    """

    def __init__(self, layer, logit_scale=100.0, **kwargs):
        super().__init__(layer, **kwargs)
        self.logit_scale = float(logit_scale)
        self.seed_generator = keras.random.SeedGenerator(0)

    def build(self, input_shape=None):
        super().build(input_shape)
        # Added to every sample's seed: a round's or draw's own stream of masks.
        self.sample_seed = self.add_weight(name="sample_seed", shape=(), initializer="zeros",
                                           dtype="int32", trainable=False)

    def _used_weights(self, training=None):
        mapping = []
        for (_, weight, mask), (score, density) in zip(self._masked, self._scores):
            keep = ops.sigmoid(self.logit_scale * score)
            if training:
                seed = tf.cast(self.seed_generator.next(), tf.int32) + tf.constant([1, 0]) * self.sample_seed.value
                used = sample(rescaled(keep, density), seed)
            else:  # the ticket is not needed by a training pass: the mask variable is the last inference's
                used = edge_popup.top_fraction(keep, density)
                mask.assign(used)
            mapping.append((weight, weight * ops.cast(used, weight.dtype)))
        return mapping

    def start(self, densities, seed):
        """Scores at logit(density) for each tensor ({key: density}), samples seeded by `seed`."""
        for key, (score, density) in self.scores.items():
            d = float(np.clip(densities[key], 1e-6, 1 - 1e-6))
            score.assign(np.full(score.shape, np.log(d / (1 - d)) / self.logit_scale, np.float32))
            density.assign(densities[key])
        self.sample_seed.assign(seed)

    def get_config(self):
        return {**super().get_config(), "logit_scale": self.logit_scale}


def wrap(plain, exclude=(), logit_scale=100.0):
    """A supermask copy of a plain (stripped) model: every layer frozen but the scores."""
    return edge_popup.wrap(plain, exclude=exclude,
                           wrapper=functools.partial(SupermaskWrapper, logit_scale=logit_scale))


def start(model, densities, seed):
    """SupermaskWrapper.start on every wrapper of `model`."""
    for wrapper in model_ops.wrappers(model):
        wrapper.start(densities, seed)
