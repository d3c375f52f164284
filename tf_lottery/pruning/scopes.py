"""Scopes (sparsity distributions): which tensors share one pruning threshold."""

import collections

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
