"""Pruning masks for IMP, with registries for the structure, criterion and scope axes.

`prune(weights, masks, fractions=... or densities=..., scope=, criterion=,
structure=, ...)` removes part of what each mask keeps; `random_like` and
`unit_density` serve the controls. STRUCTURES, CRITERIA and SCOPES list the
choices (schedules are in tf_lottery.schedules). Importing this package does
not import TensorFlow.
"""

from tf_lottery.pruning.blocks import Block
from tf_lottery.pruning.criteria import CRITERIA
from tf_lottery.pruning.masks import prune, prune_count, random_like, unit_density
from tf_lottery.pruning.n_of_m import NOfM, n_of_m_mask, n_of_m_violations
from tf_lottery.pruning.scopes import SCOPES
from tf_lottery.pruning.structures import (BLOCK_POOLINGS, OPTIONS, STRUCTURE_NORMS, STRUCTURES, Channel,
                                           Filter, Neuron, Structure, Transposed, Unstructured, build)

__all__ = ["BLOCK_POOLINGS", "Block", "CRITERIA", "Channel", "Filter", "NOfM", "Neuron", "OPTIONS", "SCOPES",
           "STRUCTURES", "STRUCTURE_NORMS", "Structure", "Transposed", "Unstructured", "build", "n_of_m_mask",
           "n_of_m_violations", "prune", "prune_count", "random_like", "unit_density"]
