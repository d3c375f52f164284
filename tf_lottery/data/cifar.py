"""CIFAR-10 and CIFAR-100 from the extracted python (pickle) or binary archives, else TFDS."""

import dataclasses
import pathlib
import pickle

import numpy as np

from tf_lottery.data.splits import REGISTRY, DataError
from tf_lottery.data.tfds import LocalOrTfds

_CIFAR_SIDE = 32
_CIFAR_PIXELS = 3 * _CIFAR_SIDE * _CIFAR_SIDE


@dataclasses.dataclass(frozen=True)
class _CifarLayout:
    """Where one version of a CIFAR archive keeps its splits, and how it stores labels."""

    folder: str  # the folder the archive extracts to
    train: tuple
    test: str
    label_key: bytes = b""  # python version: the dict key of the labels
    label_bytes: int = 0  # binary version: label bytes before each image; the last one is used


_CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100}
_CIFAR_LAYOUTS = {
    "cifar10": (
        _CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                     "test_batch", label_key=b"labels"),
        _CifarLayout("cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                     "test_batch.bin", label_bytes=1),
    ),
    "cifar100": (
        _CifarLayout("cifar-100-python", ("train",), "test", label_key=b"fine_labels"),
        # Each record starts with the coarse label, then the fine one.
        _CifarLayout("cifar-100-binary", ("train.bin",), "test.bin", label_bytes=2),
    ),
}


def _to_nhwc(rows):
    # Each row holds the red plane, then green, then blue, each 32x32 in row-major order.
    return np.ascontiguousarray(rows.reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE).transpose(0, 2, 3, 1))


def _check_labels(path, labels, num_classes):
    if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise DataError(f"{path}: label {bad} out of range 0..{num_classes - 1}")
    return labels


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold (dicts, lists, bytes, numpy arrays), so a file cannot run code."""

    # Python 2 (the original archives) and Python 3 pickles of numpy arrays and bytes.
    _ALLOWED = {
        *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
          for name in ("_reconstruct", "scalar")),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_pickle(path, label_key, num_classes):
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with path.open("rb") as file:
            entry = _CifarUnpickler(file, encoding="bytes").load()
    except Exception as error:  # unpickling can fail with almost any exception type
        raise DataError(f"{path}: not a CIFAR python batch ({type(error).__name__}: {error})") from error
    if not isinstance(entry, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(entry).__name__}")
    missing = [key.decode() for key in (b"data", label_key) if key not in entry]
    if missing:
        raise DataError(f"{path}: no {' or '.join(missing)} entry (keys: "
                        f"{', '.join(sorted(repr(k) for k in entry))})")
    images = np.asarray(entry[b"data"])
    labels = np.asarray(entry[label_key])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != _CIFAR_PIXELS:
        raise DataError(
            f"{path}: expected data of shape (n, {_CIFAR_PIXELS}) and dtype uint8, "
            f"found {images.shape} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images) or (
            labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"{path}: expected {len(images)} integer labels, found {labels.shape} "
                        f"{labels.dtype}")
    return _to_nhwc(images), _check_labels(path, labels.astype(np.int64), num_classes)


def _read_cifar_binary(path, label_bytes, num_classes):
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    record = label_bytes + _CIFAR_PIXELS
    if not data.size or data.size % record:
        raise DataError(
            f"{path}: truncated or not a CIFAR binary file: {data.size} bytes is not a "
            f"positive multiple of the {record}-byte record ({label_bytes} label "
            f"byte{'s' if label_bytes > 1 else ''} + {_CIFAR_PIXELS} pixels)")
    rows = data.reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)
    return _to_nhwc(rows[:, label_bytes:]), _check_labels(path, labels, num_classes)


def _find_cifar(name, data_dir):
    """(layout, folder) of the CIFAR files in data_dir or in its archive subfolder, or None."""
    for layout in _CIFAR_LAYOUTS[name]:
        if (data_dir / layout.folder).is_dir():
            return layout, data_dir / layout.folder
        names = layout.train + (layout.test,)
        if data_dir.name == layout.folder or any((data_dir / n).is_file() for n in names):
            return layout, data_dir
    return None


def _read_cifar(name, layout, folder):
    classes = _CIFAR_CLASSES[name]
    if layout.label_key:
        def read(file):
            return _read_cifar_pickle(folder / file, layout.label_key, classes)
    else:
        def read(file):
            return _read_cifar_binary(folder / file, layout.label_bytes, classes)
    parts = [read(file) for file in layout.train]
    test_x, test_y = read(layout.test)
    train_x = np.concatenate([x for x, _ in parts])
    train_y = np.concatenate([y for _, y in parts])
    return train_x, train_y, test_x, test_y


def read_cifar_dir(name, folder) -> tuple:
    """Loads extracted CIFAR-10/100 files (python or binary version) as train_x, train_y, test_x, test_y.

    `folder` is the extracted archive folder (e.g. cifar-10-batches-py) or its
    parent. Images come out uint8 NHWC (n, 32, 32, 3); CIFAR-100 labels are the fine labels.
    """
    if name not in _CIFAR_LAYOUTS:
        raise DataError(f"unknown CIFAR dataset {name!r}; choose one of {', '.join(_CIFAR_LAYOUTS)}")
    folder = pathlib.Path(folder)
    found = _find_cifar(name, folder)
    if found is None:
        expected = " or ".join(layout.folder for layout in _CIFAR_LAYOUTS[name])
        raise DataError(f"{folder}: no {name} files (looked for {expected})")
    return _read_cifar(name, *found)


def _local_files(name):
    """What a folder given for `name` is searched for, as error messages name it."""
    return f"CIFAR files ({' or '.join(f'{layout.folder}/' for layout in _CIFAR_LAYOUTS[name])})"


class _Cifar(LocalOrTfds):
    """32x32 colour images, from the extracted archive (python or binary version) or TFDS."""

    input_shape = (_CIFAR_SIDE, _CIFAR_SIDE, 3)

    @classmethod
    def read_local(cls, data_dir):
        found = _find_cifar(cls.name, data_dir)
        return None if found is None else _read_cifar(cls.name, *found)


@REGISTRY.register("cifar10", help="50,000 + 10,000 colour images in 10 classes (archive or TFDS)")
class Cifar10(_Cifar):
    name = "cifar10"
    num_classes = _CIFAR_CLASSES[name]
    local_files = _local_files(name)


@REGISTRY.register("cifar100", help="50,000 + 10,000 colour images in 100 classes, fine labels "
                                    "(archive or TFDS)")
class Cifar100(_Cifar):
    name = "cifar100"
    num_classes = _CIFAR_CLASSES[name]
    local_files = _local_files(name)
