import gzip
import importlib.util
import pathlib
import struct
import subprocess
import sys
import types

import numpy as np
import pytest

from tf_lottery import data
from tf_lottery.data import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared/data/mnist"
STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path, array, gz=True):
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload, mtime=0) if gz else payload)
    return path


def synthetic_set(n_train=60, n_test=20, seed=0):
    """Distinct training images (two pixels encode the index) and constant 255 test images."""
    rng = np.random.default_rng(seed)
    train_x = rng.integers(0, 100, size=(n_train, 28, 28), dtype=np.uint8)
    train_x[:, 0, 0] = np.arange(n_train) % 256
    train_x[:, 0, 1] = np.arange(n_train) // 256
    train_y = (np.arange(n_train) % 10).astype(np.uint8)
    test_x = np.full((n_test, 28, 28), 255, dtype=np.uint8)
    test_y = (np.arange(n_test) % 10).astype(np.uint8)
    return train_x, train_y, test_x, test_y


def write_idx_dir(folder, arrays, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(STEMS, arrays):
        write_idx(folder / (stem + ".gz" if gz else stem), array, gz=gz)
    return folder


def original_index(images):
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 1, 0].astype(int)


def row_hashes(images):
    return sorted(row.tobytes() for row in images)


# read_idx


@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trips_gzip_and_raw(tmp_path, shape, gz):
    array = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    result = data.read_idx(write_idx(tmp_path / "file", array, gz=gz))
    assert result.dtype == np.uint8
    assert result.shape == shape
    np.testing.assert_array_equal(result, array)
    result[...] = 0  # the returned array is an ordinary writable array


def test_read_idx_decides_compression_by_magic_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_without_suffix = write_idx(tmp_path / "images", array, gz=True)
    raw_with_suffix = write_idx(tmp_path / "images.gz", array, gz=False)
    np.testing.assert_array_equal(data.read_idx(gz_without_suffix), array)
    np.testing.assert_array_equal(data.read_idx(raw_with_suffix), array)


def test_read_idx_missing_file(tmp_path):
    path = tmp_path / "nothing-here.gz"
    with pytest.raises(DataError, match="no such file") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00",  # float32 type code
        b"\x01\x00\x08\x01\x00\x00\x00\x01\x07",  # non-zero leading byte
        b"\x00\x00\x08\x00",  # zero dimensions
        b"\x00\x00\x08\x05" + b"\x00\x00\x00\x01" * 5 + b"\x07",  # five dimensions
        b"\x00\x00",  # shorter than the magic
        b"",
        b"hello, this is text",
    ],
)
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_rejects_wrong_magic(tmp_path, content, gz):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match="not an IDX file") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_rejects_truncated_payload(tmp_path, gz):
    path = tmp_path / "short"
    content = idx_bytes(np.zeros((3, 4), np.uint8))[:-2]
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match="truncated") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)
    assert "expected 12 bytes of data, found 10" in str(info.value)


def test_read_idx_rejects_truncated_header(tmp_path):
    path = tmp_path / "short-header"
    path.write_bytes(idx_bytes(np.zeros((3, 4), np.uint8))[:9])
    with pytest.raises(DataError, match="truncated") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros((3, 4), np.uint8)) + b"\x00")
    with pytest.raises(DataError, match="expected 12 bytes of data, found 13") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def _truncated_stream(good):
    return good[: len(good) // 2]


def _corrupt_deflate(good):
    broken = bytearray(good)
    for i in range(12, len(broken) - 8):
        broken[i] ^= 0xFF
    return bytes(broken)


def _bad_crc(good):
    return good[:-8] + bytes(4) + good[-4:]


def _bad_method(good):
    return good[:2] + b"\x07" + good[3:]


@pytest.mark.parametrize("damage", [_truncated_stream, _corrupt_deflate, _bad_crc, _bad_method])
def test_read_idx_reports_corrupt_gzip_as_data_error(tmp_path, damage):
    array = np.random.default_rng(2).integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    good = gzip.compress(idx_bytes(array), mtime=0)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(good))
    with pytest.raises(DataError) as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


# read_idx_dir


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_dir_loads_four_files(tmp_path, gz):
    arrays = synthetic_set(n_train=30, n_test=12)
    train_x, train_y, test_x, test_y = data.read_idx_dir(write_idx_dir(tmp_path, arrays, gz=gz))
    assert train_x.shape == (30, 28, 28, 1) and train_x.dtype == np.uint8
    assert test_x.shape == (12, 28, 28, 1) and test_x.dtype == np.uint8
    assert train_y.shape == (30,) and np.issubdtype(train_y.dtype, np.integer)
    np.testing.assert_array_equal(train_x[..., 0], arrays[0])
    np.testing.assert_array_equal(train_y, arrays[1])
    np.testing.assert_array_equal(test_x[..., 0], arrays[2])
    np.testing.assert_array_equal(test_y, arrays[3])


def test_read_idx_dir_prefers_gz_when_both_exist(tmp_path):
    arrays = synthetic_set(n_train=30, n_test=12)
    write_idx_dir(tmp_path, arrays, gz=True)
    write_idx(tmp_path / STEMS[1], np.zeros(30, np.uint8), gz=False)
    _, train_y, _, _ = data.read_idx_dir(tmp_path)
    np.testing.assert_array_equal(train_y, arrays[1])


def test_read_idx_dir_names_missing_file(tmp_path):
    write_idx_dir(tmp_path, synthetic_set())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        data.read_idx_dir(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in message
    assert "t10k-labels-idx1-ubyte.gz" in message


def test_read_idx_dir_missing_folder(tmp_path):
    with pytest.raises(DataError) as info:
        data.read_idx_dir(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)


def test_read_idx_dir_rejects_count_mismatch(tmp_path):
    train_x, train_y, test_x, test_y = synthetic_set(n_train=30)
    write_idx_dir(tmp_path, (train_x, train_y[:29], test_x, test_y))
    with pytest.raises(DataError) as info:
        data.read_idx_dir(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "train-labels-idx1-ubyte.gz") in message
    assert "30" in message and "29" in message


def test_read_idx_dir_rejects_labels_out_of_range(tmp_path):
    train_x, train_y, test_x, test_y = synthetic_set()
    test_y = test_y.copy()
    test_y[3] = 10
    write_idx_dir(tmp_path, (train_x, train_y, test_x, test_y))
    with pytest.raises(DataError) as info:
        data.read_idx_dir(tmp_path)
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in str(info.value)


def test_read_idx_dir_rejects_images_that_are_not_3d(tmp_path):
    train_x, train_y, test_x, test_y = synthetic_set(n_train=30)
    write_idx_dir(tmp_path, (train_x.reshape(30, -1), train_y, test_x, test_y))
    with pytest.raises(DataError) as info:
        data.read_idx_dir(tmp_path)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in str(info.value)


# load


def test_load_from_idx_folder_splits_training_set(tmp_path):
    arrays = synthetic_set(n_train=60, n_test=20)
    splits = data.load("mnist", data_dir=write_idx_dir(tmp_path, arrays), validation_size=15, seed=3)

    assert splits.name == "mnist"
    assert splits.num_classes == 10
    assert splits.input_shape == (28, 28, 1)
    assert splits.train_x.shape == (45, 28, 28, 1) and splits.train_y.shape == (45,)
    assert splits.val_x.shape == (15, 28, 28, 1) and splits.val_y.shape == (15,)
    assert splits.test_x.shape == (20, 28, 28, 1) and splits.test_y.shape == (20,)
    assert splits.train_x.dtype == splits.val_x.dtype == splits.test_x.dtype == np.uint8

    train_idx = original_index(splits.train_x)
    val_idx = original_index(splits.val_x)
    assert not set(train_idx) & set(val_idx)
    assert row_hashes(np.concatenate([splits.train_x, splits.val_x])) == row_hashes(arrays[0][..., None])
    # both parts keep the original order, and labels stay with their images
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)
    np.testing.assert_array_equal(splits.train_y, arrays[1][train_idx])
    np.testing.assert_array_equal(splits.val_y, arrays[1][val_idx])
    np.testing.assert_array_equal(splits.test_x[..., 0], arrays[2])


def test_load_split_depends_on_seed_only(tmp_path):
    folder = write_idx_dir(tmp_path, synthetic_set(n_train=60))
    first = data.load("mnist", data_dir=folder, validation_size=15, seed=0)
    again = data.load("mnist", data_dir=folder, validation_size=15, seed=0)
    other = data.load("mnist", data_dir=folder, validation_size=15, seed=1)
    np.testing.assert_array_equal(first.val_x, again.val_x)
    np.testing.assert_array_equal(first.train_x, again.train_x)
    assert set(original_index(first.val_x)) != set(original_index(other.val_x))


def test_load_mean_and_std_use_training_split_only(tmp_path):
    folder = write_idx_dir(tmp_path, synthetic_set(n_train=60))
    splits = data.load("fashion_mnist", data_dir=folder, validation_size=20)
    pixels = splits.train_x.astype(np.float64) / 255.0
    assert type(splits.mean) is float and type(splits.std) is float
    assert splits.mean == pytest.approx(pixels.mean(), rel=1e-12)
    assert splits.std == pytest.approx(pixels.std(), rel=1e-12)
    everything = np.concatenate([splits.train_x, splits.val_x]).astype(np.float64) / 255.0
    assert splits.mean != pytest.approx(everything.mean(), rel=1e-9)
    assert splits.mean < 0.5  # the constant 255 test images are not included


def test_load_with_zero_validation_size(tmp_path):
    arrays = synthetic_set(n_train=40)
    splits = data.load("mnist", data_dir=write_idx_dir(tmp_path, arrays, gz=False), validation_size=0)
    assert splits.val_x.shape == (0, 28, 28, 1) and splits.val_x.dtype == np.uint8
    assert splits.val_y.shape == (0,)
    np.testing.assert_array_equal(splits.train_x[..., 0], arrays[0])


@pytest.mark.parametrize("size", [60, 61, -1])
def test_load_rejects_validation_size_out_of_range(tmp_path, size):
    folder = write_idx_dir(tmp_path, synthetic_set(n_train=60))
    with pytest.raises(DataError, match="validation_size") as info:
        data.load("mnist", data_dir=folder, validation_size=size)
    assert str(size) in str(info.value) and "60" in str(info.value)


def test_load_rejects_unknown_dataset():
    with pytest.raises(DataError) as info:
        data.load("cifar7")
    assert str(info.value).startswith("unknown dataset 'cifar7'; choose one of mnist, fashion_mnist, mnist_small")


def test_load_rejects_missing_data_dir(tmp_path):
    with pytest.raises(DataError) as info:
        data.load("mnist", data_dir=tmp_path / "no-such-folder")
    assert str(tmp_path / "no-such-folder") in str(info.value)


def test_load_mnist_small_from_package():
    splits = data.load("mnist_small", validation_size=1000)
    assert splits.name == "mnist_small"
    assert len(splits.train_x) == len(splits.train_y) == 7000
    assert len(splits.val_x) == len(splits.val_y) == 1000
    assert len(splits.test_x) == len(splits.test_y) == 2000
    parts = [(splits.train_x, splits.train_y), (splits.val_x, splits.val_y), (splits.test_x, splits.test_y)]
    for images, labels in parts:
        assert images.dtype == np.uint8
        assert images.shape[1:] == (28, 28, 1)
        assert np.array_equal(np.unique(labels), np.arange(10))
    assert splits.input_shape == (28, 28, 1)
    assert 0.11 < splits.mean < 0.15 and 0.28 < splits.std < 0.33  # full MNIST: 0.1307, 0.3081


def test_load_mnist_small_ignores_data_dir(tmp_path):
    splits = data.load("mnist_small", data_dir=tmp_path / "absent", validation_size=0)
    assert len(splits.train_x) == 8000 and len(splits.test_x) == 2000


BUNDLED = ("train_images.idx3.gz", "train_labels.idx1.gz", "test_images.idx3.gz", "test_labels.idx1.gz")


def test_bundled_dir_holds_the_four_files_under_their_own_names():
    names = {path.name for path in data.bundled_dir().iterdir()}
    assert set(BUNDLED) <= names and not {stem + ".gz" for stem in STEMS} & names


# TFDS branch, with a stand-in module so that nothing is downloaded


@pytest.fixture
def fake_tfds(monkeypatch):
    calls = []
    arrays = synthetic_set(n_train=30, n_test=10)

    def load(name, **kwargs):
        calls.append((name, kwargs))
        train = (arrays[0][..., None], arrays[1].astype(np.int64))
        test = (arrays[2][..., None], arrays[3].astype(np.int64))
        return [train, test]

    module = types.SimpleNamespace(load=load, as_numpy=lambda tree: tree)
    monkeypatch.setattr(data.tfds, "tfds", module)  # TFDS as the data package imports it
    return calls


def test_load_reads_prepared_tfds_folder_without_download(tmp_path, fake_tfds):
    splits = data.load("fashion_mnist", data_dir=tmp_path, validation_size=5)
    assert fake_tfds == [
        (
            "fashion_mnist",
            dict(
                data_dir=str(tmp_path),
                download=False,
                batch_size=-1,
                as_supervised=True,
                split=["train", "test"],
            ),
        )
    ]
    assert splits.train_x.shape == (25, 28, 28, 1) and splits.val_x.shape == (5, 28, 28, 1)
    assert splits.test_x.shape == (10, 28, 28, 1)


def test_load_without_data_dir_uses_default_tfds_folder(fake_tfds):
    data.load("mnist", validation_size=5)
    assert fake_tfds == [("mnist", dict(batch_size=-1, as_supervised=True, split=["train", "test"]))]


def test_load_reports_unprepared_tfds_folder(tmp_path):
    """Uses the real tensorflow_datasets, which finds no prepared data and must not download."""
    with pytest.raises(DataError) as info:
        data.load("mnist", data_dir=tmp_path)
    assert "mnist" in str(info.value) and str(tmp_path) in str(info.value)


def test_package_imports_no_tensorflow():
    code = (
        "import sys\n"
        "import tf_lottery.data as data\n"
        "data.load('mnist_small', validation_size=100)\n"
        "heavy = [m for m in ('tensorflow', 'tensorflow_datasets', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# the dataset registry


def test_datasets_and_shapes_come_from_the_registry():
    assert data.DATASETS == ("mnist", "fashion_mnist", "mnist_small", "cifar10", "cifar100", "imagenet2012",
                             "image_folder", "cifar10_jpeg")
    assert data.DATASETS == data.REGISTRY.names()
    assert data.SHAPES == {"mnist": ((28, 28, 1), 10), "fashion_mnist": ((28, 28, 1), 10),
                           "mnist_small": ((28, 28, 1), 10), "cifar10": ((32, 32, 3), 10),
                           "cifar100": ((32, 32, 3), 100), "imagenet2012": ((224, 224, 3), 1000),
                           "image_folder": (None, None), "cifar10_jpeg": ((32, 32, 3), 10)}
    assert all(data.REGISTRY.help(name) for name in data.DATASETS)
    assert not data.Splits.streamed and data.StreamedSplits.streamed  # input_pipeline reads this


def test_a_dataset_is_added_by_registration_alone():
    arrays = synthetic_set(n_train=30, n_test=10)

    @data.REGISTRY.register("tiny_synthetic", help="30 + 10 synthetic 28x28 images")
    class TinySynthetic(data.InMemoryDataset):
        name = "tiny_synthetic"
        input_shape = (28, 28, 1)
        num_classes = 10

        @classmethod
        def read(cls, data_dir):
            return arrays[0][..., None], arrays[1].astype(np.int64), arrays[2][..., None], arrays[3]

    try:
        assert data.DATASETS[-1] == "tiny_synthetic"
        assert data.SHAPES["tiny_synthetic"] == ((28, 28, 1), 10)
        splits = data.load("tiny_synthetic", validation_size=10, seed=3)
        assert isinstance(splits, data.Splits) and splits.name == "tiny_synthetic"
        assert splits.train_x.shape == (20, 28, 28, 1) and splits.val_x.shape == (10, 28, 28, 1)
        np.testing.assert_array_equal(splits.test_x[..., 0], arrays[2])
        with pytest.raises(DataError, match="validation_size=30 is out of range: dataset 'tiny_synthetic'"):
            data.load("tiny_synthetic", validation_size=30)
    finally:
        data.REGISTRY.unregister("tiny_synthetic")
    assert "tiny_synthetic" not in data.DATASETS and "tiny_synthetic" not in data.SHAPES
    with pytest.raises(DataError, match="unknown dataset 'tiny_synthetic'"):
        data.load("tiny_synthetic")


# tools/make_mnist_small.py


def test_make_mnist_small_is_reproducible_and_keeps_order(tmp_path):
    spec = importlib.util.spec_from_file_location("make_mnist_small", REPO / "tools/make_mnist_small.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    arrays = synthetic_set(n_train=100, n_test=40)
    source = write_idx_dir(tmp_path / "source", arrays)
    args = ["--source", str(source), "--train", "30", "--test", "10", "--seed", "0"]
    tool.main(args + ["--out", str(tmp_path / "a")])
    tool.main(args + ["--out", str(tmp_path / "b")])
    for name in BUNDLED:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    stems = tuple(name[:-len(".gz")] for name in BUNDLED)
    train_x, train_y, test_x, test_y = data.read_idx_dir(tmp_path / "a", stems)
    assert train_x.shape == (30, 28, 28, 1) and test_x.shape == (10, 28, 28, 1)
    kept = original_index(train_x)
    assert np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(train_y, arrays[1][kept])


# full MNIST from the shared folder


@pytest.mark.slow
def test_full_mnist_from_shared_folder(tmp_path):
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"{SHARED_MNIST} is not available")
    splits = data.load("mnist", data_dir=SHARED_MNIST, validation_size=0)
    assert len(splits.train_x) == 60000 and len(splits.test_x) == 10000
    assert len(splits.val_x) == 0
    counts = np.bincount(splits.train_y, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert splits.mean == pytest.approx(0.1307, abs=1e-4)
    assert splits.std == pytest.approx(0.3081, abs=1e-4)

    # The bundled subset is what the tool makes from these files.
    tool = REPO / "tools/make_mnist_small.py"
    command = [sys.executable, str(tool), "--source", str(SHARED_MNIST), "--out", str(tmp_path)]
    subprocess.run(command, check=True)
    for name in BUNDLED:
        np.testing.assert_array_equal(data.read_idx(tmp_path / name), data.read_idx(data.bundled_dir() / name))
