"""Input for the trainer: in-memory splits with a seeded resumable order, streamed splits, eval batches."""

import tensorflow as tf


def sources(splits, config):
    """(training source, validation batches, test batches) of any split kind.

    A split kind (data.Splits, data.StreamedSplits, ...) with `streamed` set hands over
    tf.data pipelines (`train_batches`, `eval_batches`); the others hold uint8 arrays
    (train_x ... test_y) with `mean` and `std`.
    """
    if splits.streamed:
        return (StreamSource(splits.train_batches),
                splits.eval_batches("validation", config.eval_batch_size),
                splits.eval_batches("test", config.eval_batch_size))
    scaled = splits.scaled
    train = ArraySource(splits.train_x, splits.train_y, splits.mean, splits.std,
                        augment=config.augment, seed=config.data_seed, scaled=scaled)
    val = ArraySource(splits.val_x, splits.val_y, splits.mean, splits.std, scaled=scaled)
    test = ArraySource(splits.test_x, splits.test_y, splits.mean, splits.std, scaled=scaled)
    return (train, val.eval_batches(config.eval_batch_size) or None,
            test.eval_batches(config.eval_batch_size))


class StreamSource:
    """Training batches from a tf.data pipeline too large to hold (ImageNet), prepared outside the step.

    A stream cannot jump to a batch, so it is not `seekable`: the trainer
    checkpoints the iterator's position with the model instead.
    """

    seekable = False

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
    than the step itself for small networks.
    """

    seekable = True

    def __init__(self, images, labels, mean=0.0, std=1.0, augment=False, seed=0, scaled=False):
        self.size = int(images.shape[0])
        self.scaled = scaled
        self.images = tf.constant(images)
        self.labels = tf.constant(labels)
        self.mean = float(mean)
        self.std = float(std)
        self.augment = augment
        self.seed = seed

    def normalize(self, images):
        """uint8 images to float32, scaled to [0, 1] then standardised; scaled inputs only cast."""
        if self.scaled:
            return tf.cast(images, tf.float32)
        return (tf.cast(images, tf.float32) / 255.0 - self.mean) / self.std

    def prepare(self, indices, step=None):
        """(normalised images, labels) of the examples at `indices`, augmented for batch `step` if on."""
        images = self.normalize(tf.gather(self.images, indices))
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
        if self.size < batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.size} training examples")
        first_epoch, offset = divmod(start_step * batch_size, self.size)
        n = self.size

        def epoch_order(epoch):
            keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
            return tf.data.Dataset.from_tensor_slices(tf.argsort(keys, stable=True))

        return (tf.data.Dataset.range(first_epoch, 2**62)
                .flat_map(epoch_order)
                .skip(offset)
                .batch(batch_size, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))

    def eval_batches(self, batch_size):
        """The whole split as a list of normalised (images, labels) batches, in order."""
        return [(self.normalize(self.images[i:i + batch_size]), self.labels[i:i + batch_size])
                for i in range(0, self.size, batch_size)]


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
