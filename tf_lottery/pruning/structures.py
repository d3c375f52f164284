"""Structures: what a prunable unit is (a weight, neuron, filter or channel), as typed specs in a registry.

A structure spec is a frozen dataclass built from the options it needs; it
scores the units of a (weight, mask) pair, says which units are alive and
expands a flat unit mask back to the tensor. A new structure is one
subclass registered with `STRUCTURES.register(name)`. Blocks and N:M live
in their own modules.

Kernels are read as [..., in, out]. A transposed convolution stores its
kernel as (..., out, in): named as `Transposed(name)`, a structure sees it
with the last two axes swapped, so a filter is still an output channel.
"""

import dataclasses
import math
from typing import ClassVar

from etils import epy

from tf_lottery.pruning import views
from tf_lottery.registry import Registry

with epy.lazy_imports():
    import tensorflow as tf

STRUCTURES = Registry("structure")
STRUCTURE_NORMS = ("l1", "l2")  # how a neuron, filter or channel sums its magnitudes
BLOCK_POOLINGS = ("avg", "max")  # how a block sums its magnitudes
OPTIONS = ("structure_norm", "block_shape", "block_pooling", "n_of_m")  # prune()'s structure keywords


class Transposed(str):
    """A structure name for a kernel laid out (..., out, in), as Keras' Conv1D/2D/3DTranspose store
    theirs (model_ops.transposed_keys): its spec reads the kernel with the last two axes swapped. It is
    equal to the plain name, so records and configs do not change."""


def build(name, **options):
    """The spec registered as `name`, built from prune()'s structure keywords (OPTIONS)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown structure options {unknown}; the options are {', '.join(OPTIONS)}")
    spec = STRUCTURES.get(name).from_options(**options)
    return dataclasses.replace(spec, transposed=True) if isinstance(name, Transposed) else spec


@dataclasses.dataclass(frozen=True)
class Structure:
    """A type of prunable unit. Subclasses implement unit_scores, unit_alive and spread.

    `global_scope`: whether unit scores compare across tensors (one global
    threshold makes sense). `OPTION_FIELDS` maps prune() keywords to fields.
    `transposed`: the tensor is a kernel laid out (..., out, in), read with
    its last two axes swapped (it does not count in comparisons, so a global
    pool holds transposed and plain kernels alike).
    """
    global_scope: ClassVar[bool] = False
    OPTION_FIELDS: ClassVar[dict] = {}
    transposed: bool = dataclasses.field(default=False, compare=False, kw_only=True)

    @classmethod
    def from_options(cls, **options):
        """The spec from prune()'s structure keywords: it takes the ones it needs."""
        return cls(**{field: options[key] for key, field in cls.OPTION_FIELDS.items() if key in options})

    def view(self, x):
        """The tensor as the units are read, [..., in, out]; its own inverse."""
        return tf.linalg.matrix_transpose(x) if self.transposed else x

    def scores(self, weight, mask):
        """Flat per-unit magnitude scores (>= 0) of the weights `mask` keeps."""
        return self.unit_scores(views.magnitude(self.view(weight), self.view(mask)))

    def alive(self, mask):
        """Flat 0/1 per unit: whether `mask` keeps any of its weights."""
        return self.unit_alive(tf.cast(self.view(mask), tf.float32))

    def expand(self, unit_mask, mask):
        """The tensor mask of a flat 0/1 unit mask, times `mask` (a pruned weight never revives)."""
        mask = tf.cast(self.view(mask), tf.float32)
        return self.view(self.spread(unit_mask, mask.shape) * mask)

    def impose(self, weight, mask):
        """A mask to impose before any unit is pruned (n_of_m's pattern), or None."""
        return None

    @property
    def unit_structure(self):
        """The structure whose units are counted and pruned (n_of_m: single weights)."""
        return self

    def unit_scores(self, magnitude):
        """Flat per-unit scores of a tensor of surviving magnitudes."""
        raise NotImplementedError

    def unit_alive(self, mask):
        """Flat 0/1 per unit of a float 0/1 mask."""
        raise NotImplementedError

    def spread(self, unit_mask, shape):
        """A flat unit mask as a tensor of `shape`."""
        raise NotImplementedError


@STRUCTURES.register("unstructured")
@dataclasses.dataclass(frozen=True)
class Unstructured(Structure):
    """Single weights, by magnitude."""
    global_scope: ClassVar[bool] = True

    def unit_scores(self, magnitude):
        return tf.reshape(magnitude, [-1])

    def unit_alive(self, mask):
        return tf.reshape(mask, [-1])

    def spread(self, unit_mask, shape):
        return tf.reshape(unit_mask, shape)


@dataclasses.dataclass(frozen=True)
class Normed(Structure):
    """Units of many weights scored by the L1 or L2 norm of their surviving magnitudes."""
    norm: str = "l1"
    OPTION_FIELDS: ClassVar[dict] = {"structure_norm": "norm"}

    def __post_init__(self):
        if self.norm not in STRUCTURE_NORMS:
            raise ValueError(f"unknown structure norm {self.norm!r}; "
                             f"choose one of {', '.join(STRUCTURE_NORMS)}")

    def reduce(self, x, axis):
        return tf.reduce_sum(x, axis) if self.norm == "l1" else tf.sqrt(tf.reduce_sum(x * x, axis))


@STRUCTURES.register("neuron")
@dataclasses.dataclass(frozen=True)
class Neuron(Normed):
    """Output units (the last axis of a kernel), by the norm of their incoming weights."""

    def unit_scores(self, magnitude):
        return self.reduce(views.matrix(magnitude), 0)

    def unit_alive(self, mask):
        return tf.reduce_max(views.matrix(mask), 0)

    def spread(self, unit_mask, shape):
        return tf.reshape(tf.ones([math.prod(shape[:-1]), 1]) * unit_mask[None, :], shape)


@STRUCTURES.register("filter")
@dataclasses.dataclass(frozen=True)
class Filter(Neuron):
    """Convolution filters (output channels, the last axis), by the norm of their weights."""


@STRUCTURES.register("channel")
@dataclasses.dataclass(frozen=True)
class Channel(Normed):
    """Input channels (axis -2 of a kernel), by the norm of their outgoing weights."""

    @staticmethod
    def _by_input(x):
        if len(x.shape) < 2:
            raise ValueError(f"channel pruning needs a kernel of rank >= 2, got shape {x.shape}")
        return views.input_major(x)[0]

    def unit_scores(self, magnitude):
        return self.reduce(self._by_input(magnitude), 1)

    def unit_alive(self, mask):
        return tf.reduce_max(self._by_input(mask), 1)

    def spread(self, unit_mask, shape):
        perm = views.input_perm(len(shape))
        by_input = tf.ones([shape[perm[0]], math.prod(shape[i] for i in perm[1:])]) * unit_mask[:, None]
        return views.from_input_major(by_input, shape, perm)
