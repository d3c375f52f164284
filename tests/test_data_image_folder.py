"""Image folders (and zips of them) as a dataset: exact pixels, labels, splits, resize, errors, streaming."""

import json
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import data, imp, results, training
from tf_lottery.data import DataError, image_folder

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_ZIP = REPO.parent / "shared/data/cifar10_jpeg/cifar10_jpeg.zip"
# Sorted names: ant=0, bee=1, cat=2; file counts differ per class and split.
TRAIN_COUNTS = {"cat": 5, "ant": 4, "bee": 3}
TEST_COUNTS = {"cat": 1, "ant": 2, "bee": 2}
CLASSES = ("ant", "bee", "cat")
SHAPE = (6, 5, 3)  # not square, so height and width cannot be swapped unseen
FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "mean", "std")


def pixels(seed, shape=SHAPE):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def png(image):
    return tf.io.encode_png(image).numpy()


def jpeg(image):
    return tf.io.encode_jpeg(image, quality=90).numpy()


def write(root, files):
    """Writes {relative path: bytes} below root (None makes an empty folder); returns root."""
    for relative, content in files.items():
        path = root / relative
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def make_zip(path, folder, top="", compression=zipfile.ZIP_STORED, folders=True):
    """A zip of everything below `folder`, under the top folder `top` (e.g. 'data/'), with folder entries."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for item in sorted(folder.rglob("*")):
            name = top + item.relative_to(folder).as_posix()
            if item.is_dir():
                if folders:
                    archive.writestr(name + "/", b"")
            else:
                archive.write(item, name)
    return path


def interleave(per_class):
    """The loader's example order: the first item of every class, then the second, ..."""
    items, labels = [], []
    for rank in range(max(len(items) for items in per_class)):
        for label, class_items in enumerate(per_class):
            if rank < len(class_items):
                items.append(class_items[rank])
                labels.append(label)
    return items, np.array(labels)


def split_layout(root, encode=png, shape=SHAPE):
    """train/ and test/ folders of PNGs; returns the expected (train_x, train_y, test_x, test_y)."""
    files, arrays = {}, []
    for split, counts, offset in (("train", TRAIN_COUNTS, 0), ("test", TEST_COUNTS, 100)):
        per_class = []
        for name in CLASSES:
            images = [pixels(offset + 10 * CLASSES.index(name) + i, shape) for i in range(counts[name])]
            for i, image in enumerate(images):
                files[f"{split}/{name}/{i:03d}.{'png' if encode is png else 'jpg'}"] = encode(image)
            per_class.append(images)
        items, labels = interleave(per_class)
        arrays += [np.stack(items), labels]
    write(root, files)
    return tuple(arrays)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    return root, split_layout(root)


# reading


def test_pngs_come_back_exactly_with_sorted_class_labels(folder):
    root, (train_x, train_y, test_x, test_y) = folder
    splits = data.load("image_folder", data_dir=root, validation_size=0)
    assert isinstance(splits, data.Splits) and splits.class_names == CLASSES and splits.num_classes == 3
    np.testing.assert_array_equal(splits.train_x, train_x)
    np.testing.assert_array_equal(splits.train_y, train_y)
    np.testing.assert_array_equal(splits.test_x, test_x)
    np.testing.assert_array_equal(splits.test_y, test_y)
    assert splits.train_y[:3].tolist() == [0, 1, 2]  # classes interleave: any prefix is balanced
    assert (splits.mean, splits.std) == data.pixel_stats(train_x)
    assert splits.input_shape == SHAPE and splits.train_x.dtype == np.uint8


def test_validation_is_the_seeded_hold_out_of_every_dataset(folder):
    root, arrays = folder
    splits = data.load("image_folder", data_dir=root, validation_size=4, seed=3)
    expected = data.hold_out("image_folder", arrays, 3, 4, 3)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(splits, field), getattr(expected, field))


def test_jpeg_grey_and_alpha_images_decode_to_rgb(tmp_path):
    colour, grey, alpha = pixels(1), pixels(2, (6, 5, 1)), pixels(3, (6, 5, 4))
    root = write(tmp_path / "d", {"train/a/0.jpg": jpeg(colour), "train/a/1.PNG": png(grey),
                                  "train/b/0.jpeg": jpeg(pixels(4)), "train/b/1.png": png(alpha),
                                  "test/a/0.png": png(colour), "test/b/0.png": png(grey)})
    splits = data.load("image_folder", data_dir=root, validation_size=0)
    decoded = tf.io.decode_jpeg(jpeg(colour), channels=3, dct_method="INTEGER_ACCURATE").numpy()
    np.testing.assert_array_equal(splits.train_x[0], decoded)  # a/0.jpg
    np.testing.assert_array_equal(splits.train_x[2], np.repeat(grey, 3, axis=-1))  # a/1.PNG
    np.testing.assert_array_equal(splits.train_x[3], alpha[..., :3])  # b/1.png
    assert splits.train_y.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("top, compression, folders", [
    ("", zipfile.ZIP_STORED, True), ("cifar_like/", zipfile.ZIP_STORED, False),
    ("data/", zipfile.ZIP_DEFLATED, True)])
def test_a_zip_reads_like_the_folder(folder, tmp_path, top, compression, folders):
    root, _ = folder
    (root / "README.md").write_text("files beside train/ and test/ are ignored, in the zip's top folder too")
    archive = make_zip(tmp_path / "images.zip", root, top, compression, folders)
    from_folder = data.load("image_folder", data_dir=root, validation_size=3, seed=1)
    holder = write(tmp_path / "holder", {"README.md": b"a folder holding one zip and files reads the zip"})
    for data_dir in (archive, holder):
        if data_dir == holder:
            archive.rename(holder / archive.name)
        from_zip = data.load("image_folder", data_dir=data_dir, validation_size=3, seed=1)
        for field in (*FIELDS, "class_names"):
            np.testing.assert_array_equal(getattr(from_zip, field), getattr(from_folder, field))


def test_a_jpeg_whose_frame_header_comes_after_16_kb_of_metadata(tmp_path):
    image = pixels(7, (9, 11, 3))
    encoded = jpeg(image)
    metadata = b"\xff\xe1" + (20002).to_bytes(2, "big") + bytes(20000)  # an APP1 segment
    root = write(tmp_path / "d", {**_both(), "train/a/1.jpg": encoded[:2] + metadata + encoded[2:]})
    with pytest.raises(DataError, match=r"d/train/a/1.jpg: images differ in size \(9x11 here, 6x5"):
        data.load("image_folder", data_dir=root, validation_size=0, image_size=None)
    splits = data.load("image_folder", data_dir=root, validation_size=0, image_size=9)
    decoded = tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE").numpy()
    resized = np.clip(np.round(tf.image.resize(decoded, (9, 9), antialias=True).numpy()), 0, 255)
    np.testing.assert_array_equal(splits.train_x[2], resized.astype(np.uint8))


def test_one_folder_of_classes_holds_out_a_fixed_fifth_of_each_class(tmp_path):
    counts = {"x": 10, "y": 7, "z": 3}
    files = {f"{name}/{i:02d}.png": png(pixels(100 * j + i, (4, 4, 3)))
             for j, (name, count) in enumerate(counts.items()) for i in range(count)}
    root = write(tmp_path / "d", {**files, "README.txt": b"files beside the class folders are ignored"})
    first = data.load("image_folder", data_dir=root, validation_size=2, seed=0)
    other_seed = data.load("image_folder", data_dir=root, validation_size=2, seed=1)
    assert np.bincount(first.test_y).tolist() == [2, 1, 1]  # 20% rounded: 2 of 10, 1 of 7, 1 of 3 (0.6)
    assert len(first.train_y) + len(first.val_y) == 20 - 4
    np.testing.assert_array_equal(first.test_x, other_seed.test_x)  # the test split ignores the seed
    assert not np.array_equal(first.val_x, other_seed.val_x)
    # The test images are the last fifth of each class in an order fixed by TEST_SPLIT_SEED.
    for label, (name, count) in enumerate(counts.items()):
        order = np.random.default_rng([data.image_folder.TEST_SPLIT_SEED, label]).permutation(count)
        held = sorted(order[count - int(0.2 * count + 0.5):])
        expected = [pixels(100 * label + i, (4, 4, 3)) for i in held]
        np.testing.assert_array_equal(first.test_x[first.test_y == label], np.stack(expected))


def test_image_size_resizes_images_of_mixed_sizes(tmp_path):
    big, small, exact = pixels(1, (12, 10, 3)), pixels(2, (5, 7, 3)), pixels(3, (8, 8, 3))
    root = write(tmp_path / "d", {"train/a/0.png": png(big), "train/b/0.png": png(exact),
                                  "test/a/0.png": png(small), "test/b/0.png": png(exact)})
    splits = data.load("image_folder", data_dir=root, validation_size=0, image_size=8)
    assert splits.input_shape == (8, 8, 3)
    expected = tf.image.resize(big, (8, 8), antialias=True).numpy()
    np.testing.assert_array_equal(splits.train_x[0], np.clip(np.round(expected), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(splits.train_x[1], exact)  # already 8x8: untouched
    with pytest.raises(DataError, match=r"/train/b/0.png: images differ in size \(8x8 here, 12x10 in .*"
                                        r"/train/a/0.png\); pass image_size"):
        data.load("image_folder", data_dir=root, validation_size=0, image_size=None)


def test_images_of_one_size_keep_it_whatever_image_size_says(folder):
    root, (train_x, *_) = folder
    splits = data.load("image_folder", data_dir=root, validation_size=0, image_size=64)
    np.testing.assert_array_equal(splits.train_x, train_x)


def test_cifar10_jpeg_reads_a_zip_of_the_cifar_classes(tmp_path):
    files = {f"{split}/{name}/{i}.jpg": jpeg(pixels(i, (32, 32, 3)))
             for split, count in (("train", 2), ("test", 1)) for name in data.CIFAR10_CLASSES
             for i in range(count)}
    root = write(tmp_path / "extracted", files)
    holder = tmp_path / "holder"
    holder.mkdir()
    make_zip(holder / "cifar10_jpeg.zip", root, "CIFAR-10-images/")
    (holder / "README.md").write_text("beside the zip")
    assert data.SHAPES["cifar10_jpeg"] == ((32, 32, 3), 10)
    for data_dir in (holder, holder / "cifar10_jpeg.zip", root):
        splits = data.load("cifar10_jpeg", data_dir=data_dir, validation_size=5, image_size=224)
        assert splits.input_shape == (32, 32, 3) and splits.class_names == data.CIFAR10_CLASSES
        assert len(splits.train_y) == 15 and np.bincount(splits.test_y).tolist() == [1] * 10
    model = tfl.models.build("conv2", input_shape=splits.input_shape, num_classes=splits.num_classes)
    assert model.output_shape == (None, 10)


def test_which_datasets_take_image_size():
    assert data.takes_image_size("image_folder") and data.takes_image_size("imagenet2012")
    assert not data.takes_image_size("cifar10_jpeg") and not data.takes_image_size("mnist")
    assert not data.takes_image_size("no_such_dataset")
    assert data.SHAPES["image_folder"] == (None, None)  # known once the folder is read


def test_importing_the_data_package_loads_no_tensorflow():
    code = "import sys, tf_lottery.data; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


# bad folders: one line naming the file or folder


def _good(split="train"):
    return {f"{split}/a/0.png": png(pixels(0)), f"{split}/b/0.png": png(pixels(1))}


def _both():
    return {**_good("train"), **_good("test")}


def _truncated_png():
    content = png(pixels(5))
    return content[:len(content) // 2]


BAD_FOLDERS = [
    ({"README.md": b"no folders"}, "d: no class folders"),
    ({"train/a/0.png": png(pixels(0)), "test/a/0.png": png(pixels(0))},
     "d/train: only one class folder, 'a'"),
    ({**_both(), "train/c": None, "test/c/0.png": png(pixels(2))}, "d/train/c: class folder holds no images"),
    ({**_both(), "train/b/1.png": b"not an image at all"}, "d/train/b/1.png: not a PNG or JPEG image"),
    ({**_both(), "train/b/1.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF"},
     "d/train/b/1.jpg: not a PNG or JPEG image"),
    ({**_both(), "test/a/1.png": _truncated_png()}, "d/test/a/1.png: cannot be decoded"),
    ({**_both(), "train/a/notes.txt": b"hello"}, "d/train/a/notes.txt: not a PNG or JPEG file by its name"),
    ({**_both(), "train/a/deeper/0.png": png(pixels(3))}, "d/train/a/deeper: a folder inside a class folder"),
    ({**_good("train"), "test/a/0.png": png(pixels(0)), "test/c/0.png": png(pixels(1))},
     "d/test: its classes differ from train/'s: 'b' only in train, 'c' only in test"),
    (_good("train"), "d/test: no such folder"),
    ({**_both(), "validation/a/0.png": png(pixels(0))},
     "d/validation: unexpected folder beside train/ and test/"),
    ({**_both(), "test/b/1.png": png(pixels(9, (7, 5, 3)))},
     "d/test/b/1.png: images differ in size (7x5 here, 6x5 in"),
    ({"a/0.png": png(pixels(0)), "b/0.png": png(pixels(1))}, "d: no test images"),
]


@pytest.mark.parametrize("files, message", BAD_FOLDERS,
                         ids=[m.split(":")[1].strip()[:30] for _, m in BAD_FOLDERS])
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_bad_folders_fail_in_one_line_naming_the_file(tmp_path, files, message, as_zip):
    root = write(tmp_path / "d", files)
    data_dir = make_zip(tmp_path / "d.zip", root) if as_zip else root
    with pytest.raises(DataError) as error:
        data.load("image_folder", data_dir=data_dir, validation_size=0, image_size=None)
    text = str(error.value)
    assert len(text.splitlines()) == 1
    where = message.split(":")[0]
    expected = str(tmp_path / "d.zip") + where[1:] if as_zip else str(tmp_path / where)
    assert text.startswith(expected + ":") and message.split(":", 1)[1] in text, text


def test_hidden_files_and_folders_are_skipped(tmp_path):
    hidden = {"train/a/.DS_Store": b"\x00\x01", "train/a/._0.png": b"junk", ".git/config": b"x",
              "train/.cache/0.png": b"x", "__MACOSX/train/a/0.png": b"x"}
    root = write(tmp_path / "d", {**_both(), **hidden})
    splits = data.load("image_folder", data_dir=root, validation_size=0)
    assert len(splits.train_y) == 2 and splits.class_names == ("a", "b")


@pytest.mark.parametrize("data_dir, kwargs, message", [
    (None, {}, "dataset 'image_folder' needs --data_dir"),
    ("missing", {}, "missing: data_dir for dataset 'image_folder' does not exist"),
    ("fake.zip", {}, "fake.zip: not a readable zip file"),
    ("d", {"validation_size": 2}, "validation_size=2 is out of range: dataset 'image_folder' has 2"),
    ("d", {"image_size": 0}, "image_size must be a positive integer or None, got 0"),
])
def test_bad_arguments(tmp_path, data_dir, kwargs, message):
    write(tmp_path / "d", _both())
    (tmp_path / "fake.zip").write_bytes(b"PK not really")
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        data.load("image_folder", data_dir=data_dir and tmp_path / data_dir,
                  **{"validation_size": 0, **kwargs})


def test_cifar10_jpeg_refuses_other_classes_shapes_and_layouts(tmp_path):
    with pytest.raises(DataError, match="classes a, b; dataset 'cifar10_jpeg' expects airplane, automobile"):
        data.load("cifar10_jpeg", data_dir=write(tmp_path / "d", _both()), validation_size=0)
    files = {f"{split}/{name}/0.png": png(pixels(0, (8, 8, 3)))
             for split in ("train", "test") for name in data.CIFAR10_CLASSES}
    with pytest.raises(DataError, match=r"shape \(8, 8, 3\); dataset 'cifar10_jpeg' expects \(32, 32, 3\)"):
        data.load("cifar10_jpeg", data_dir=write(tmp_path / "e", files), validation_size=0)
    files = {f"{name}/{i}.png": png(pixels(i, (32, 32, 3))) for name in data.CIFAR10_CLASSES
             for i in range(5)}
    with pytest.raises(DataError, match="dataset 'cifar10_jpeg' needs train/ and test/ folders"):
        data.load("cifar10_jpeg", data_dir=write(tmp_path / "f", files), validation_size=0)


def test_an_image_folder_with_fixed_classes_shape_and_channels_is_one_registration(tmp_path):
    @data.REGISTRY.register("tiny_grey", help="grey 6x5 images in classes a and b")
    class TinyGrey(data.ImageFolder):
        name = "tiny_grey"
        input_shape = (6, 5, 1)
        num_classes = 2
        class_names = ("a", "b")
        channels = 1
        needs_test_folder = True

    try:
        assert data.SHAPES["tiny_grey"] == ((6, 5, 1), 2)
        grey = pixels(3, (6, 5, 1))
        root = write(tmp_path / "d", {**_both(), "train/a/0.png": png(grey)})
        splits = data.load("tiny_grey", data_dir=root, validation_size=0)
        assert splits.name == "tiny_grey" and splits.input_shape == (6, 5, 1)
        np.testing.assert_array_equal(splits.train_x[0], grey)
    finally:
        data.REGISTRY.unregister("tiny_grey")


# streamed


@pytest.fixture
def streamed(monkeypatch):
    monkeypatch.setattr(data.ImageFolder, "stream_above", 0)


@pytest.mark.parametrize("compression", [None, zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED],
                         ids=["folder", "stored_zip", "deflated_zip"])
def test_above_the_threshold_the_folder_is_streamed(folder, tmp_path, monkeypatch, compression):
    root, _ = folder
    data_dir = root if compression is None else make_zip(tmp_path / "d.zip", root, compression=compression)
    in_memory = data.load("image_folder", data_dir=root, validation_size=3, seed=2)
    monkeypatch.setattr(data.ImageFolder, "stream_above", 0)
    splits = data.load("image_folder", data_dir=data_dir, validation_size=3, seed=2)
    assert isinstance(splits, data.StreamedImageFolder) and splits.streamed
    assert isinstance(splits, data.StreamedSplits)  # what run_rounds and the trainer take
    assert (splits.train_size, splits.validation_size, splits.test_size) == (9, 3, 5)
    assert splits.input_shape == SHAPE and splits.num_classes == 3 and splits.class_names == CLASSES
    # All kept training images fit the stats sample, so mean and std are those of the in-memory splits.
    assert (splits.mean, splits.std) == (in_memory.mean, in_memory.std)
    assert splits.normalization == in_memory.normalization

    def normalised(x):
        scaled = x.astype(np.float32) / np.float32(255.0)
        return (scaled - np.float32(in_memory.mean)) / np.float32(in_memory.std)

    for split, x, y in (("validation", in_memory.val_x, in_memory.val_y),
                        ("test", in_memory.test_x, in_memory.test_y)):
        batches = list(splits.eval_batches(split, 2).as_numpy_iterator())
        np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), normalised(x), rtol=1e-6)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    x, y = splits.test_arrays()
    np.testing.assert_allclose(x, in_memory.test_arrays()[0], rtol=1e-6)

    # An epoch of training batches is a permutation of the kept training images, fixed by the seed.
    first = list(splits.train_batches(3, seed=5).take(3).as_numpy_iterator())
    again = list(splits.train_batches(3, seed=5).take(3).as_numpy_iterator())
    other = list(splits.train_batches(3, seed=6).take(3).as_numpy_iterator())
    epoch = np.concatenate([b[0] for b in first])
    candidates = normalised(in_memory.train_x)
    order = [int(np.argmin(np.abs(candidates - image).sum(axis=(1, 2, 3)))) for image in epoch]
    assert sorted(order) == list(range(9))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in first]), in_memory.train_y[order])
    np.testing.assert_array_equal(epoch, np.concatenate([b[0] for b in again]))
    assert not np.array_equal(epoch, np.concatenate([b[0] for b in other]))


def test_a_streamed_iterator_resumes_from_its_checkpoint(folder, tmp_path, streamed):
    root, _ = folder
    splits = data.load("image_folder", data_dir=make_zip(tmp_path / "d.zip", root), validation_size=0)
    iterator = iter(splits.train_batches(4, seed=0))
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    path = checkpoint.save(str(tmp_path / "ckpt" / "it"))
    expected = [next(iterator)[1].numpy() for _ in range(3)]
    checkpoint.restore(path)
    assert [next(iterator)[1].numpy().tolist() for _ in range(3)] == [e.tolist() for e in expected]


def test_zip_members_compressed_otherwise_than_deflate_are_refused(folder, tmp_path):
    archive = make_zip(tmp_path / "d.zip", folder[0], compression=zipfile.ZIP_BZIP2)
    with pytest.raises(DataError, match="d.zip/train/ant/000.png: zip compression method 12; only stored and "
                                        "deflated members are read"):
        data.load("image_folder", data_dir=archive, validation_size=0)


def test_streamed_mixed_sizes_are_resized(tmp_path, streamed):
    root = write(tmp_path / "d", {"train/a/0.png": png(pixels(1, (12, 10, 3))),
                                  "train/b/0.png": png(pixels(2)), "test/a/0.png": png(pixels(3)),
                                  "test/b/0.png": png(pixels(4, (3, 3, 3)))})
    splits = data.load("image_folder", data_dir=root, validation_size=0, image_size=8)
    assert splits.input_shape == (8, 8, 3)
    x, y = splits.test_arrays()
    assert x.shape == (2, 8, 8, 3) and y.tolist() == [0, 1]


# training on it


def _train_folder(root, n=12, side=8):
    """A learnable folder: class k's images are bright in quadrant k."""
    files = {}
    for split, count in (("train", n), ("test", 3)):
        for label, name in enumerate(("k0", "k1", "k2")):
            for i in range(count):
                image = pixels(1000 * label + 10 * i + (split == "test"), (side, side, 3)) // 2
                r, c = divmod(label, 2)
                image[r * side // 2:(r + 1) * side // 2, c * side // 2:(c + 1) * side // 2] += 120
                files[f"{split}/{name}/{i}.png"] = png(image)
    return write(root, files)


@pytest.mark.parametrize("stream_above", [data.ImageFolder.stream_above, 0], ids=["in_memory", "streamed"])
def test_run_rounds_takes_the_splits_of_an_image_folder(tmp_path, monkeypatch, stream_above):
    training.configure_runtime(0)
    monkeypatch.setattr(data.ImageFolder, "stream_above", stream_above)
    splits = data.load("image_folder", data_dir=_train_folder(tmp_path / "d"), validation_size=6)
    assert splits.streamed == (stream_above == 0)
    model = tfl.wrap(tfl.models.build("lenet", input_shape=splits.input_shape, num_classes=3, hidden=(16,)))
    records = imp.run_rounds(model, splits, rounds=1, experiment_dir=tmp_path / "exp",
                             training_config=tfl.TrainingConfig(train_steps=20, batch_size=10, eval_every=10,
                                                                checkpoint_every=10, steps_per_call=10),
                             pruning_config=tfl.PruningConfig(fraction=0.5))
    assert [r["round"] for r in records] == [0, 1] and records[1]["early_stop_test_accuracy"] > 0.5
    assert json.loads((tmp_path / "exp/config.json").read_text())["dataset"] == "image_folder"


def test_lottery_binary_trains_on_an_image_folder_and_refuses_a_bad_one(tmp_path):
    root = _train_folder(tmp_path / "d")
    args = ["--dataset=image_folder", f"--data_dir={root}", "--model=conv2", "--hidden=16,16",
            "--validation_size=6", "--rounds=1", "--train_steps=20", "--batch_size=10", "--eval_every=10",
            "--checkpoint_every=10", f"--root_dir={tmp_path / 'out'}"]
    done = subprocess.run([sys.executable, "-m", "binaries.lottery", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (experiment,) = (tmp_path / "out").iterdir()
    summary = json.loads((experiment / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    assert results.read_class_names(experiment) == ("k0", "k1", "k2")  # the labels, in config.json
    (root / "train/k1/bad.png").write_bytes(b"garbage")
    bad_args = [*args[:-1], f"--root_dir={tmp_path / 'bad'}"]
    bad = subprocess.run([sys.executable, "-m", "binaries.lottery", *bad_args], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"lottery: error: {root}/train/k1/bad.png: not a PNG or JPEG image (unreadable or truncated header)"]
    assert not (tmp_path / "bad").exists()


# the shared CIFAR-10 JPEG copy


@pytest.mark.slow
def test_the_shared_cifar10_jpeg_zip():
    if not SHARED_ZIP.is_file():
        pytest.skip(f"{SHARED_ZIP} is not available")
    splits = data.load("cifar10_jpeg", data_dir=SHARED_ZIP.parent, validation_size=0)
    assert splits.train_x.shape == (50000, 32, 32, 3) and splits.test_x.shape == (10000, 32, 32, 3)
    assert splits.class_names == data.CIFAR10_CLASSES
    assert np.bincount(splits.train_y).tolist() == [5000] * 10
    assert np.bincount(splits.test_y).tolist() == [1000] * 10
    # The README's per-channel means of the decoded images.
    train_mean = splits.train_x.reshape(-1, 3).mean(axis=0) / 255.0
    test_mean = splits.test_x.reshape(-1, 3).mean(axis=0) / 255.0
    np.testing.assert_allclose(train_mean, [0.4913, 0.4821, 0.4465], atol=5e-4)
    np.testing.assert_allclose(test_mean, [0.4941, 0.4851, 0.4504], atol=5e-4)
    with_validation = data.load("cifar10_jpeg", data_dir=SHARED_ZIP, validation_size=5000, seed=0)
    assert len(with_validation.train_y) == 45000 and len(with_validation.val_y) == 5000
