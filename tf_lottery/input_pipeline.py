"""Input for the trainer: in-memory splits with a seeded resumable order, streamed splits, eval batches.

The tensors of an in-memory Splits object are made once per process and
shared by every Trainer built on it (the experiment, its controls, `lmc`,
`rewind_search`), as uint8 images: normalisation happens in the compiled
training step and evaluation.
"""

import weakref

import tensorflow as tf

_SHARED = {}  # id(splits) -> {split: (images, labels) tensors}, dropped with the splits object


def sources(splits, config):
    """(training source, validation, test) of any split kind.

    A split kind (data.Splits, data.StreamedSplits, ...) with `streamed` set
    hands over tf.data pipelines (`train_batches`, `eval_batches`): validation
    and test are then pipelines of (images, labels) batches, or None. The
    others hold uint8 arrays (train_x ... test_y) with `mean` and `std`:
    validation and test are then ArraySources (None if empty).
    """
    if splits.streamed:
        return (StreamSource(splits.train_batches),
                splits.eval_batches("validation", config.eval_batch_size),
                splits.eval_batches("test", config.eval_batch_size))
    tensors = shared_tensors(splits)
    normalization = splits.normalization
    options = {"mean": normalization["mean"], "std": normalization["std"], "scaled": splits.scaled,
               "unit_norm": getattr(splits, "scaling", None) == "unit_norm"}
    train = ArraySource(*tensors["train"], augment=config.augment, seed=config.data_seed, **options)
    val, test = (ArraySource(*tensors[name], **options) for name in ("val", "test"))
    return train, val if val.size else None, test if test.size else None


def shared_tensors(splits):
    """{'train' | 'val' | 'test': (images, labels)} of `splits` as tensors, made once per object
    (images keep their structure: one tensor, or a list or dict of them for several inputs)."""
    key = id(splits)
    if key not in _SHARED:
        _SHARED[key] = {name: tuple(tf.nest.map_structure(tf.constant, getattr(splits, f"{name}_{part}"))
                                    for part in "xy")
                        for name in ("train", "val", "test")}
        weakref.finalize(splits, _SHARED.pop, key, None)
    return _SHARED[key]


def epoch_permutation(size, seed, epoch):
    """The order in which epoch `epoch` visits `size` examples: a permutation drawn from (seed, epoch)."""
    keys = tf.random.stateless_uniform([size], seed=tf.stack([tf.cast(seed, tf.int64),
                                                              tf.cast(epoch, tf.int64)]))
    return tf.argsort(keys, stable=True)


class StreamSource:
    """Training batches from a tf.data pipeline too large to hold (ImageNet), prepared outside the step.

    A stream cannot jump to a batch, so it is not `seekable`: the trainer
    checkpoints the iterator's position with the model instead.
    """

    seekable = False
    in_memory = False

    def __init__(self, make_batches):
        self._make_batches = make_batches

    def batches(self, batch_size, seed, start_step=0):
        """The stream's batches (in an order fixed by `seed`); `start_step` must be 0."""
        if start_step:
            raise ValueError("a streamed source resumes from its checkpointed iterator, not a step")
        return self._make_batches(batch_size, seed)

    def prepare(self, batch, step=None):
        """The batch as the model takes it: already (images, labels)."""
        return batch


class ArraySource:
    """A split held in memory as tensors; training batches are gathered by index in the step.

    Keeping the images as uint8 and gathering (and normalising) inside the
    compiled training step avoids a per-batch tf.data map, which costs more
    than the step itself for small networks. The inputs of a model of
    several inputs (already scaled) are a list or dict of tensors.
    """

    seekable = True
    in_memory = True

    def __init__(self, images, labels, mean=0.0, std=1.0, augment=False, seed=0, scaled=False,
                 unit_norm=False):
        self.images = tf.nest.map_structure(tf.convert_to_tensor, images)
        self.size = int(tf.nest.flatten(self.images)[0].shape[0])
        self.scaled = scaled
        self.unit_norm = unit_norm
        self.labels = tf.convert_to_tensor(labels)
        self.mean = float(mean)
        self.std = float(std)
        self.augment = augment
        self.seed = seed
        self._permutations = {}
        self._eval_constants = tuple(tf.constant(v, tf.float32) for v in (255.0, self.mean, self.std))

    def normalize(self, images):
        """uint8 images to float32, scaled to [0, 1] then standardised (or each to unit L2 norm);
        scaled inputs only cast."""
        if self.scaled:
            return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), images)
        if self.unit_norm:
            return unit_norm(tf.cast(images, tf.float32))
        return (tf.cast(images, tf.float32) / 255.0 - self.mean) / self.std

    def prepare(self, indices, step=None):
        """(normalised images, labels) of the examples at `indices`, augmented for batch `step` if on."""
        images = self.normalize(tf.nest.map_structure(lambda t: tf.gather(t, indices), self.images))
        if self.augment:
            images = pad_crop_flip(images, tf.stack([tf.cast(self.seed, tf.int64),
                                                     tf.cast(step, tf.int64)]))
        return images, tf.gather(self.labels, indices)

    def batches(self, batch_size, seed, start_step=0):
        """Endless batches of example indices in an order that depends only on (seed, step).

        Epoch e visits the examples in the permutation drawn from seed (seed, e);
        epochs are concatenated and cut into batches, so batch i holds stream
        positions [i*B, (i+1)*B). Starting at `start_step` resumes that exact
        order without replaying earlier batches.
        """
        self._check_batch_size(batch_size)
        first_epoch, offset = divmod(start_step * batch_size, self.size)

        def epoch_order(epoch):
            return tf.data.Dataset.from_tensor_slices(epoch_permutation(self.size, seed, epoch))

        return (tf.data.Dataset.range(first_epoch, 2**62)
                .flat_map(epoch_order)
                .skip(offset)
                .batch(batch_size, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))

    def order(self, batch_size, seed, start_step, steps, length):
        """The example indices of batches start_step .. start_step+steps-1 of `batches`, one after
        another (a flat int32 tensor), padded with zeros to `length` batches.

        Each epoch's permutation is drawn once and kept while it is in use.
        """
        self._check_batch_size(batch_size)
        position, end = start_step * batch_size, (start_step + steps) * batch_size
        parts = []
        while position < end:
            epoch, offset = divmod(position, self.size)
            take = min(self.size - offset, end - position)
            parts.append(self._permutation(seed, epoch)[offset:offset + take])
            position += take
        parts.append(tf.zeros([(length - steps) * batch_size], tf.int32))
        return tf.concat(parts, 0)

    def _permutation(self, seed, epoch):
        key = (int(seed), epoch)
        if key not in self._permutations:
            self._permutations = {k: v for k, v in self._permutations.items() if k[1] >= epoch - 1}
            self._permutations[key] = epoch_permutation(self.size, seed, epoch)
        return self._permutations[key]

    def _check_batch_size(self, batch_size):
        if self.size < batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.size} training examples")

    def eval_batches(self, batch_size):
        """The whole split in order, as (normalised images, labels) batches made as they are read."""
        for start in range(0, self.size, batch_size):
            yield (self.normalize(tf.nest.map_structure(lambda t: t[start:start + batch_size], self.images)),
                   self.labels[start:start + batch_size])

    def eval_slice(self, start, size):
        """(normalised images, labels) of examples start .. start+size-1 (`size` static), for a
        tf.function; numbers exactly as `eval_batches` makes them eagerly.

        The normalisation constants enter as captured tensors: as graph
        constants, graph optimisation would rewrite the divisions and change
        the last bits.
        """
        divisor, mean, std = self._eval_constants
        images = tf.nest.map_structure(lambda t: tf.cast(_rows(t, start, size), tf.float32), self.images)
        labels = _rows(self.labels, start, size)
        if self.unit_norm:
            return unit_norm(images), labels
        return (images if self.scaled else (images / divisor - mean) / std), labels


def _rows(tensor, start, size):
    """Rows start .. start+size-1 of `tensor` (`size` static)."""
    return tf.slice(tensor, tf.stack([start] + [0] * (tensor.shape.rank - 1)),
                    [size] + tensor.shape[1:].as_list())


def unit_norm(images):
    """Each image divided by its L2 norm over all its pixels (an all-zero image stays zero)."""
    norms = tf.sqrt(tf.reduce_sum(tf.square(images), axis=list(range(1, images.shape.rank)),
                                  keepdims=True))
    return images / tf.where(norms > 0, norms, tf.ones_like(norms))


def pad_crop_flip(images, seed, pad=4):
    """The standard CIFAR augmentation: zero-pad by `pad`, crop back at a random place, random flip.

    Each image gets its own offsets and flip, drawn statelessly from `seed`,
    so a resumed run augments exactly like an uninterrupted one.
    """
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([batch, 2], seed=seed, maxval=2 * pad + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    cropped = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    return tf.image.stateless_random_flip_left_right(cropped, flip_seed)
