"""ImageNet streamed from a prepared TFDS folder (split kind StreamedSplits), with ResNet preprocessing."""

import dataclasses
import json
import pathlib
from typing import ClassVar

from etils import epy

from tf_lottery.data.splits import REGISTRY, DataError
from tf_lottery.data.tfds import read_encoded

with epy.lazy_imports():
    import tensorflow as tf

IMAGENET = "imagenet2012"

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per channel, of pixels scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalize_imagenet(image):
    return (image / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def imagenet_train_image(image, seed, image_size=224):
    """Random-resized crop (area 8-100%, aspect 3/4-4/3), random flip, resize, normalise.

    `image` is one uint8 (height, width, 3) tensor and `seed` a shape-(2,)
    integer tensor; the same seed gives the same crop and flip. Returns float32
    (image_size, image_size, 3).
    """
    seed = tf.cast(seed, tf.int64)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    whole_image = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=whole_image, seed=crop_seed, min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    image = tf.image.resize(image, (image_size, image_size), method="bilinear")
    return _normalize_imagenet(tf.ensure_shape(image, (image_size, image_size, 3)))


def imagenet_eval_image(image, image_size=224):
    """Resize the shorter side to 256 * image_size / 224, take the central square crop, normalise.

    `image` is one uint8 (height, width, 3) tensor; returns float32 (image_size, image_size, 3).
    """
    shorter = round(256 * image_size / 224)
    height, width = tf.unstack(tf.shape(image)[:2])
    scale = shorter / tf.cast(tf.minimum(height, width), tf.float64)
    # The shorter side gets exactly `shorter`; rounding only touches the longer one.
    new_height = tf.where(height <= width, shorter,
                          tf.cast(tf.round(tf.cast(height, tf.float64) * scale), tf.int32))
    new_width = tf.where(width < height, shorter,
                         tf.cast(tf.round(tf.cast(width, tf.float64) * scale), tf.int32))
    image = tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear")
    top = (new_height - image_size) // 2
    left = (new_width - image_size) // 2
    image = image[top:top + image_size, left:left + image_size]
    return _normalize_imagenet(tf.ensure_shape(image, (image_size, image_size, 3)))


def _decode(encoded):
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def imagenet_train(data_dir, batch_size, seed, split="train", image_size=224, shuffle_buffer=1000):
    """Endless, shuffled, augmented training batches of ImageNet (normalised float32, int64 labels).

    Files and then a buffer of still-encoded images are shuffled in an order
    fixed by `seed`, and each example gets its own stateless augmentation seed
    drawn from a stream fixed by `seed` (imagenet_train_image).
    """
    train = read_encoded(IMAGENET, data_dir, split, shuffle_seed=seed)
    example_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    return (tf.data.Dataset.zip((train.shuffle(shuffle_buffer, seed=seed).repeat(), example_seeds))
            .map(lambda example, pair: (imagenet_train_image(_decode(example[0]), pair, image_size),
                                        tf.cast(example[1], tf.int64)),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def imagenet_eval(data_dir, batch_size, split="validation", image_size=224):
    """One pass over an ImageNet split in file order, centre-cropped (imagenet_eval_image)."""
    return (read_encoded(IMAGENET, data_dir, split)
            .map(lambda encoded, label: (imagenet_eval_image(_decode(encoded), image_size),
                                         tf.cast(label, tf.int64)),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def imagenet_split_sizes(data_dir) -> dict:
    """{split name: number of examples} from the prepared folder's dataset_info.json (no TensorFlow)."""
    root = pathlib.Path(data_dir) / IMAGENET
    infos = sorted(root.glob("*/dataset_info.json")) if root.is_dir() else []
    if not infos:
        raise DataError(f"dataset '{IMAGENET}': {data_dir} holds no prepared TFDS data (no "
                        f"{IMAGENET}/<version>/dataset_info.json; prepare it with `tfds build "
                        f"{IMAGENET} --manual_dir=...`)")
    path = max(infos, key=lambda p: tuple(int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")))
    try:
        splits = json.loads(path.read_text())["splits"]
        return {split["name"]: sum(int(n) for n in split["shardLengths"]) for split in splits}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a TFDS dataset_info.json ({error})") from None


@dataclasses.dataclass(frozen=True)
class StreamedSplits:
    """ImageNet read from a prepared TFDS folder batch by batch instead of held in memory.

    The validation split is the first `validation_size` examples of TFDS's
    training split (which TFDS stores shuffled), held out from training; the
    test split is ImageNet's official validation set, on which papers report
    ImageNet accuracy.
    """

    streamed: ClassVar[bool] = True

    name: str
    data_dir: pathlib.Path
    train_size: int
    validation_size: int
    test_size: int
    num_classes: int
    image_size: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    @property
    def input_shape(self) -> tuple:
        return (self.image_size, self.image_size, 3)

    @property
    def normalization(self) -> dict:
        return {"formula": "(uint8 / 255 - mean) / std per channel, after resize and centre crop",
                "mean": list(self.mean), "std": list(self.std)}

    def train_batches(self, batch_size, seed):
        """Endless augmented training batches in an order fixed by `seed`."""
        return imagenet_train(self.data_dir, batch_size, seed, split=f"train[{self.validation_size}:]",
                              image_size=self.image_size)

    def eval_batches(self, split, batch_size):
        """One pass over 'validation' (the hold-out; None if empty) or 'test'."""
        if split == "validation":
            if not self.validation_size:
                return None
            return imagenet_eval(self.data_dir, batch_size, split=f"train[:{self.validation_size}]",
                                 image_size=self.image_size)
        return imagenet_eval(self.data_dir, batch_size, image_size=self.image_size)

    def test_arrays(self, limit=None):
        """(float32 images, labels) of the first `limit` test examples (default 1,000), as numpy."""
        limit = limit or 1000
        batches = list(self.eval_batches("test", limit).take(1).as_numpy_iterator())
        return batches[0][0], batches[0][1]


def load_imagenet(data_dir, validation_size, image_size=224) -> StreamedSplits:
    """Checks the prepared TFDS folder and describes the streamed splits; reads no images."""
    if data_dir is None:
        raise DataError(f"dataset '{IMAGENET}' needs --data_dir with a prepared TFDS folder "
                        f"(ImageNet cannot be downloaded automatically)")
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data_dir for dataset '{IMAGENET}' is not a folder")
    sizes = imagenet_split_sizes(data_dir)
    train_count = sizes.get("train", 0)
    if not 0 <= validation_size < train_count:
        raise DataError(f"validation_size={validation_size} is out of range: dataset '{IMAGENET}' "
                        f"has {train_count} training examples")
    return StreamedSplits(name=IMAGENET, data_dir=data_dir, train_size=train_count - validation_size,
                          validation_size=validation_size, test_size=sizes.get("validation", 0),
                          num_classes=ImageNet.num_classes, image_size=image_size)


@REGISTRY.register(IMAGENET, help="ImageNet ILSVRC-2012, 1,000 classes, streamed from a prepared TFDS "
                                  "folder (--data_dir), at --image_size")
class ImageNet:
    name = IMAGENET
    input_shape = (224, 224, 3)  # at the default image_size
    num_classes = 1000
    takes_image_size = True

    @staticmethod
    def load(data_dir, validation_size, seed=0, image_size=224) -> StreamedSplits:
        """The streamed splits (the hold-out is the first examples of TFDS's train split, so no seed)."""
        return load_imagenet(data_dir, validation_size, image_size)
