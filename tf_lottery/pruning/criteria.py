"""Criteria: how a structure's units are scored; the lowest-scoring alive units are pruned first."""

from etils import epy

from tf_lottery.registry import Registry

with epy.lazy_imports():
    import tensorflow as tf

CRITERIA = Registry("criterion")


@CRITERIA.register("magnitude")
def magnitude_scores(structure, weight, mask, *, seed, index):
    """Smallest surviving magnitude (or unit norm) first."""
    return structure.scores(weight, mask)


@CRITERIA.register("random")
def random_scores(structure, weight, mask, *, seed, index):
    """Uniformly random, drawn statelessly from (seed, the tensor's index among the sorted keys)."""
    return tf.random.stateless_uniform(tf.shape(structure.alive(mask)), seed=[seed, index])
