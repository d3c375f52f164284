"""The image folder split kinds and registered datasets: ImageFolder, StreamedImageFolder and Cifar10Jpeg."""

import dataclasses
import pathlib

import numpy as np
from absl import logging
from etils import epy

from tf_lottery.data.image_decoding import _decoder, decode_all, image_sizes
# TEST_SPLIT_SEED is re-exported: the docs and tests name image_folder.TEST_SPLIT_SEED.
from tf_lottery.data.image_files import TEST_SPLIT_SEED, ImageLimits, _source, list_images
from tf_lottery.data.imagenet import StreamedSplits
from tf_lottery.data.splits import REGISTRY, DataError, hold_out, pixel_stats

with epy.lazy_imports():
    import tensorflow as tf

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _validation_split(name, count, validation_size, seed):
    """(kept, held-out) training indices, both sorted: the same choice data.hold_out makes."""
    if not 0 <= validation_size < count:
        raise DataError(f"validation_size={validation_size} is out of range: dataset '{name}' has {count} "
                        f"training examples, so it must be at least 0 and below {count}")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[validation_size:]), np.sort(order[:validation_size])


@dataclasses.dataclass(frozen=True)
class StreamedImageFolder(StreamedSplits):
    """An image folder too large to hold decoded, read and decoded batch by batch.

    A StreamedSplits, so whatever takes ImageNet's streamed splits takes it;
    images are normalised with a scalar mean and std as in memory (measured
    on up to `stats_sample` training images), without augmentation. The
    training order is a fresh permutation per epoch, fixed by the seed.
    """

    shape: tuple = ()
    class_names: tuple = ()
    source: object = None
    files: tuple = ()  # (members, labels) of train, validation and test, as tuples
    resize: int | None = None
    mean: float = 0.0
    std: float = 1.0

    @property
    def input_shape(self) -> tuple:
        return tuple(self.shape)

    @property
    def normalization(self) -> dict:
        return {"formula": "(uint8 / 255 - mean) / std", "mean": self.mean, "std": self.std}

    def _batches(self, split, order, batch_size, drop_remainder=False):
        members, labels = self.files[split]
        labels = tf.constant(labels, tf.int64)
        decode = _decoder(self.shape, self.resize)
        mean, std = self.mean, self.std
        return (self.source.encoded(members)(order)
                .map(lambda encoded, i: (decode(encoded), tf.gather(labels, i)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(batch_size, drop_remainder=drop_remainder)
                .map(lambda x, y: ((tf.cast(x, tf.float32) / 255.0 - mean) / std, y))
                .prefetch(tf.data.AUTOTUNE))

    def train_batches(self, batch_size, seed):
        """Endless training batches; epoch e visits the examples in a permutation drawn from (seed, e)."""
        count = self.train_size

        def epoch_order(epoch):
            keys = tf.random.stateless_uniform([count], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
            return tf.data.Dataset.from_tensor_slices(tf.cast(tf.argsort(keys, stable=True), tf.int64))

        return self._batches(0, tf.data.Dataset.range(2**62).flat_map(epoch_order), batch_size,
                             drop_remainder=True)

    def eval_batches(self, split, batch_size):
        """One pass in order over 'validation' (None if empty) or 'test'."""
        index = 1 if split == "validation" else 2
        count = len(self.files[index][1])
        if not count:
            return None
        return self._batches(index, tf.data.Dataset.range(count), batch_size)

    def test_arrays(self, limit=None):
        """(float32 images normalised as in training, labels) of the first `limit` test examples (1,000)."""
        limit = min(limit or 1000, self.test_size)
        x, y = next(self.eval_batches("test", limit).take(1).as_numpy_iterator())
        return x, y


@REGISTRY.register("image_folder", help="PNG/JPEG files in class folders, train/<class>/ and test/<class>/ "
                                        "or <class>/ (20% held out for test), or a zip of them (--data_dir); "
                                        "--image_size for images of mixed sizes")
class ImageFolder:
    """The generic image folder; subclass and register it to fix classes, shape or other settings.

    input_shape and num_classes are None: they are known once the folder is read.

    Layouts (`data_dir` is the folder, a `.zip` holding the same layout, or a
    folder whose only content is one such zip):

        DIR/train/<class>/<image>   and   DIR/test/<class>/<image>
        DIR/<class>/<image>         (no train/ or test/: the test split is held out, see below)

    A zip may hold the layout below one top-level folder. Labels are the class
    folder names in sorted order (`class_names`); train and test must name the
    same classes. Images are PNG or JPEG (`.png`, `.jpg`, `.jpeg`, any case),
    decoded to `channels` (3: grey images are repeated, alpha is dropped);
    JPEGs with the accurate integer DCT, as PIL and libjpeg decode them by default.

    - Hidden files and folders (names starting with '.', and `__MACOSX`) are
      skipped; files beside the class folders (a README) are ignored. Any other
      file in a class folder that is not named as a PNG or JPEG, a file whose
      header is not a PNG or JPEG one, a folder inside a class folder, an empty
      class folder, fewer than two classes, train and test with different
      classes, pixel data that does not decode, and images of different sizes
      without `image_size` are a DataError naming the file or folder, raised
      before anything trains.
    - Held-out test split: within each class, files sorted by name are put in an
      order drawn from a fixed seed (TEST_SPLIT_SEED and the class's label), and
      the last `test_fraction` (20%, halves rounded up) of that order is the test
      split. It does not depend on the run's seed, so every run tests on the same
      images; the validation split is then held out of the training split with
      the run's seed, as for every dataset.
    - Order: the examples of a split interleave the classes (the first file of
      every class, then the second, ...), so any prefix is balanced.
    - `image_size` applies only when the images differ in size: each is then
      resized to image_size x image_size (bilinear, antialiased). Images that
      all share one size keep it, whatever image_size says; images of different
      sizes with image_size None are an error.
    - `limits` (an ImageLimits: --image_max_bytes, --image_max_ratio,
      --image_max_pixels) bound every file before it is read, a zip member's
      compression ratio by the zip's index, and every image's height x width
      by its header before anything is decoded; a file over a limit is a
      DataError naming it and the flag that raises the limit.
    - Up to `stream_above` bytes of decoded pixels (2 GiB; CIFAR-10 is 184 MB)
      the images are decoded once, in parallel, into uint8 arrays: a normal
      Splits. Larger datasets come as a StreamedImageFolder that reads and
      decodes batch by batch; their headers are checked before training, their pixel data
      only as it is read.
    """

    name = "image_folder"
    input_shape = None  # an expected image shape, or None for any
    num_classes = None
    class_names = ()  # the expected class folders, sorted, or () for any
    channels = 3
    takes_image_size = True
    reads_image_files = True  # data.load passes it the ImageLimits
    needs_test_folder = False  # refuse the held-out layout
    zip_name = None  # the zip to look for in a data_dir folder
    test_fraction = 0.2
    stream_above = 2 * 1024**3  # bytes of decoded pixels above which the dataset is streamed
    stats_sample = 10_000  # training images a streamed dataset's mean and std are measured on

    @classmethod
    def load(cls, data_dir, validation_size, seed=0, image_size=None, limits=ImageLimits()):
        """Splits in memory, or a StreamedImageFolder above `stream_above` decoded bytes."""
        if not cls.takes_image_size:
            image_size = None
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(
                image_size, (int, np.integer)) or image_size < 1):
            raise DataError(f"image_size must be a positive integer or None, got {image_size!r}")
        source = _source(cls.name, data_dir, cls.zip_name, limits)
        names, train, test, has_test = list_images(source, cls.test_fraction)
        if cls.needs_test_folder and not has_test:
            raise DataError(f"{source.where}: dataset '{cls.name}' needs train/ and test/ folders")
        if cls.class_names and names != tuple(cls.class_names):
            raise DataError(f"{source.where}: classes {', '.join(names)}; dataset '{cls.name}' expects "
                            f"{', '.join(cls.class_names)}")
        if not test[0]:
            raise DataError(f"{source.where}: no test images ({cls.test_fraction:.0%} of each class is held "
                            "out, rounded: too few images per class; or give train/ and test/ folders)")
        members = train[0] + test[0]
        sizes = image_sizes(source, members)
        resize = None
        if (sizes != sizes[0]).any():
            if image_size is None:
                other = int(np.argmax((sizes != sizes[0]).any(axis=1)))
                here, first = ("x".join(map(str, sizes[i])) for i in (other, 0))
                raise DataError(f"{source.name(members[other])}: images differ in size ({here} here, {first} "
                                f"in {source.name(members[0])}); pass image_size to resize them")
            resize = image_size
        shape = (resize, resize, cls.channels) if resize else (*map(int, sizes[0]), cls.channels)
        if cls.input_shape and shape != tuple(cls.input_shape):
            raise DataError(f"{source.name(members[0])}: images of shape {shape}; dataset '{cls.name}' "
                            f"expects {tuple(cls.input_shape)}")
        streamed = len(members) * int(np.prod(shape)) > cls.stream_above
        logging.info("%s: %d classes (%s) from %s; %d training and %d test images of %s, %s", cls.name,
                     len(names), ", ".join(names), source.where, len(train[0]), len(test[0]),
                     "x".join(map(str, shape)), "streamed" if streamed else "decoded into memory")
        if streamed:
            return cls._streamed(source, names, train, test, shape, resize, validation_size, seed)
        arrays = (decode_all(source, train[0], shape, resize), train[1],
                  decode_all(source, test[0], shape, resize), test[1])
        splits = hold_out(cls.name, arrays, len(names), validation_size, seed)
        return dataclasses.replace(splits, class_names=names)

    @classmethod
    def _streamed(cls, source, names, train, test, shape, resize, validation_size, seed):
        kept, held = _validation_split(cls.name, len(train[0]), validation_size, seed)
        members, labels = train
        files = tuple((tuple(members[i] for i in part), tuple(int(labels[i]) for i in part))
                      for part in (kept, held))
        sample = kept[np.linspace(0, len(kept) - 1, min(cls.stats_sample, len(kept))).astype(int)]
        mean, std = pixel_stats(decode_all(source, [members[i] for i in sample], shape, resize))
        return StreamedImageFolder(
            name=cls.name, data_dir=pathlib.Path(source.where), train_size=len(kept),
            validation_size=len(held), test_size=len(test[0]), num_classes=len(names),
            image_size=shape[0], shape=shape, class_names=names, source=source,
            files=(*files, (tuple(test[0]), tuple(int(y) for y in test[1]))), resize=resize, mean=mean,
            std=std)


@REGISTRY.register("cifar10_jpeg", help="CIFAR-10 as 32x32 JPEGs in class folders (cifar10_jpeg.zip or the "
                                        "folder holding it, --data_dir); a lossy copy of cifar10")
class Cifar10Jpeg(ImageFolder):
    """CIFAR-10's 50,000 + 10,000 images re-encoded as JPEG: train/<class>/ and test/<class>/ in a zip."""

    name = "cifar10_jpeg"
    input_shape = (32, 32, 3)
    num_classes = 10
    class_names = CIFAR10_CLASSES  # sorted, which is CIFAR-10's label order
    takes_image_size = False
    needs_test_folder = True
    zip_name = "cifar10_jpeg.zip"
