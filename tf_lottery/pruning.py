"""Mask criteria for IMP: which of the remaining weights to remove.

All functions take and return {key: tensor} dictionaries and never revive a
pruned weight. Counts are exact: a tensor (or, for global scope, a pool of
tensors) with n remaining weights loses round_half_up(fraction * n) of them.
Ties in the score are broken by position (the earlier flat index goes first),
so the result is deterministic.
"""

import math

import tensorflow as tf

from tf_lottery.config import CRITERIA, SCOPES, PruningConfig  # noqa: F401 (re-exported)


def prune_count(remaining, fraction):
    """How many of `remaining` weights a round removes: fraction * remaining, halves rounded up."""
    return int(math.floor(fraction * remaining + 0.5))


def _flat_float(x):
    return tf.reshape(tf.cast(x, tf.float32), [-1])


def _drop_lowest(scores, masks, n_drop):
    """New flat masks for a pool of flat tensors: the n_drop lowest-scoring survivors go.

    Scores must be >= 0; pruned positions are keyed to -1 so they sort first
    and stay pruned.
    """
    keyed = tf.where(masks > 0, scores, -tf.ones_like(scores))
    n_pruned = int(tf.size(masks)) - int(tf.reduce_sum(masks))
    order = tf.argsort(keyed, stable=True)
    drop = order[: n_pruned + n_drop]
    return tf.tensor_scatter_nd_update(
        tf.ones_like(masks), drop[:, None], tf.zeros_like(drop, dtype=masks.dtype))


def _scores(weights, criterion, seed):
    if criterion == "magnitude":
        return {k: tf.abs(_flat_float(w)) for k, w in weights.items()}
    if criterion == "random":
        return {k: tf.random.stateless_uniform([int(tf.size(w))], seed=[seed, i])
                for i, (k, w) in enumerate(sorted(weights.items()))}
    raise ValueError(f"unknown pruning criterion '{criterion}'; choose one of {', '.join(CRITERIA)}")


def prune(weights, masks, fractions, scope="layer", criterion="magnitude", seed=0):
    """Returns new masks that remove a fraction of the weights each mask still keeps.

    Args:
        weights: {key: trained weight}; only the magnitudes at surviving positions matter.
        masks: {key: 0/1 current mask}, same keys and shapes.
        fractions: {key: fraction in [0, 1)}; keys missing here are not pruned.
            With scope='global', all keys with the same fraction form one pool
            with one threshold (so an output layer at its own rate is its own pool).
        scope: 'layer' (each tensor loses its fraction of what it has) or
            'global' (one magnitude threshold over each pool).
        criterion: 'magnitude' (smallest |w| first) or 'random' (seeded).
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope '{scope}'; choose one of {', '.join(SCOPES)}")
    if set(weights) != set(masks):
        raise ValueError("weights and masks must have the same keys")
    scores = _scores(weights, criterion, seed)
    flat_masks = {k: _flat_float(m) for k, m in masks.items()}
    new = dict(flat_masks)
    if scope == "layer":
        pools = [[k] for k in sorted(fractions)]
    else:
        by_fraction = {}
        for k in sorted(fractions):
            by_fraction.setdefault(fractions[k], []).append(k)
        pools = list(by_fraction.values())
    for keys in pools:
        fraction = fractions[keys[0]]
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"prune fraction for '{keys[0]}' must be in [0, 1), got {fraction}")
        pool_scores = tf.concat([scores[k] for k in keys], 0)
        pool_masks = tf.concat([flat_masks[k] for k in keys], 0)
        n_drop = prune_count(int(tf.reduce_sum(pool_masks)), fraction)
        pool_new = _drop_lowest(pool_scores, pool_masks, n_drop)
        for k, part in zip(keys, tf.split(pool_new, [int(tf.size(flat_masks[k])) for k in keys])):
            new[k] = part
    return {k: tf.reshape(new[k], tf.shape(masks[k])) for k in masks}


def random_like(masks, seed=0):
    """Random masks with exactly as many ones per tensor as `masks` (the random-pruning control)."""
    result = {}
    for i, (k, m) in enumerate(sorted(masks.items())):
        flat = _flat_float(m)
        n_drop = int(tf.size(flat)) - int(tf.reduce_sum(flat))
        scores = tf.random.stateless_uniform(tf.shape(flat), seed=[seed, i])
        result[k] = tf.reshape(_drop_lowest(scores, tf.ones_like(flat), n_drop), tf.shape(m))
    return result
