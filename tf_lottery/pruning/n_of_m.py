"""The N:M structure: keep the n largest of every m consecutive input weights, then prune within that."""

import dataclasses
from typing import ClassVar

from etils import epy

from tf_lottery.pruning import views
from tf_lottery.pruning.structures import STRUCTURES, Unstructured

with epy.lazy_imports():
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils


def n_of_m_mask(weight, mask, n, m):
    """Keeps the n largest surviving magnitudes of every m consecutive weights along the input axis."""
    by_input, perm = views.input_major(views.magnitude(weight, mask))
    keep = pruning_utils.generate_m_by_n_mask(tf.transpose(by_input), (m - n, m))
    return views.from_input_major(tf.transpose(keep), mask.shape, perm) * tf.cast(mask, tf.float32)


def n_of_m_violations(mask, n, m):
    """How many groups of m consecutive weights along the input axis keep more than n."""
    by_input, _ = views.input_major(tf.cast(mask, tf.float32))
    rows = tf.transpose(by_input)
    pad = (-rows.shape[-1]) % m
    groups = tf.reshape(tf.pad(rows, [[0, 0], [0, pad]]), [-1, m])
    return int(tf.reduce_sum(tf.cast(tf.reduce_sum(groups, 1) > n, tf.int32)))


@STRUCTURES.register("n_of_m")
@dataclasses.dataclass(frozen=True)
class NOfM(Unstructured):
    """N:M: each group of m consecutive input weights keeps its n largest, then single weights are pruned.

    The groups run along the input axis, as in TF-MOT: axis -2 of a [..., in,
    out] kernel, the last axis of a transposed convolution's (..., out, in)
    kernel (named Transposed('n_of_m')).
    """
    n: int = 2
    m: int = 4
    global_scope: ClassVar[bool] = False

    def __post_init__(self):
        if not 0 < self.n < self.m:
            raise ValueError(f"n_of_m must be N,M with 0 < N < M, got {(self.n, self.m)}")

    @classmethod
    def from_options(cls, **options):
        return cls(*options["n_of_m"]) if "n_of_m" in options else cls()

    def impose(self, weight, mask):
        """The N:M mask while `mask` does not follow the pattern yet, else None."""
        weight, mask = self.view(weight), self.view(mask)
        if n_of_m_violations(mask, self.n, self.m):
            return self.view(n_of_m_mask(weight, mask, self.n, self.m))
        return None

    @property
    def unit_structure(self):
        return Unstructured()
