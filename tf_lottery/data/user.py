"""The user's own data for the library path: NumPy arrays or tf.data pipelines as a split kind."""

import dataclasses
import hashlib
from typing import ClassVar

import numpy as np
from etils import epy

from tf_lottery.data import structure
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
    binaries and studies do). The first 1,000 examples of each pipeline
    (what the checks, the fingerprint and the test sample read) are read
    once, by one iterator.
    """

    streamed: ClassVar[bool] = True
    variable_batches: ClassVar[bool] = True

    name: str
    train: object
    validation: object = None
    test: object = None
    num_classes: int | None = None
    _first: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def input_shape(self):
        """The shape of one example's inputs (a list or dict of shapes for several inputs)."""
        return structure.map_arrays(lambda spec: tuple(spec.shape[1:]), self.train.element_spec[0])

    @property
    def train_size(self):
        """Training examples per pass, if the pipeline says (batches times batch size), else None."""
        batches = int(self.train.cardinality())
        batch = self.train.element_spec[1].shape[0] if self.train.element_spec[1].shape.rank else None
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
        """(float32 inputs, labels) of the first `limit` test examples (default 1,000), as numpy;
        None without a test pipeline."""
        return None if self.test is None else _examples(self.first_batches("test", limit), limit)

    def first_batches(self, split, limit=None):
        """The first batches of the 'train', 'validation' or 'test' pipeline as numpy (inputs, labels),
        until they hold `limit` examples (default and at most 1,000); [] for an empty pipeline."""
        limit = min(limit or _FIRST_EXAMPLES, _FIRST_EXAMPLES)
        if split not in self._first:
            self._first[split] = read_batches(getattr(self, split), _FIRST_EXAMPLES)
        batches, count = [], 0
        for batch in self._first[split]:
            if count >= limit:
                break
            batches.append(batch)
            count += len(batch[1])
        return batches


@dataclasses.dataclass(frozen=True)
class ArraySplits(Splits):
    """The user's NumPy data for a model of several inputs: each x is a list or dict of arrays (one
    per model input, examples first), used as given and cast to float32, like Splits(scaled=True)."""

    @property
    def input_shape(self):
        """The shape of one example's inputs, as a list or dict of shapes."""
        return structure.map_arrays(lambda array: tuple(array.shape[1:]), self.train_x)

    def test_arrays(self, limit=None):
        """(float32 inputs, labels) of the first `limit` test examples."""
        return (structure.map_arrays(lambda array: array[:limit].astype(np.float32), self.test_x),
                np.asarray(self.test_y[:limit]))


def read_batches(dataset, limit):
    """The first (inputs, labels) batches of a pipeline, as numpy, until they hold `limit` examples."""
    batches, count = [], 0
    for x, y in dataset.as_numpy_iterator():
        batches.append((x, y))
        count += len(y)
        if count >= limit:
            break
    return batches


def _examples(batches, limit=None):
    """(float32 inputs, labels) of the first `limit` examples of some batches, as numpy; inputs keep
    their structure (one array, or a list or dict of arrays)."""
    xs, ys = zip(*batches)
    inputs = [np.concatenate(parts)[:limit].astype(np.float32) for parts in zip(*map(structure.leaves, xs))]
    return tf.nest.pack_sequence_as(xs[0], inputs), np.concatenate(ys)[:limit]


def _inputs(x, argument, model_inputs, examples):
    """x as the model takes it: one array, or a list or dict of arrays for a model of several inputs
    (a list or tuple for a model of one input is a list of examples, as NumPy reads it)."""
    if isinstance(x, dict):
        return {name: np.asarray(value) for name, value in x.items()}
    if isinstance(x, (list, tuple)):
        if not structure.is_single(model_inputs):
            return [np.asarray(value) for value in x]
        if len(x) != examples and all(isinstance(v, np.ndarray) and v.ndim and len(v) == examples
                                      for v in x):
            raise ValueError(f"{argument}: the model takes one input, got a list of {len(x)} arrays")
    return np.asarray(x)


def _pair(value, argument, model_inputs=None):
    if not (isinstance(value, tuple) and len(value) == 2):
        raise TypeError(f"{argument} must be a tf.data.Dataset of (inputs, labels) batches or a NumPy "
                        f"(x, y) pair, got {type(value).__name__}")
    y = np.asarray(value[1])
    x = _inputs(value[0], argument, model_inputs, len(y) if y.ndim else 0)
    if isinstance(x, (list, dict)):
        names = sorted(x) if isinstance(x, dict) else range(len(x))
        for name in names:
            if x[name].ndim == 0 or len(x[name]) != len(y):
                size = len(x[name]) if x[name].ndim else 0
                where = f"'{name}'" if isinstance(x, dict) else name
                raise ValueError(f"{argument}: input {where} of x has {size} examples and y has {len(y)}")
    elif x.ndim == 0 or len(x) != len(y):
        raise ValueError(f"{argument}: x has {len(x) if x.ndim else 0} examples and y has {len(y)}")
    if not len(y):
        raise ValueError(f"{argument}: no examples")
    return x, y


def as_splits(train_data, validation_data=None, test_data=None, model_inputs=None):
    """The split kind the Trainer reads, from what the user passes to run_rounds.

    `train_data` is a data.Splits or StreamedSplits (then the other two must
    be None), a tf.data.Dataset of (inputs, labels) batches (the other two
    pipelines too, or None), or a NumPy (x, y) pair (the other two pairs
    too, or None). NumPy inputs are used as given, cast to float32; for a
    model of several inputs (`model_inputs`, from structure.model_inputs)
    x is a list or dict of arrays, one per input.
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
    train_x, train_y = _pair(train_data, "train_data", model_inputs)
    empty = (structure.map_arrays(lambda array: array[:0], train_x), train_y[:0])
    val_x, val_y = (_pair(validation_data, "validation_data", model_inputs) if validation_data is not None
                    else empty)
    test_x, test_y = _pair(test_data, "test_data", model_inputs) if test_data is not None else empty
    classes = int(train_y.max()) + 1 if train_y.ndim == 1 and np.issubdtype(train_y.dtype, np.integer) \
        else None
    return _in_memory("user data", (train_x, train_y), (val_x, val_y), (test_x, test_y), classes)


def _in_memory(name, train, validation, test, classes):
    kind = Splits if structure.is_single(train[0]) else ArraySplits
    return kind(name, *train, *validation, *test, classes, 0.0, 1.0, scaled=True)


def test_only(x, y, name="test sample"):
    """Splits of test examples only (x one array, or a list or dict of arrays), as a folder's test
    sample is read back."""
    empty = (structure.map_arrays(lambda array: array[:0], x), y[:0])
    return _in_memory(name, empty, empty, (x, y), None)


def fingerprint(splits):
    """A short hash of the data: array bytes in memory, or a pipeline's spec and first examples."""
    digest = hashlib.sha256()
    if isinstance(splits, Splits):
        arrays = (splits.train_x, splits.train_y, splits.val_x, splits.val_y, splits.test_x,
                  splits.test_y)
        for array in structure.leaves(list(arrays)):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(repr(splits.normalization).encode())
    elif isinstance(splits, DatasetSplits):
        for split in ("train", "validation", "test"):
            dataset = getattr(splits, split)
            if dataset is None:
                digest.update(b"none")
                continue
            digest.update(repr(dataset.element_spec).encode())
            for array in structure.leaves(_examples(splits.first_batches(split, 64), 64)):
                digest.update(np.ascontiguousarray(array).tobytes())
    else:
        digest.update(f"{splits.name}:{splits.train_size}:{splits.validation_size}".encode())
    return digest.hexdigest()[:16]
