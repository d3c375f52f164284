"""Scopes (sparsity distributions): which tensors share one pruning threshold, and how much each keeps.

A scope is a pool function; one with a `distribution` also turns an overall
density into per-tensor densities (ERK), which the schedules use instead of
the per-tensor rates.
"""

import collections
import math

from tf_lottery.registry import Registry

SCOPES = Registry("scope")

# One tensor to prune: its fraction or density, the structure name asked for and its unit structure spec.
Tensor = collections.namedtuple("Tensor", "amount name structure")


@SCOPES.register("layer")
def layer_pools(tensors):
    """Each tensor on its own."""
    return [[key] for key in sorted(tensors)]


@SCOPES.register("global")
def global_pools(tensors):
    """One threshold over each pool of tensors with the same amount and structure."""
    pools = {}
    for key in sorted(tensors):
        amount, name, structure = tensors[key]
        if not structure.global_scope:
            raise ValueError(f"global scope does not apply to structure '{name}' ('{key}')")
        pools.setdefault((amount, structure), []).append(key)
    return list(pools.values())


@SCOPES.register("erk", help="Erdos-Renyi-Kernel (Evci et al. 2020): each tensor keeps a density "
                             "proportional to (sum of its dimensions) / (its size), scaled to the "
                             "overall density, dense where that exceeds 1")
def erk_pools(tensors):
    """Each tensor on its own, at its ERK density."""
    return layer_pools(tensors)


def erk_densities(shapes, density):
    """{key: density} of ERK for kernels of `shapes` keeping `density` of their weights overall.

    The raw score of a kernel is sum(shape) / prod(shape) (a dense layer's
    (n_in + n_out) / (n_in * n_out); a convolution's adds its kernel size);
    densities are epsilon * score with one epsilon for all, and a tensor whose
    density would exceed 1 is kept dense and the rest rescaled.
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    sizes = {k: math.prod(shape) for k, shape in shapes.items()}
    scores = {k: sum(shape) / sizes[k] for k, shape in shapes.items()}
    dense, budget = set(), density * sum(sizes.values())
    while True:
        free = [k for k in shapes if k not in dense]
        if not free:
            return {k: 1.0 for k in shapes}
        epsilon = (budget - sum(sizes[k] for k in dense)) / sum(scores[k] * sizes[k] for k in free)
        over = [k for k in free if epsilon * scores[k] > 1]
        if not over:
            return {k: 1.0 if k in dense else epsilon * scores[k] for k in shapes}
        dense.update(over)


erk_pools.distribution = erk_densities
