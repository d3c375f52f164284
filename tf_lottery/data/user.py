"""The user's own data for the library path: NumPy arrays or tf.data pipelines as a split kind."""

import dataclasses
import hashlib
from typing import ClassVar

import numpy as np
from etils import epy

from tf_lottery.data.splits import Splits
from tf_lottery.data.imagenet import StreamedSplits

with epy.lazy_imports():
    import tensorflow as tf

_FIRST_EXAMPLES = 1000  # what test_arrays() and the fingerprint read of a pipeline


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
    """Training, validation and test tf.data pipelines of (inputs, labels) batches, as the user made them.

    The training pipeline is repeated for as many iterations as a round
    trains; each element is one batch (its size may vary: the loss is the
    batch mean, as in `fit`). The iterator's position is checkpointed with
    the model, so a pipeline must be checkpointable (from_tensor_slices,
    map, shuffle with a seed, batch, ...; not from_generator) to resume.
    A pipeline that reshuffles every epoch (tf.data's default) draws each
    epoch's order from a seed generator that TensorFlow shares between
    pipelines with the same seeds in one process: two runs in one process
    may then see different orders. For bit-identical reruns use
    `reshuffle_each_iteration=False` or one process per run (as the
    binaries and studies do).
    """

    streamed: ClassVar[bool] = True
    variable_batches: ClassVar[bool] = True

    name: str
    train: object
    validation: object = None
    test: object = None
    num_classes: int | None = None

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train.element_spec[0].shape[1:])

    @property
    def train_size(self):
        """Training examples per pass, if the pipeline says (batches times batch size), else None."""
        batches = int(self.train.cardinality())
        batch = self.train.element_spec[0].shape[0]
        return batches * batch if batches > 0 and batch else None

    @property
    def normalization(self) -> dict:
        return {"formula": "as the pipeline gives it", "mean": 0.0, "std": 1.0}

    def train_batches(self, batch_size, seed):
        """The training pipeline, endless (batch_size and seed are the pipeline's own)."""
        return self.train.repeat()

    def eval_batches(self, split, batch_size):
        """One pass over the 'validation' or 'test' pipeline (None if not given)."""
        return self.validation if split == "validation" else self.test

    def test_arrays(self, limit=None):
        """(float32 inputs, labels) of the first `limit` test examples (default 1,000), as numpy."""
        return _first_examples(self.test, limit or _FIRST_EXAMPLES)


def _first_examples(dataset, limit):
    xs, ys, count = [], [], 0
    for x, y in dataset.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
        count += len(y)
        if count >= limit:
            break
    return np.concatenate(xs)[:limit].astype(np.float32), np.concatenate(ys)[:limit]


def _pair(value, argument):
    if not (isinstance(value, tuple) and len(value) == 2):
        raise TypeError(f"{argument} must be a tf.data.Dataset of (inputs, labels) batches or a NumPy "
                        f"(x, y) pair, got {type(value).__name__}")
    x, y = (np.asarray(v) for v in value)
    if len(x) != len(y):
        raise ValueError(f"{argument}: x has {len(x)} examples and y has {len(y)}")
    if not len(x):
        raise ValueError(f"{argument}: no examples")
    return x, y


def as_splits(train_data, validation_data=None, test_data=None):
    """The split kind the Trainer reads, from what the user passes to run_rounds.

    `train_data` is a data.Splits or StreamedSplits (then the other two must
    be None), a tf.data.Dataset of (inputs, labels) batches (the other two
    pipelines too, or None), or a NumPy (x, y) pair (the other two pairs
    too, or None). NumPy inputs are used as given, cast to float32.
    """
    if isinstance(train_data, (Splits, StreamedSplits, DatasetSplits)):
        if validation_data is not None or test_data is not None:
            raise ValueError("validation_data and test_data come inside the Splits; pass None")
        return train_data
    if isinstance(train_data, tf.data.Dataset):
        for value, argument in ((validation_data, "validation_data"), (test_data, "test_data")):
            if value is not None and not isinstance(value, tf.data.Dataset):
                raise TypeError(f"{argument} must be a tf.data.Dataset like train_data, "
                                f"got {type(value).__name__}")
        if not (isinstance(train_data.element_spec, tuple) and len(train_data.element_spec) == 2):
            raise ValueError("train_data must yield (inputs, labels) batches, got elements "
                             f"{train_data.element_spec}")
        return DatasetSplits("user data", train_data, validation_data, test_data)
    train_x, train_y = _pair(train_data, "train_data")
    empty = (train_x[:0], train_y[:0])
    val_x, val_y = _pair(validation_data, "validation_data") if validation_data is not None else empty
    test_x, test_y = _pair(test_data, "test_data") if test_data is not None else empty
    classes = int(train_y.max()) + 1 if train_y.ndim == 1 and np.issubdtype(train_y.dtype, np.integer) \
        else None
    return Splits("user data", train_x, train_y, val_x, val_y, test_x, test_y, classes, 0.0, 1.0,
                  scaled=True)


def fingerprint(splits):
    """A short hash of the data: array bytes in memory, or a pipeline's spec and first examples."""
    digest = hashlib.sha256()
    if isinstance(splits, Splits):
        arrays = (splits.train_x, splits.train_y, splits.val_x, splits.val_y, splits.test_x,
                  splits.test_y)
        for array in arrays:
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(repr(splits.normalization).encode())
    elif isinstance(splits, DatasetSplits):
        for dataset in (splits.train, splits.validation, splits.test):
            if dataset is None:
                digest.update(b"none")
                continue
            digest.update(repr(dataset.element_spec).encode())
            for array in _first_examples(dataset, 64):
                digest.update(np.ascontiguousarray(array).tobytes())
    else:
        digest.update(f"{splits.name}:{splits.train_size}:{splits.validation_size}".encode())
    return digest.hexdigest()[:16]
