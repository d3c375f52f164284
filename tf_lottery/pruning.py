"""Mask criteria for IMP: which of the remaining weights (or structures) to remove.

All functions take and return {key: tensor} dictionaries and never revive a
pruned weight. Counts are exact: a tensor (or, for global scope, a pool of
tensors) with n remaining units loses round_half_up(fraction * n) of them,
where a unit is a weight, or with a structure an output unit (neuron or
filter), an input channel or a block. Ties in the score are broken by
position (the earlier unit goes first), so the result is deterministic.

TF-MOT supplies the N:M mask generation and the block pooling.
"""

import math

import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

from tf_lottery.config import (CRITERIA, GLOBAL_STRUCTURES, SCOPES, STRUCTURES,  # noqa: F401
                               PruningConfig)


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


def _norm(x, axis, norm):
    return tf.reduce_sum(x, axis) if norm == "l1" else tf.sqrt(tf.reduce_sum(x * x, axis))


def _matrix(x):
    """A kernel [..., out] viewed as [fan_in, out]."""
    return tf.reshape(x, [-1, x.shape[-1]])


def _input_major(x):
    """A kernel [..., in, out] as [in, everything else]; and the permutation used."""
    rank = len(x.shape)
    perm = [rank - 2] + [i for i in range(rank) if i != rank - 2]
    return tf.reshape(tf.transpose(x, perm), [x.shape[-2], -1]), perm


class _Units:
    """The prunable units of one tensor: magnitude scores, which are alive, and the way back."""

    def __init__(self, weight, mask, structure, options):
        self.shape = mask.shape
        self.mask = tf.cast(mask, tf.float32)
        magnitude = tf.abs(tf.cast(weight, tf.float32)) * self.mask
        self.structure = structure
        norm = options["structure_norm"]
        if structure == "unstructured":
            self.scores, self.alive = tf.reshape(magnitude, [-1]), tf.reshape(self.mask, [-1])
        elif structure in ("neuron", "filter"):
            self.scores = _norm(_matrix(magnitude), 0, norm)
            self.alive = tf.reduce_max(_matrix(self.mask), 0)
        elif structure == "channel":
            if len(self.shape) < 2:
                raise ValueError(f"channel pruning needs a kernel of rank >= 2, got shape {self.shape}")
            by_input, self._perm = _input_major(magnitude)
            self.scores = _norm(by_input, 1, norm)
            self.alive = tf.reduce_max(_input_major(self.mask)[0], 1)
        elif structure == "block":
            self._block = tuple(options["block_shape"])
            pooling = options["block_pooling"].upper()
            self.scores, grid = self._pool(_matrix(magnitude), pooling)
            self.alive = tf.reshape(self._pool(_matrix(self.mask), "MAX")[0], [-1])
            self.scores = tf.reshape(self.scores, [-1])
            self._grid = grid
        else:
            raise ValueError(f"unknown structure '{structure}'; choose one of {', '.join(STRUCTURES)}")

    def _pool(self, matrix, pooling):
        """Block scores on a grid anchored at (0, 0); a partial edge block averages only its own weights."""
        rows, cols = matrix.shape
        grid = (-(-rows // self._block[0]), -(-cols // self._block[1]))
        padding = [[0, grid[0] * self._block[0] - rows], [0, grid[1] * self._block[1] - cols]]

        def pool(x, kind):
            return tf.reshape(pruning_utils.factorized_pool(
                tf.pad(x, padding), window_shape=self._block, pooling_type=kind,
                strides=self._block, padding="VALID"), grid)

        if pooling == "MAX":
            return pool(matrix, "MAX"), grid
        return pool(matrix, "AVG") / pool(tf.ones_like(matrix), "AVG"), grid

    def expand(self, unit_mask):
        """A tensor mask from a flat unit mask, multiplied by the old mask (no revival)."""
        if self.structure == "unstructured":
            full = tf.reshape(unit_mask, self.shape)
        elif self.structure in ("neuron", "filter"):
            full = tf.reshape(tf.ones([math.prod(self.shape[:-1]), 1]) * unit_mask[None, :], self.shape)
        elif self.structure == "channel":
            moved = [self.shape[i] for i in self._perm]
            by_input = tf.ones([moved[0], math.prod(moved[1:])]) * unit_mask[:, None]
            full = tf.transpose(tf.reshape(by_input, moved), tf.argsort(self._perm))
        else:
            rows, cols = _matrix(self.mask).shape
            grid = tf.reshape(unit_mask, self._grid)
            full = pruning_utils.expand_tensor(grid, self._block)[:rows, :cols]
            full = tf.reshape(full, self.shape)
        return full * self.mask


def _random_scores(units, seed, index):
    return tf.random.stateless_uniform(tf.shape(units.scores), seed=[seed, index])


def n_of_m_mask(weight, mask, n, m):
    """Keeps the n largest surviving magnitudes of every m consecutive weights along the input axis."""
    magnitude = tf.abs(tf.cast(weight, tf.float32)) * tf.cast(mask, tf.float32)
    by_input, perm = _input_major(magnitude)
    keep = pruning_utils.generate_m_by_n_mask(tf.transpose(by_input), (m - n, m))
    moved = [mask.shape[i] for i in perm]
    full = tf.transpose(tf.reshape(tf.transpose(keep), moved), tf.argsort(perm))
    return full * tf.cast(mask, tf.float32)


def n_of_m_violations(mask, n, m):
    """How many groups of m consecutive weights along the input axis keep more than n."""
    by_input, _ = _input_major(tf.cast(mask, tf.float32))
    rows = tf.transpose(by_input)
    pad = (-rows.shape[-1]) % m
    groups = tf.reshape(tf.pad(rows, [[0, 0], [0, pad]]), [-1, m])
    return int(tf.reduce_sum(tf.cast(tf.reduce_sum(groups, 1) > n, tf.int32)))


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
        scope: 'layer' (each tensor on its own) or 'global' (one threshold over
            each pool of tensors with the same fraction or density).
        criterion: 'magnitude' (smallest first) or 'random' (seeded).
        structure: one of STRUCTURES, or {key: structure} to choose per tensor.
            'n_of_m' imposes the N:M pattern the first time (each group of M
            consecutive input weights keeps its N largest), then prunes
            individual weights within it.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope '{scope}'; choose one of {', '.join(SCOPES)}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown pruning criterion '{criterion}'; choose one of {', '.join(CRITERIA)}")
    if set(weights) != set(masks):
        raise ValueError("weights and masks must have the same keys")
    if (fractions is None) == (densities is None):
        raise ValueError("give exactly one of fractions and densities")
    amounts = fractions if fractions is not None else densities
    structures = structure if isinstance(structure, dict) else {k: structure for k in masks}
    options = {"structure_norm": structure_norm, "block_shape": block_shape,
               "block_pooling": block_pooling}
    new = {k: tf.cast(m, tf.float32) for k, m in masks.items()}
    pending = {}
    for key in sorted(amounts):
        amount = amounts[key]
        if not 0.0 <= amount < 1.0 and fractions is not None:
            raise ValueError(f"prune fraction for '{key}' must be in [0, 1), got {amount}")
        if not 0.0 < amount <= 1.0 and densities is not None:
            raise ValueError(f"target density for '{key}' must be in (0, 1], got {amount}")
        kind = structures[key]
        if kind == "n_of_m":
            n, m = n_of_m
            if n_of_m_violations(masks[key], n, m):
                new[key] = n_of_m_mask(weights[key], masks[key], n, m)
                continue
            kind = "unstructured"
        if scope == "global" and kind not in GLOBAL_STRUCTURES:
            raise ValueError(f"global scope does not apply to structure '{kind}' ('{key}')")
        pending[key] = _Units(weights[key], masks[key], kind, options)
    if scope == "layer":
        pools = [[k] for k in sorted(pending)]
    else:
        by_amount = {}
        for k in sorted(pending):
            by_amount.setdefault((amounts[k], pending[k].structure), []).append(k)
        pools = list(by_amount.values())
    index = {k: i for i, k in enumerate(sorted(masks))}
    for keys in pools:
        units = [pending[k] for k in keys]
        if criterion == "magnitude":
            scores = tf.concat([u.scores for u in units], 0)
        else:
            scores = tf.concat([_random_scores(u, seed, index[k]) for k, u in zip(keys, units)], 0)
        alive = tf.concat([u.alive for u in units], 0)
        remaining, total = int(tf.reduce_sum(alive)), int(tf.size(alive))
        if fractions is not None:
            n_drop = prune_count(remaining, amounts[keys[0]])
        else:
            n_drop = max(0, remaining - (total - prune_count(total, 1.0 - amounts[keys[0]])))
        unit_masks = tf.split(_drop_lowest(scores, alive, n_drop), [int(tf.size(u.alive)) for u in units])
        for k, u, unit_mask in zip(keys, units, unit_masks):
            new[k] = u.expand(unit_mask)
    return {k: tf.reshape(new[k], tf.shape(masks[k])) for k in masks}


def _options(structure_norm="l1", block_shape=(1, 4), block_pooling="avg"):
    return {"structure_norm": structure_norm, "block_shape": block_shape,
            "block_pooling": block_pooling}


def _unit_structure(structure):
    # Within an N:M pattern the remaining pruning is weight by weight.
    return "unstructured" if structure == "n_of_m" else structure


def unit_density(mask, structure="unstructured", **options):
    """Fraction of a tensor's units (weights, neurons, filters, channels or blocks) still alive."""
    units = _Units(mask, mask, _unit_structure(structure), _options(**options))
    return float(tf.reduce_sum(units.alive)) / int(tf.size(units.alive))


def random_like(masks, seed=0, structure="unstructured", **options):
    """Random masks with exactly as many live units per tensor as `masks` (the random-pruning control).

    `structure` (one name or {key: name}) says what a unit is, so a random
    filter mask keeps as many whole filters as the given one.
    """
    structures = structure if isinstance(structure, dict) else {k: structure for k in masks}
    result = {}
    for i, (k, m) in enumerate(sorted(masks.items())):
        mask = tf.cast(m, tf.float32)
        units = _Units(mask, mask, _unit_structure(structures[k]), _options(**options))
        n_drop = int(tf.size(units.alive)) - int(tf.reduce_sum(units.alive))
        scores = tf.random.stateless_uniform(tf.shape(units.alive), seed=[seed, i])
        everything = _Units(tf.ones_like(mask), tf.ones_like(mask), units.structure, _options(**options))
        result[k] = tf.reshape(everything.expand(_drop_lowest(scores, everything.alive, n_drop)),
                               tf.shape(m))
    return result
