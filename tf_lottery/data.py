"""Loading MNIST-style datasets into memory as uint8 arrays with a seeded validation split."""

import dataclasses
import gzip
import pathlib
import struct

import numpy as np

DATASETS = ("mnist", "fashion_mnist", "mnist_small")

_NUM_CLASSES = 10
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UINT8 = 0x08
_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataError(ValueError):
    """A data file or dataset that cannot be used; the message names the file or dataset."""


@dataclasses.dataclass(frozen=True)
class Splits:
    """In-memory train/validation/test arrays of one dataset, images as uint8 NHWC."""

    name: str
    train_x: np.ndarray  # uint8, shape (n, 28, 28, 1)
    train_y: np.ndarray  # integer labels, shape (n,)
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: float  # pixel mean and std after /255, over the training split only
    std: float

    @property
    def input_shape(self) -> tuple:
        """Shape of one image, (height, width, channels)."""
        return tuple(self.train_x.shape[1:])


def read_idx(path) -> np.ndarray:
    """Reads one uint8 IDX file into an array shaped by its header.

    The file may be gzip-compressed or raw; the gzip magic bytes decide, not the name.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        import zlib  # already loaded by gzip; only needed for its exception type

        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as error:
            raise DataError(f"{path}: corrupt gzip data ({error})") from error

    magic = data[:4]
    if len(magic) < 4 or magic[:3] != bytes([0, 0, _IDX_UINT8]) or not 1 <= magic[3] <= 4:
        raise DataError(
            f"{path}: not an IDX file (magic 0x{magic.hex()}; expected 0x000008 followed by "
            "a dimension count of 1 to 4)"
        )
    ndim = magic[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{path}: truncated: expected {header_size} header bytes, found {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = 1
    for dim in dims:
        expected *= dim
    found = len(data) - header_size
    if found < expected:
        raise DataError(f"{path}: truncated: expected {expected} bytes of data, found {found}")
    if found > expected:
        raise DataError(
            f"{path}: trailing bytes: expected {expected} bytes of data, found {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def _find_idx(data_dir, stem):
    for name in (stem + ".gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _read_pair(images_path, labels_path):
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(
            f"{images_path}: expected images of shape (n, rows, cols), found {images.shape}"
        )
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels of shape (n,), found {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= _NUM_CLASSES:
        raise DataError(
            f"{labels_path}: label {labels.max()} out of range 0..{_NUM_CLASSES - 1}"
        )
    return images[..., np.newaxis], labels.astype(np.int64)


def read_idx_dir(data_dir) -> tuple:
    """Loads the four original MNIST-format files from a folder as train_x, train_y, test_x, test_y.

    Names may end in .gz or not (.gz wins if both exist); images get a trailing channel axis.
    """
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder")
    paths = []
    for stem in _STEMS:
        path = _find_idx(data_dir, stem)
        if path is None:
            raise DataError(
                f"{data_dir / stem}: no such file (looked for {stem}.gz and {stem} in {data_dir})"
            )
        paths.append(path)
    train_x, train_y = _read_pair(paths[0], paths[1])
    test_x, test_y = _read_pair(paths[2], paths[3])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"{paths[0]} holds images of shape {train_x.shape[1:]} but {paths[2]} "
            f"holds images of shape {test_x.shape[1:]}"
        )
    return train_x, train_y, test_x, test_y


def bundled_dir() -> pathlib.Path:
    """Folder of the bundled mnist_small subset inside the installed package."""
    return pathlib.Path(__file__).resolve().parent / "data_files" / "mnist_small"


def _load_tfds(name, data_dir):
    import tensorflow_datasets as tfds

    if data_dir is None:
        kwargs = {}
    else:
        kwargs = {"data_dir": str(data_dir), "download": False}
    try:
        (train, test) = tfds.as_numpy(
            tfds.load(name, batch_size=-1, as_supervised=True, split=["train", "test"], **kwargs)
        )
    except AssertionError as error:
        # TFDS raises AssertionError when download=False and the data is not prepared.
        raise DataError(
            f"dataset '{name}': {data_dir} holds neither IDX files "
            f"({_STEMS[0]}[.gz]) nor prepared TFDS data ({error})"
        ) from error
    return train[0], train[1], test[0], test[1]


def _pixel_stats(images):
    # A histogram of the 256 pixel values gives exact float64 moments without a float copy.
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum()
    mean = (counts * values).sum() / total
    variance = (counts * (values - mean) ** 2).sum() / total
    return float(mean), float(np.sqrt(variance))


def load(name, data_dir=None, validation_size=5000, seed=0) -> Splits:
    """Loads a dataset into memory and holds out a seeded validation split from the training set.

    mnist_small is read from the package; mnist and fashion_mnist from IDX files or a
    prepared TFDS folder in data_dir, or through TFDS (which may download) if data_dir is None.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if isinstance(validation_size, bool) or not isinstance(validation_size, (int, np.integer)):
        raise DataError(f"validation_size must be an integer, got {validation_size!r}")

    if name == "mnist_small":
        train_x, train_y, test_x, test_y = read_idx_dir(bundled_dir())
    elif data_dir is None:
        train_x, train_y, test_x, test_y = _load_tfds(name, None)
    else:
        data_dir = pathlib.Path(data_dir)
        if not data_dir.exists():
            raise DataError(f"{data_dir}: data_dir for dataset '{name}' does not exist")
        if not data_dir.is_dir():
            raise DataError(f"{data_dir}: data_dir for dataset '{name}' is not a folder")
        if _find_idx(data_dir, _STEMS[0]) is not None:
            train_x, train_y, test_x, test_y = read_idx_dir(data_dir)
        else:
            train_x, train_y, test_x, test_y = _load_tfds(name, data_dir)

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
    mean, std = _pixel_stats(kept_x)
    return Splits(
        name=name,
        train_x=kept_x,
        train_y=train_y[train_idx],
        val_x=train_x[val_idx],
        val_y=train_y[val_idx],
        test_x=test_x,
        test_y=test_y,
        num_classes=_NUM_CLASSES,
        mean=mean,
        std=std,
    )
