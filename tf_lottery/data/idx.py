"""MNIST-format (IDX) files: the reader, MNIST and Fashion-MNIST, and the bundled mnist_small subset."""

import gzip
import pathlib
import struct
import zlib

import numpy as np

from tf_lottery.data.splits import REGISTRY, DataError, InMemoryDataset
from tf_lottery.data.tfds import LocalOrTfds

_NUM_CLASSES = 10
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UINT8 = 0x08
_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# The bundled subset's files, named apart from the full dataset's.
_SMALL_STEMS = ("train_images.idx3", "train_labels.idx1", "test_images.idx3", "test_labels.idx1")


def read_idx(path) -> np.ndarray:
    """Reads one uint8 IDX file into an array shaped by its header.

    The file may be gzip-compressed or raw; the gzip magic bytes decide, not the name.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
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


def read_idx_dir(data_dir, stems=_STEMS) -> tuple:
    """Loads the four MNIST-format files from a folder as train_x, train_y, test_x, test_y.

    `stems` name the train images, train labels, test images and test labels
    (by default the original file names). Names may end in .gz or not (.gz
    wins if both exist); images get a trailing channel axis.
    """
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder")
    paths = []
    for stem in stems:
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
    return pathlib.Path(__file__).resolve().parent.parent / "data_files" / "mnist_small"


class _IdxDataset(LocalOrTfds):
    """28x28 grey images in 10 classes, from the four original IDX files or TFDS."""

    input_shape = (28, 28, 1)
    num_classes = _NUM_CLASSES
    local_files = f"IDX files ({_STEMS[0]}[.gz])"

    @classmethod
    def read_local(cls, data_dir):
        return read_idx_dir(data_dir) if _find_idx(data_dir, _STEMS[0]) is not None else None


@REGISTRY.register("mnist", help="handwritten digits, 60,000 + 10,000 (IDX files or TFDS)")
class Mnist(_IdxDataset):
    name = "mnist"


@REGISTRY.register("fashion_mnist", help="clothing images, 60,000 + 10,000 (IDX files or TFDS)")
class FashionMnist(_IdxDataset):
    name = "fashion_mnist"


@REGISTRY.register("mnist_small", help="8,000 + 2,000 MNIST images bundled with the package")
class MnistSmall(InMemoryDataset):
    name = "mnist_small"
    input_shape = (28, 28, 1)
    num_classes = _NUM_CLASSES
    bundled = True  # comes with the package: --data_dir does not apply

    @classmethod
    def read(cls, data_dir):
        """The bundled files; data_dir is ignored."""
        return read_idx_dir(bundled_dir(), _SMALL_STEMS)
