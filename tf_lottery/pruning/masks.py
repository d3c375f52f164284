"""prune, random_like and unit_density: new masks along a registered structure, criterion and scope.

All functions take and return {key: tensor} dictionaries and never revive a
pruned weight. Counts are exact: a tensor (or, for global scope, a pool of
tensors) with n remaining units loses round_half_up(fraction * n) of them.
Ties in the score are broken by position (the earlier unit goes first), so
the result is deterministic.
"""

import math

import numpy as np
from etils import epy

from tf_lottery.pruning.criteria import CRITERIA
from tf_lottery.pruning.scopes import SCOPES, Tensor
from tf_lottery.pruning.structures import build

with epy.lazy_imports():
    import tensorflow as tf


def prune_count(remaining, fraction):
    """How many of `remaining` units a round removes: fraction * remaining, halves rounded up."""
    return int(math.floor(fraction * remaining + 0.5))


def _drop_lowest(scores, alive, n_drop):
    """New flat 0/1 unit masks: the n_drop lowest-scoring alive units go.

    Scores must be >= 0; dead units are keyed to -1 so they sort first and
    stay dead.
    """
    keyed = tf.where(alive > 0, scores, -tf.ones_like(scores))
    n_dead = int(tf.size(alive)) - int(tf.reduce_sum(alive))
    order = tf.argsort(keyed, stable=True)
    drop = order[: n_dead + n_drop]
    return tf.tensor_scatter_nd_update(
        tf.ones_like(alive), drop[:, None], tf.zeros_like(drop, dtype=alive.dtype))


def _check_amounts(amounts, by_fraction):
    for key in sorted(amounts):
        amount = amounts[key]
        if by_fraction and not 0.0 <= amount < 1.0:
            raise ValueError(f"prune fraction for '{key}' must be in [0, 1), got {amount}")
        if not by_fraction and not 0.0 < amount <= 1.0:
            raise ValueError(f"target density for '{key}' must be in (0, 1], got {amount}")


_SINGULAR = {"fractions": "fraction", "densities": "density"}


def _shape(value):
    return tuple(value.shape) if hasattr(value, "shape") else np.shape(value)


def _check_arguments(weights, masks, amounts, name):
    """Dicts with the same keys, masks of their weights' shapes, amounts for some of those keys."""
    for argument, value in (("weights", weights), ("masks", masks)):
        if not isinstance(value, dict):
            raise TypeError(f"{argument} must be a dict {{key: tensor}}, got {type(value).__name__}")
    if set(weights) != set(masks):
        only = [f"{', '.join(sorted(set(a) - set(b)))} only in {where}"
                for a, b, where in ((weights, masks, "weights"), (masks, weights, "masks"))
                if set(a) - set(b)]
        raise ValueError(f"weights and masks must have the same keys: {'; '.join(only)}")
    if not isinstance(amounts, dict):
        raise TypeError(f"{name} must be a dict {{key: {_SINGULAR[name]}}} over the keys of masks "
                        f"({', '.join(sorted(masks))}), got {type(amounts).__name__} {amounts!r}")
    unknown = sorted(set(amounts) - set(masks), key=str)
    if unknown:
        raise ValueError(f"{name}: {', '.join(map(repr, unknown))} "
                         f"{'is not a key' if len(unknown) == 1 else 'are not keys'} of masks "
                         f"({', '.join(sorted(masks))})")
    for key in sorted(masks):
        mask_shape, weight_shape = _shape(masks[key]), _shape(weights[key])
        if mask_shape != weight_shape:
            raise ValueError(f"masks['{key}'] has shape {mask_shape}, weights['{key}'] has {weight_shape}")


def _n_drop(alive, amount, by_fraction):
    """How many alive units go: a fraction of the remaining, or down to a density of all."""
    remaining, total = int(tf.reduce_sum(alive)), int(tf.size(alive))
    if by_fraction:
        return prune_count(remaining, amount)
    return max(0, remaining - (total - prune_count(total, 1.0 - amount)))


def _per_key(structure, masks):
    return structure if isinstance(structure, dict) else {k: structure for k in masks}


def prune(weights, masks, fractions=None, densities=None, *, scope="layer", criterion="magnitude",
          structure="unstructured", structure_norm="l1", block_shape=(1, 4), block_pooling="avg",
          n_of_m=(2, 4), seed=0):
    """Returns new masks that remove part of what each mask still keeps.

    Args:
        weights: {key: trained weight}; only the magnitudes at surviving positions matter.
        masks: {key: 0/1 current mask}, same keys and shapes.
        fractions: {key: fraction in [0, 1)} of the remaining units to remove.
        densities: instead of fractions, {key: target fraction of all units to keep}
            (a schedule's target); a tensor already that sparse loses nothing.
            Keys in neither are not pruned.
        scope: a name in SCOPES: 'layer' (each tensor on its own) or 'global'
            (one threshold over each pool of tensors with the same fraction or density).
        criterion: a name in CRITERIA: 'magnitude' (smallest first) or 'random' (seeded).
        structure: a name in STRUCTURES, or {key: name} to choose per tensor;
            structure_norm, block_shape, block_pooling and n_of_m build it.
            'n_of_m' imposes the N:M pattern the first time (each group of M
            consecutive input weights keeps its N largest), then prunes
            individual weights within it. Kernels are read as [..., in, out];
            name a transposed convolution's (..., out, in) kernel
            Transposed(name) (model_ops.transposed_keys lists them; run_rounds
            and PruneDuringFit do this themselves).
    """
    pools_of, score = SCOPES.get(scope), CRITERIA.get(criterion)
    if (fractions is None) == (densities is None):
        raise ValueError("give exactly one of fractions and densities")
    by_fraction = fractions is not None
    amounts = fractions if by_fraction else densities
    _check_arguments(weights, masks, amounts, "fractions" if by_fraction else "densities")
    _check_amounts(amounts, by_fraction)
    for key in sorted(masks):
        mask = tf.cast(masks[key], tf.float32)
        if not bool(tf.reduce_all((mask == 0) | (mask == 1))):
            raise ValueError(f"mask for '{key}' holds values other than 0 and 1")
    names = _per_key(structure, masks)
    options = {"structure_norm": structure_norm, "block_shape": block_shape,
               "block_pooling": block_pooling, "n_of_m": n_of_m}
    new = {k: tf.cast(m, tf.float32) for k, m in masks.items()}
    pending = {}
    for key in sorted(amounts):
        spec = build(names[key], **options)
        imposed = spec.impose(weights[key], masks[key])
        if imposed is not None:
            new[key] = imposed
        else:
            pending[key] = Tensor(amounts[key], names[key], spec.unit_structure)
    index = {k: i for i, k in enumerate(sorted(masks))}
    for keys in pools_of(pending):
        specs = [pending[k].structure for k in keys]
        scores = tf.concat([score(s, weights[k], masks[k], seed=seed, index=index[k])
                            for k, s in zip(keys, specs)], 0)
        alive = [s.alive(masks[k]) for k, s in zip(keys, specs)]
        n_drop = _n_drop(tf.concat(alive, 0), amounts[keys[0]], by_fraction)
        unit_masks = tf.split(_drop_lowest(scores, tf.concat(alive, 0), n_drop),
                              [int(tf.size(a)) for a in alive])
        for k, s, unit_mask in zip(keys, specs, unit_masks):
            new[k] = s.expand(unit_mask, masks[k])
    return {k: tf.reshape(new[k], tf.shape(masks[k])) for k in masks}


def unit_density(mask, structure="unstructured", **options):
    """Fraction of a tensor's units (weights, neurons, filters, channels or blocks) still alive."""
    alive = build(structure, **options).unit_structure.alive(mask)
    return float(tf.reduce_sum(alive)) / int(tf.size(alive))


def random_like(masks, seed=0, structure="unstructured", **options):
    """Random masks with exactly as many live units per tensor as `masks` (the random-pruning control).

    `structure` (one name or {key: name}) says what a unit is, so a random
    filter mask keeps as many whole filters as the given one.
    """
    names = _per_key(structure, masks)
    random_scores = CRITERIA.get("random")
    result = {}
    for i, (k, m) in enumerate(sorted(masks.items())):
        mask = tf.cast(m, tf.float32)
        spec = build(names[k], **options).unit_structure
        alive = spec.alive(mask)
        n_drop = int(tf.size(alive)) - int(tf.reduce_sum(alive))
        everything = tf.ones_like(mask)
        scores = random_scores(spec, mask, mask, seed=seed, index=i)
        new = _drop_lowest(scores, spec.alive(everything), n_drop)
        result[k] = tf.reshape(spec.expand(new, everything), tf.shape(m))
    return result
