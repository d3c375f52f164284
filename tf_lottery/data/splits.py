"""The in-memory split kind (Splits), DataError, the dataset REGISTRY and the seeded validation hold-out."""

import dataclasses
import pathlib
from typing import ClassVar

import numpy as np

from tf_lottery.registry import Registry

# Dataset name -> entry: a class with `input_shape`, `num_classes` and
# `load(data_dir, validation_size, seed, image_size)` returning a split kind.
REGISTRY = Registry("dataset")

# --input_scaling: how a uint8 image becomes the model's input (the formula recorded with exports).
INPUT_SCALINGS = {
    "standardize": "(uint8 / 255 - mean) / std",
    "unit_norm": "float32(uint8) / its L2 norm over the whole image (unchanged if all zero)",
    "unit_range": "uint8 / 255",
}


class DataError(ValueError):
    """A data file or dataset that cannot be used; the message names the file or dataset."""


@dataclasses.dataclass(frozen=True)
class Splits:
    """In-memory train/validation/test arrays of one dataset.

    Raw images (`scaled=False`, the registered datasets) are uint8 NHWC and
    become inputs in the training step as `scaling` says (a key of
    INPUT_SCALINGS; by default (x / 255 - mean) / std); inputs already
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
    scaling: str = "standardize"

    def __post_init__(self):
        if self.scaling not in INPUT_SCALINGS:
            raise DataError(f"Splits '{self.name}': unknown scaling {self.scaling!r}; choose one of "
                            f"{', '.join(INPUT_SCALINGS)}")
        if self.scaled and self.scaling != "standardize":
            raise DataError(f"Splits '{self.name}': scaling={self.scaling!r} needs uint8 images, but "
                            "these inputs are already scaled")
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
        if self.scaling == "standardize":
            return {"formula": INPUT_SCALINGS["standardize"], "mean": self.mean, "std": self.std}
        return {"formula": INPUT_SCALINGS[self.scaling], "mean": 0.0, "std": 1.0}

    def test_arrays(self, limit=None):
        """(float32 inputs prepared as in training, labels) of the first `limit` test examples."""
        x = self.test_x[:limit].astype(np.float32)
        labels = np.asarray(self.test_y[:limit])
        if self.scaled:
            return x, labels
        if self.scaling == "unit_norm":
            norms = np.sqrt(np.square(x).reshape(len(x), -1).sum(axis=1, dtype=np.float32))
            return x / np.where(norms > 0, norms, 1).reshape((-1,) + (1,) * (x.ndim - 1)), labels
        normalization = self.normalization
        x = x / np.float32(255.0)
        return (x - np.float32(normalization["mean"])) / np.float32(normalization["std"]), labels


_STATS_CHUNK = 1 << 24


def takes_image_size(name) -> bool:
    """Whether registered dataset `name` uses --image_size (its entry says `takes_image_size`)."""
    return name in REGISTRY and bool(getattr(REGISTRY.get(name), "takes_image_size", False))


def with_scaling(splits, scaling):
    """`splits` with its uint8 images scaled as `scaling` (--input_scaling) says.

    Only in-memory splits of uint8 images take a scaling other than
    'standardize'; DataError naming input_scaling otherwise.
    """
    if scaling == getattr(splits, "scaling", "standardize"):
        return splits
    if not isinstance(splits, Splits) or splits.scaled:
        raise DataError(f"input_scaling={scaling!r} applies to datasets held in memory as uint8 images; "
                        f"'{splits.name}' is streamed or already scaled (it is standardised)")
    return dataclasses.replace(splits, scaling=scaling)


def with_train_size(splits, size, seed):
    """`splits` training on a seeded subset of `size` of its training examples (kept in order),
    with mean and std measured on that subset; DataError naming train_size if it cannot."""
    if size is None:
        return splits
    if not isinstance(splits, Splits) or splits.scaled:
        raise DataError(f"train_size applies to datasets held in memory as uint8 images; "
                        f"'{splits.name}' is streamed or already scaled")
    if size > splits.train_size:
        raise DataError(f"train_size={size} is more than the {splits.train_size} training examples of "
                        f"'{splits.name}' left after the validation hold-out")
    keep = np.sort(np.random.default_rng([seed, size]).permutation(splits.train_size)[:size])
    train_x = splits.train_x[keep]
    mean, std = pixel_stats(train_x)
    return dataclasses.replace(splits, train_x=train_x, train_y=splits.train_y[keep], mean=mean, std=std)


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
