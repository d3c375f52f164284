"""Datasets: MNIST-style and CIFAR in memory as uint8 arrays with a seeded validation split;
ImageNet streamed from a prepared TFDS folder (StreamedSplits).
"""

import dataclasses
import gzip
import json
import pathlib
import pickle
import struct

import numpy as np

IMAGENET = "imagenet2012"
DATASETS = ("mnist", "fashion_mnist", "mnist_small", "cifar10", "cifar100", IMAGENET)
# (image shape, number of classes) of each dataset, known without loading it.
SHAPES = {"mnist": ((28, 28, 1), 10), "fashion_mnist": ((28, 28, 1), 10),
          "mnist_small": ((28, 28, 1), 10), "cifar10": ((32, 32, 3), 10),
          "cifar100": ((32, 32, 3), 100), IMAGENET: ((224, 224, 3), 1000)}

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


class DataError(ValueError):
    """A data file or dataset that cannot be used; the message names the file or dataset."""


@dataclasses.dataclass(frozen=True)
class Splits:
    """In-memory train/validation/test arrays of one dataset, images as uint8 NHWC."""

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

    @property
    def input_shape(self) -> tuple:
        """Shape of one image, (height, width, channels)."""
        return tuple(self.train_x.shape[1:])

    @property
    def train_size(self) -> int:
        return len(self.train_y)

    @property
    def normalization(self) -> dict:
        """How a uint8 image becomes the model's input."""
        return {"formula": "(uint8 / 255 - mean) / std", "mean": self.mean, "std": self.std}

    def test_arrays(self, limit=None):
        """(float32 images normalised as in training, labels) of the first `limit` test examples."""
        x = self.test_x[:limit].astype(np.float32) / np.float32(255.0)
        return (x - np.float32(self.mean)) / np.float32(self.std), np.asarray(self.test_y[:limit])


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


# CIFAR: the python (pickle) and binary versions of the original archives, extracted.

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


def bundled_dir() -> pathlib.Path:
    """Folder of the bundled mnist_small subset inside the installed package."""
    return pathlib.Path(__file__).resolve().parent / "data_files" / "mnist_small"


def _load_tfds(name, data_dir, local_files=f"IDX files ({_STEMS[0]}[.gz])"):
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
            f"dataset '{name}': {data_dir} holds neither {local_files} "
            f"nor prepared TFDS data ({error})"
        ) from error
    except Exception as error:  # a failed download can raise almost anything
        if data_dir is not None:
            raise
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise DataError(
            f"dataset '{name}': TFDS could not load or download it ({type(error).__name__}: "
            f"{first_line}); without network access pass --data_dir with local files"
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


def _read_local(name, data_dir):
    """train_x, train_y, test_x, test_y from the original files in data_dir, or a prepared TFDS folder."""
    if name in _CIFAR_CLASSES:
        found = _find_cifar(name, data_dir)
        if found is not None:
            return _read_cifar(name, *found)
        folders = " or ".join(f"{layout.folder}/" for layout in _CIFAR_LAYOUTS[name])
        return _load_tfds(name, data_dir, local_files=f"CIFAR files ({folders})")
    if _find_idx(data_dir, _STEMS[0]) is not None:
        return read_idx_dir(data_dir)
    return _load_tfds(name, data_dir)


def load(name, data_dir=None, validation_size=5000, seed=0, image_size=224):
    """Loads a dataset into memory and holds out a seeded validation split from the training set.

    mnist_small is read from the package; mnist and fashion_mnist from IDX files,
    cifar10 and cifar100 from the extracted python or binary archives (the
    archive folder or its parent), or any of them from a prepared TFDS folder in
    data_dir; through TFDS (which may download) if data_dir is None.
    imagenet2012 is not loaded but streamed (StreamedSplits, at `image_size`).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if isinstance(validation_size, bool) or not isinstance(validation_size, (int, np.integer)):
        raise DataError(f"validation_size must be an integer, got {validation_size!r}")
    if name == IMAGENET:
        return load_imagenet(data_dir, validation_size, image_size)

    if name == "mnist_small":
        train_x, train_y, test_x, test_y = read_idx_dir(bundled_dir(), _SMALL_STEMS)
    elif data_dir is None:
        train_x, train_y, test_x, test_y = _load_tfds(name, None)
    else:
        data_dir = pathlib.Path(data_dir)
        if not data_dir.exists():
            raise DataError(f"{data_dir}: data_dir for dataset '{name}' does not exist")
        if not data_dir.is_dir():
            raise DataError(f"{data_dir}: data_dir for dataset '{name}' is not a folder")
        train_x, train_y, test_x, test_y = _read_local(name, data_dir)

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
        num_classes=_CIFAR_CLASSES.get(name, _NUM_CLASSES),
        mean=mean,
        std=std,
    )


# ImageNet: streamed from a prepared TFDS folder, with the standard ResNet preprocessing.

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per channel, of pixels scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalize_imagenet(image):
    import tensorflow as tf

    return (image / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def imagenet_train_image(image, seed, image_size=224):
    """Random-resized crop (area 8-100%, aspect 3/4-4/3), random flip, resize, normalise.

    `image` is one uint8 (height, width, 3) tensor and `seed` a shape-(2,)
    integer tensor; the same seed gives the same crop and flip. Returns float32
    (image_size, image_size, 3).
    """
    import tensorflow as tf

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
    import tensorflow as tf

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


def _read_imagenet(data_dir, split, **kwargs):
    """One split of the prepared TFDS imagenet2012 in data_dir as (encoded image, label); never downloads."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(IMAGENET, split=split, data_dir=str(data_dir), download=False,
                         as_supervised=True, decoders={"image": tfds.decode.SkipDecoding()}, **kwargs)
    except AssertionError as error:
        # TFDS raises AssertionError when download=False and the data is not prepared.
        raise DataError(f"dataset '{IMAGENET}': {data_dir} holds no prepared TFDS data "
                        f"({error})") from error


def _decode(encoded):
    import tensorflow as tf

    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def imagenet_train(data_dir, batch_size, seed, split="train", image_size=224, shuffle_buffer=1000):
    """Endless, shuffled, augmented training batches of ImageNet (normalised float32, int64 labels).

    Files and then a buffer of still-encoded images are shuffled in an order
    fixed by `seed`, and each example gets its own stateless augmentation seed
    drawn from a stream fixed by `seed` (imagenet_train_image).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    train = _read_imagenet(data_dir, split, shuffle_files=True,
                           read_config=tfds.ReadConfig(shuffle_seed=seed))
    example_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    return (tf.data.Dataset.zip((train.shuffle(shuffle_buffer, seed=seed).repeat(), example_seeds))
            .map(lambda example, pair: (imagenet_train_image(_decode(example[0]), pair, image_size),
                                        tf.cast(example[1], tf.int64)),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def imagenet_eval(data_dir, batch_size, split="validation", image_size=224):
    """One pass over an ImageNet split in file order, centre-cropped (imagenet_eval_image)."""
    import tensorflow as tf

    return (_read_imagenet(data_dir, split)
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
                          num_classes=SHAPES[IMAGENET][1], image_size=image_size)
