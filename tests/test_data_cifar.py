"""CIFAR-10/100 from synthetic archives in both formats."""

import pickle
import types

import numpy as np
import pytest

from tf_lottery import data
from tf_lottery.data import DataError

# (folder, train files, test file) of each archive version.
LAYOUTS = {
    ("cifar10", "python"): ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch"),
    ("cifar10", "binary"): ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)],
                            "test_batch.bin"),
    ("cifar100", "python"): ("cifar-100-python", ["train"], "test"),
    ("cifar100", "binary"): ("cifar-100-binary", ["train.bin"], "test.bin"),
}
CLASSES = {"cifar10": 10, "cifar100": 100}
FORMATS = sorted(LAYOUTS)


def synthetic_cifar(name, n_train=40, n_test=12, seed=0):
    """NHWC uint8 images whose pixel (0, 0) holds the example index in its red and green values."""
    rng = np.random.default_rng(seed)
    train_x = rng.integers(0, 256, size=(n_train, 32, 32, 3), dtype=np.uint8)
    train_x[:, 0, 0, 0] = np.arange(n_train) % 256
    train_x[:, 0, 0, 1] = np.arange(n_train) // 256
    train_y = rng.integers(0, CLASSES[name], size=n_train)
    test_x = rng.integers(0, 256, size=(n_test, 32, 32, 3), dtype=np.uint8)
    test_y = rng.integers(0, CLASSES[name], size=n_test)
    return train_x, train_y, test_x, test_y


def rows(images):
    """The archives' layout: per image the red plane, then green, then blue, each row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def write_batch(path, name, fmt, images, labels):
    if fmt == "python":
        entry = {b"batch_label": b"synthetic", b"data": rows(images),
                 b"filenames": [b"%d.png" % i for i in range(len(images))]}
        if name == "cifar10":
            entry[b"labels"] = [int(y) for y in labels]
        else:
            entry[b"fine_labels"] = [int(y) for y in labels]
            entry[b"coarse_labels"] = [int(y) // 5 for y in labels]
        path.write_bytes(pickle.dumps(entry, protocol=2))
    else:
        labels = np.asarray(labels, dtype=np.uint8)[:, None]
        if name == "cifar100":
            labels = np.concatenate([labels // 5, labels], axis=1)  # coarse, then fine
        path.write_bytes(np.concatenate([labels, rows(images)], axis=1).tobytes())


def write_cifar(root, name, fmt, arrays):
    """Writes the extracted archive folder under root and returns it."""
    folder_name, train_files, test_file = LAYOUTS[name, fmt]
    folder = root / folder_name
    folder.mkdir(parents=True)
    train_x, train_y, test_x, test_y = arrays
    for file, part in zip(train_files, np.array_split(np.arange(len(train_x)), len(train_files))):
        write_batch(folder / file, name, fmt, train_x[part], train_y[part])
    write_batch(folder / test_file, name, fmt, test_x, test_y)
    return folder


def original_index(images):
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


@pytest.mark.parametrize("name,fmt", FORMATS)
@pytest.mark.parametrize("point_at", ["archive folder", "parent"])
def test_read_cifar_dir_in_both_formats(tmp_path, name, fmt, point_at):
    arrays = synthetic_cifar(name)
    folder = write_cifar(tmp_path, name, fmt, arrays)
    train_x, train_y, test_x, test_y = data.read_cifar_dir(
        name, folder if point_at == "archive folder" else tmp_path)
    assert train_x.dtype == test_x.dtype == np.uint8
    assert train_x.shape == (40, 32, 32, 3) and test_x.shape == (12, 32, 32, 3)
    assert train_y.dtype == test_y.dtype == np.int64
    for loaded, original in zip((train_x, train_y, test_x, test_y), arrays):
        np.testing.assert_array_equal(loaded, original)  # batches in order; fine labels for cifar100


@pytest.mark.parametrize("name,fmt", FORMATS)
def test_pixel_layout_is_channel_major_in_the_files(tmp_path, name, fmt):
    folder_name, train_files, test_file = LAYOUTS[name, fmt]
    folder = tmp_path / folder_name
    folder.mkdir()
    record = np.zeros((1, 3072), dtype=np.uint8)
    h, w, c = 5, 7, 2
    record[0, 1024 * c + 32 * h + w] = 200
    record[0, 1] = 100  # red channel, row 0, column 1
    for file in train_files + [test_file]:
        if fmt == "python":
            key = b"labels" if name == "cifar10" else b"fine_labels"
            (folder / file).write_bytes(pickle.dumps({b"data": record, key: [3]}, protocol=2))
        else:
            label_bytes = bytes([3]) if name == "cifar10" else bytes([0, 3])
            (folder / file).write_bytes(label_bytes + record.tobytes())
    _, train_y, test_x, _ = data.read_cifar_dir(name, folder)
    image = test_x[0]
    assert image[h, w, c] == 200 and image[0, 1, 0] == 100
    assert np.count_nonzero(image) == 2
    assert train_y.tolist() == [3] * len(train_files)


@pytest.mark.parametrize("name,fmt", FORMATS)
def test_load_cifar_holds_out_a_seeded_validation_split(tmp_path, name, fmt):
    arrays = synthetic_cifar(name)
    write_cifar(tmp_path, name, fmt, arrays)
    splits = data.load(name, data_dir=tmp_path, validation_size=10, seed=3)
    assert splits.name == name and splits.num_classes == CLASSES[name]
    assert splits.input_shape == (32, 32, 3)
    assert splits.train_x.shape == (30, 32, 32, 3) and splits.val_x.shape == (10, 32, 32, 3)
    assert len(splits.train_y) == 30 and len(splits.val_y) == 10
    np.testing.assert_array_equal(splits.test_x, arrays[2])
    train_index, val_index = original_index(splits.train_x), original_index(splits.val_x)
    assert sorted(np.concatenate([train_index, val_index]).tolist()) == list(range(40))
    np.testing.assert_array_equal(splits.train_y, arrays[1][train_index])
    np.testing.assert_array_equal(splits.val_y, arrays[1][val_index])

    again = data.load(name, data_dir=tmp_path, validation_size=10, seed=3)
    other = data.load(name, data_dir=tmp_path, validation_size=10, seed=4)
    np.testing.assert_array_equal(original_index(again.val_x), val_index)
    assert set(original_index(other.val_x)) != set(val_index)

    # Scalars over all channels of the kept training images only.
    pixels = splits.train_x.astype(np.float64) / 255.0
    assert type(splits.mean) is float and type(splits.std) is float
    assert splits.mean == pytest.approx(pixels.mean(), rel=1e-12)
    assert splits.std == pytest.approx(pixels.std(), rel=1e-12)


def test_cifar_datasets_are_listed():
    assert {"cifar10", "cifar100"} <= set(data.DATASETS)


def test_load_cifar_rejects_validation_size_out_of_range(tmp_path):
    write_cifar(tmp_path, "cifar10", "binary", synthetic_cifar("cifar10"))
    with pytest.raises(DataError, match="validation_size=40 is out of range"):
        data.load("cifar10", data_dir=tmp_path, validation_size=40)


@pytest.mark.parametrize("name,fmt", FORMATS)
def test_missing_file_is_named(tmp_path, name, fmt):
    folder = write_cifar(tmp_path, name, fmt, synthetic_cifar(name))
    missing = folder / LAYOUTS[name, fmt][1][-1]
    missing.unlink()
    with pytest.raises(DataError) as info:
        data.load(name, data_dir=tmp_path)
    assert str(info.value) == f"{missing}: no such file"


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_truncated_binary_file_is_named(tmp_path, name):
    folder = write_cifar(tmp_path, name, "binary", synthetic_cifar(name))
    test_file = folder / LAYOUTS[name, "binary"][2]
    record = 3073 if name == "cifar10" else 3074
    test_file.write_bytes(test_file.read_bytes()[:-100])
    with pytest.raises(DataError) as info:
        data.load(name, data_dir=folder, validation_size=0)
    message = str(info.value)
    assert message.startswith(f"{test_file}: truncated")
    assert f"{12 * record - 100} bytes" in message and f"{record}-byte record" in message


def test_empty_binary_file_is_named(tmp_path):
    folder = write_cifar(tmp_path, "cifar10", "binary", synthetic_cifar("cifar10"))
    (folder / "data_batch_2.bin").write_bytes(b"")
    with pytest.raises(DataError, match="data_batch_2.bin: truncated"):
        data.read_cifar_dir("cifar10", folder)


def test_label_out_of_range_is_named(tmp_path):
    folder = write_cifar(tmp_path, "cifar10", "binary", synthetic_cifar("cifar10"))
    path = folder / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[3073] = 10  # the label of the second record
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as info:
        data.read_cifar_dir("cifar10", folder)
    assert str(info.value) == f"{path}: label 10 out of range 0..9"


@pytest.mark.parametrize("payload,match", [
    (b"not a pickle", "not a CIFAR python batch"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2)[:-20], "not a CIFAR python batch"),
    (pickle.dumps([1, 2, 3]), "expected a pickled dict, found list"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "no labels entry"),
    (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), r"shape \(n, 3072\)"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "expected 2 integer labels"),
])
def test_corrupt_pickle_is_named(tmp_path, payload, match):
    folder = write_cifar(tmp_path, "cifar10", "python", synthetic_cifar("cifar10"))
    path = folder / "data_batch_4"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=match) as info:
        data.load("cifar10", data_dir=tmp_path)
    assert str(info.value).startswith(f"{path}: ")


class _Trap:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickle_cannot_run_code(tmp_path):
    folder = write_cifar(tmp_path, "cifar10", "python", synthetic_cifar("cifar10"))
    marker = tmp_path / "created-by-the-pickle"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Trap(marker), b"labels": []}))
    with pytest.raises(DataError, match=r"refusing to load io\.open"):
        data.read_cifar_dir("cifar10", folder)
    assert not marker.exists()


def test_folder_without_cifar_files_falls_back_to_tfds(tmp_path, monkeypatch):
    calls = []
    arrays = synthetic_cifar("cifar100", n_train=20, n_test=5)

    def load(name, **kwargs):
        calls.append((name, kwargs))
        return [(arrays[0], arrays[1]), (arrays[2], arrays[3])]

    module = types.SimpleNamespace(load=load, as_numpy=lambda tree: tree)
    monkeypatch.setattr(data.tfds, "tfds", module)  # TFDS as the data package imports it
    splits = data.load("cifar100", data_dir=tmp_path, validation_size=5)
    assert calls == [("cifar100", dict(data_dir=str(tmp_path), download=False, batch_size=-1,
                                       as_supervised=True, split=["train", "test"]))]
    assert splits.num_classes == 100
    assert splits.train_x.shape == (15, 32, 32, 3) and splits.test_x.shape == (5, 32, 32, 3)


def test_unprepared_tfds_folder_names_the_cifar_folders(tmp_path):
    """Uses the real tensorflow_datasets, which finds no prepared data and must not download."""
    with pytest.raises(DataError) as info:
        data.load("cifar10", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "cifar-10-batches-py/" in message
    assert "cifar-10-batches-bin/" in message


def test_read_cifar_dir_reports_a_folder_without_cifar_files(tmp_path):
    with pytest.raises(DataError) as info:
        data.read_cifar_dir("cifar100", tmp_path)
    assert str(info.value) == f"{tmp_path}: no cifar100 files (looked for cifar-100-python or cifar-100-binary)"
    with pytest.raises(DataError, match="unknown CIFAR dataset 'mnist'"):
        data.read_cifar_dir("mnist", tmp_path)
