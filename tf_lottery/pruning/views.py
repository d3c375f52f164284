"""Kernel views the structures share: surviving magnitudes, [fan_in, out] and input-major matrices."""

from etils import epy

with epy.lazy_imports():
    import tensorflow as tf


def magnitude(weight, mask):
    """|weight| where `mask` keeps it, 0 elsewhere (float32)."""
    return tf.abs(tf.cast(weight, tf.float32)) * tf.cast(mask, tf.float32)


def matrix(x):
    """A kernel [..., out] viewed as [fan_in, out]."""
    return tf.reshape(x, [-1, x.shape[-1]])


def input_perm(rank):
    """The axis order that puts a kernel's input axis (-2) first."""
    return [rank - 2] + [i for i in range(rank) if i != rank - 2]


def input_major(x):
    """A kernel [..., in, out] as [in, everything else]; and the permutation used."""
    perm = input_perm(len(x.shape))
    return tf.reshape(tf.transpose(x, perm), [x.shape[-2], -1]), perm


def from_input_major(by_input, shape, perm):
    """Undoes `input_major`: an [in, everything else] matrix back to the kernel's `shape`."""
    moved = [shape[i] for i in perm]
    return tf.transpose(tf.reshape(by_input, moved), tf.argsort(perm))
