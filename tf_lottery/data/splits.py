"""The in-memory split kind (Splits), DataError, the dataset REGISTRY and the seeded validation hold-out."""

import dataclasses
import pathlib
from typing import ClassVar

import numpy as np

from tf_lottery.registry import Registry

# Dataset name -> entry: a class with `input_shape`, `num_classes` and
# `load(data_dir, validation_size, seed, image_size)` returning a split kind.
REGISTRY = Registry("dataset")


class DataError(ValueError):
    """A data file or dataset that cannot be used; the message names the file or dataset."""


@dataclasses.dataclass(frozen=True)
class Splits:
    """In-memory train/validation/test arrays of one dataset.

    Raw images (`scaled=False`, the registered datasets) are uint8 NHWC and
    become (x / 255 - mean) / std in the training step; inputs already
    scaled by the user (`scaled=True`, any float dtype) are only cast to
    float32.
    """

    # Split kinds tell input_pipeline how they are read: arrays in memory, or tf.data streams.
    streamed: ClassVar[bool] = False

    name: str
    train_x: np.ndarray  # uint8, shape (n, height, width, channels): (n, 28, 28, 1) for MNIST
    train_y: np.ndarray  # integer labels, shape (n,)
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: float  # pixel mean and std after /255, over the training split only
    std: float
    scaled: bool = False
    class_names: tuple = ()  # label i names class_names[i], where the dataset has class names

    def __post_init__(self):
        if not self.scaled:
            for field in ("train_x", "val_x", "test_x"):
                dtype = np.asarray(getattr(self, field)).dtype
                if dtype != np.uint8:
                    raise DataError(f"Splits '{self.name}': {field} is {dtype}, but raw images must be "
                                    "uint8 (they are divided by 255 and standardised); pass "
                                    "scaled=True for inputs that are already scaled")

    @property
    def input_shape(self) -> tuple:
        """Shape of one image, (height, width, channels)."""
        return tuple(self.train_x.shape[1:])

    @property
    def train_size(self) -> int:
        return len(self.train_y)

    @property
    def normalization(self) -> dict:
        """How a stored image becomes the model's input."""
        if self.scaled:
            return {"formula": "as given, as float32", "mean": 0.0, "std": 1.0}
        return {"formula": "(uint8 / 255 - mean) / std", "mean": self.mean, "std": self.std}

    def test_arrays(self, limit=None):
        """(float32 inputs prepared as in training, labels) of the first `limit` test examples."""
        x = self.test_x[:limit].astype(np.float32)
        if self.scaled:
            return x, np.asarray(self.test_y[:limit])
        x = x / np.float32(255.0)
        return (x - np.float32(self.mean)) / np.float32(self.std), np.asarray(self.test_y[:limit])


_STATS_CHUNK = 1 << 24


def takes_image_size(name) -> bool:
    """Whether registered dataset `name` uses --image_size (its entry says `takes_image_size`)."""
    return name in REGISTRY and bool(getattr(REGISTRY.get(name), "takes_image_size", False))


def pixel_stats(images):
    """(mean, std) of uint8 pixels scaled to [0, 1], as exact float64 moments."""
    # A histogram of the 256 pixel values gives exact float64 moments without a float copy.
    flat = images.reshape(-1)
    counts = np.zeros(256, np.float64)
    for start in range(0, flat.size, _STATS_CHUNK):  # bincount widens to int64: keep chunks small
        counts += np.bincount(flat[start:start + _STATS_CHUNK], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum()
    mean = (counts * values).sum() / total
    variance = (counts * (values - mean) ** 2).sum() / total
    return float(mean), float(np.sqrt(variance))


def hold_out(name, arrays, num_classes, validation_size, seed) -> Splits:
    """Splits from (train_x, train_y, test_x, test_y): a seeded validation split held out of training.

    Both parts keep the original order; mean and std come from the kept training images only.
    """
    train_x, train_y, test_x, test_y = arrays
    count = len(train_x)
    if not 0 <= validation_size < count:
        raise DataError(
            f"validation_size={validation_size} is out of range: dataset '{name}' has {count} "
            f"training examples, so it must be at least 0 and below {count}"
        )
    order = np.random.default_rng(seed).permutation(count)
    val_idx = np.sort(order[:validation_size])
    train_idx = np.sort(order[validation_size:])
    kept_x = train_x[train_idx]
    mean, std = pixel_stats(kept_x)
    return Splits(
        name=name,
        train_x=kept_x,
        train_y=train_y[train_idx],
        val_x=train_x[val_idx],
        val_y=train_y[val_idx],
        test_x=test_x,
        test_y=test_y,
        num_classes=num_classes,
        mean=mean,
        std=std,
    )


def existing_folder(name, data_dir) -> pathlib.Path:
    """data_dir as a Path; DataError if it is missing or not a folder."""
    data_dir = pathlib.Path(data_dir)
    if not data_dir.exists():
        raise DataError(f"{data_dir}: data_dir for dataset '{name}' does not exist")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data_dir for dataset '{name}' is not a folder")
    return data_dir


class InMemoryDataset:
    """Base of the registered datasets held in memory: `read` gives the arrays, `load` the Splits."""

    name: ClassVar[str]  # the registered name, also used in messages and for TFDS
    input_shape: ClassVar[tuple]
    num_classes: ClassVar[int]

    @classmethod
    def read(cls, data_dir) -> tuple:
        """train_x (uint8 NHWC), train_y, test_x, test_y."""
        raise NotImplementedError

    @classmethod
    def load(cls, data_dir, validation_size, seed, image_size=224) -> Splits:
        """The dataset with `validation_size` training examples held out (image_size does not apply)."""
        return hold_out(cls.name, cls.read(data_dir), cls.num_classes, validation_size, seed)
