"""ImageNet: the preprocessing on small images, and the streamed splits through a stand-in TFDS."""

import json
import types

import numpy as np
import pytest

from tf_lottery import data
from tf_lottery.config import ConfigError, ExperimentConfig
from tf_lottery.data import DataError


SHAPES = [(32, 32, 3), (50, 70, 3), (97, 41, 3), (300, 200, 3)]


def uint8_image(shape, seed=0):
    import tensorflow as tf

    return tf.constant(np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8))


def normalized(value):
    return (value / 255.0 - np.array(data.IMAGENET_MEAN)) / np.array(data.IMAGENET_STD)


@pytest.mark.parametrize("shape", SHAPES)
def test_imagenet_train_image_shape_dtype_and_determinism(shape):
    import tensorflow as tf

    image = uint8_image(shape)
    first = data.imagenet_train_image(image, tf.constant([1, 2]), image_size=24)
    again = data.imagenet_train_image(image, tf.constant([1, 2]), image_size=24)
    assert first.shape == (24, 24, 3) and first.dtype == tf.float32
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    others = [data.imagenet_train_image(image, tf.constant([1, s]), image_size=24).numpy()
              for s in range(3, 8)]
    assert not any(np.array_equal(first.numpy(), other) for other in others)


def test_imagenet_train_image_normalises_per_channel():
    import tensorflow as tf

    image = tf.constant(np.broadcast_to(np.array([10, 128, 250], np.uint8), (40, 60, 3)))
    result = data.imagenet_train_image(image, tf.constant([0, 0]), image_size=16).numpy()
    np.testing.assert_allclose(result, np.broadcast_to(normalized(np.array([10, 128, 250])), (16, 16, 3)),
                               rtol=1e-5, atol=1e-5)


def test_imagenet_train_image_flips_half_the_time():
    import tensorflow as tf

    # Columns 0..63; a flip reverses their order, a crop keeps it.
    image = tf.constant(np.broadcast_to(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 64, 3)))
    increasing = [bool(np.all(np.diff(data.imagenet_train_image(image, tf.constant([7, s]), 32).numpy()[
        16, :, 0]) >= 0)) for s in range(40)]
    assert 5 < sum(increasing) < 35


@pytest.mark.parametrize("shape", SHAPES)
def test_imagenet_eval_image_shape_dtype_and_determinism(shape):
    import tensorflow as tf

    image = uint8_image(shape)
    first = data.imagenet_eval_image(image, image_size=24)
    assert first.shape == (24, 24, 3) and first.dtype == tf.float32
    np.testing.assert_array_equal(first.numpy(), data.imagenet_eval_image(image, image_size=24).numpy())


def test_imagenet_eval_image_takes_the_central_crop():
    import tensorflow as tf

    # image_size 28 resizes the shorter side to 256 * 28 / 224 = 32: a 32x64 image keeps its size.
    values = np.arange(32 * 64 * 3).reshape(32, 64, 3) % 251
    result = data.imagenet_eval_image(tf.constant(values.astype(np.uint8)), image_size=28).numpy()
    np.testing.assert_allclose(result, normalized(values[2:30, 18:46]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,resized,corner", [
    ((128, 256, 3), (256, 512), (16, 144)),
    ((300, 200, 3), (384, 256), (80, 16)),
])
def test_imagenet_eval_image_resizes_the_shorter_side_to_256(shape, resized, corner):
    import tensorflow as tf

    image = uint8_image(shape)
    result = data.imagenet_eval_image(image, image_size=224).numpy()
    top, left = corner
    expected = tf.image.resize(image, resized).numpy()[top:top + 224, left:left + 224]
    np.testing.assert_allclose(result, normalized(expected), rtol=1e-5, atol=1e-5)


TRAIN, VALIDATION = 10, 5


def encoded(shape, seed):
    import tensorflow as tf

    return tf.io.encode_png(uint8_image(shape, seed)).numpy()


@pytest.fixture
def fake_imagenet(monkeypatch, tmp_path):
    """A prepared folder and a stand-in tensorflow_datasets: imagenet2012 has 10 train and 5
    validation PNG images of mixed shapes, labels equal to their index (+100 for validation)."""
    import tensorflow as tf

    info = tmp_path / "tfds" / "imagenet2012" / "5.1.0" / "dataset_info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"name": "imagenet2012", "splits": [
        {"name": "train", "shardLengths": ["6", "4"]},
        {"name": "validation", "shardLengths": [str(VALIDATION)]}]}))
    calls = []
    # Real TFRecord files, like TFDS's, so the iterator position can be checkpointed.
    files = {}
    for name, count, offset in (("train", TRAIN, 0), ("validation", VALIDATION, 100)):
        files[name] = str(info.parent / f"{name}.tfrecord")
        with tf.io.TFRecordWriter(files[name]) as writer:
            for i in range(count):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[encoded(SHAPES[i % len(SHAPES)], offset + i)])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[offset + i]))}))
                writer.write(example.SerializeToString())
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def split(name, part):
        parsed = tf.data.TFRecordDataset(files[name]).map(
            lambda record: tuple(tf.io.parse_single_example(record, spec).values()))
        start = part.start or 0
        return parsed.skip(start).take(-1 if part.stop is None else part.stop - start)

    def load(name, **kwargs):
        calls.append((name, kwargs))
        if not kwargs.get("data_dir", "").endswith("tfds"):
            raise AssertionError("Dataset imagenet2012: could not find data")
        assert kwargs["decoders"] == {"image": "skip"} and kwargs["download"] is False
        return split(kwargs["split"].split("[")[0], _slice(kwargs["split"]))

    module = types.SimpleNamespace(
        load=load, ReadConfig=lambda **kwargs: ("read_config", kwargs),
        decode=types.SimpleNamespace(SkipDecoding=lambda: "skip"))
    monkeypatch.setattr(data.tfds, "tfds", module)  # TFDS as the data package imports it
    return types.SimpleNamespace(calls=calls, data_dir=tmp_path / "tfds")


def _slice(split):
    """'train' -> slice(None); 'train[3:]' -> slice(3, None); 'train[:3]' -> slice(None, 3)."""
    if "[" not in split:
        return slice(None)
    start, stop = split[split.index("[") + 1:-1].split(":")
    return slice(int(start) if start else None, int(stop) if stop else None)


def _labels(dataset):
    return np.concatenate([y for _, y in dataset.as_numpy_iterator()]).tolist()


def test_imagenet_train_and_eval_from_a_prepared_folder(fake_imagenet):
    train = data.imagenet_train(fake_imagenet.data_dir, batch_size=4, seed=3, image_size=24)
    validation = data.imagenet_eval(fake_imagenet.data_dir, batch_size=4, image_size=24)
    assert [(kwargs["split"], kwargs["data_dir"], kwargs["as_supervised"])
            for _, kwargs in fake_imagenet.calls] == [
        ("train", str(fake_imagenet.data_dir), True), ("validation", str(fake_imagenet.data_dir), True)]

    batches = list(train.take(4).as_numpy_iterator())  # endless: more than the 10 images
    assert all(x.shape == (4, 24, 24, 3) and x.dtype == np.float32 for x, _ in batches)
    assert all(y.dtype == np.int64 and set(y) <= set(range(TRAIN)) for _, y in batches)
    again = list(data.imagenet_train(fake_imagenet.data_dir, batch_size=4, seed=3, image_size=24)
                 .take(4).as_numpy_iterator())
    for (x, y), (x_again, y_again) in zip(batches, again):
        np.testing.assert_array_equal(x, x_again)
        np.testing.assert_array_equal(y, y_again)

    val = list(validation.as_numpy_iterator())
    assert [x.shape for x, _ in val] == [(4, 24, 24, 3), (1, 24, 24, 3)]
    assert np.concatenate([y for _, y in val]).tolist() == [100, 101, 102, 103, 104]
    np.testing.assert_array_equal(val[0][0][1], data.imagenet_eval_image(uint8_image(SHAPES[1], 101), 24))


def test_load_describes_the_streamed_splits_without_reading_images(fake_imagenet):
    splits = data.load("imagenet2012", data_dir=fake_imagenet.data_dir, validation_size=3, image_size=32)
    assert isinstance(splits, data.StreamedSplits) and not fake_imagenet.calls
    assert (splits.train_size, splits.validation_size, splits.test_size) == (7, 3, 5)
    assert splits.input_shape == (32, 32, 3) and splits.num_classes == 1000
    assert _labels(splits.eval_batches("validation", 2)) == [0, 1, 2]
    assert _labels(splits.eval_batches("test", 2)) == [100, 101, 102, 103, 104]
    assert set(_labels(splits.train_batches(7, seed=0).take(3))) == set(range(3, 10))
    x, y = splits.test_arrays(limit=4)
    assert x.shape == (4, 32, 32, 3) and y.tolist() == [100, 101, 102, 103]
    no_holdout = data.load("imagenet2012", data_dir=fake_imagenet.data_dir, validation_size=0)
    assert no_holdout.eval_batches("validation", 2) is None and no_holdout.train_size == 10


@pytest.mark.parametrize("data_dir, validation_size, message", [
    (None, 0, "dataset 'imagenet2012' needs --data_dir with a prepared TFDS folder"),
    ("tfds/imagenet2012", 0, "holds no prepared TFDS data (no imagenet2012/<version>/dataset_info.json"),
    ("missing", 0, "data_dir for dataset 'imagenet2012' is not a folder"),
    ("tfds", 10, "validation_size=10 is out of range: dataset 'imagenet2012' has 10 training examples"),
])
def test_load_reports_unusable_imagenet_folders(fake_imagenet, data_dir, validation_size, message):
    folder = None if data_dir is None else fake_imagenet.data_dir.parent / data_dir
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data.load("imagenet2012", data_dir=folder, validation_size=validation_size)


def test_an_unprepared_folder_found_by_tfds_is_a_data_error(fake_imagenet, tmp_path):
    with pytest.raises(DataError, match="imagenet2012") as info:
        data.imagenet_train(tmp_path / "unprepared", batch_size=4, seed=0)
    assert str(tmp_path / "unprepared") in str(info.value)


def test_image_size_is_imagenet_only_and_keeps_existing_folder_names():
    with pytest.raises(ConfigError, match="image_size: must be >= 32 and only applies to imagenet2012"):
        ExperimentConfig.from_flat(dataset="mnist", image_size=64)
    assert "image_size" not in ExperimentConfig().result_fields()
    small = ExperimentConfig.from_flat(dataset="imagenet2012", model="resnet50", image_size=64)
    assert small.result_fields()["image_size"] == 64
    assert small.config_hash() != ExperimentConfig.from_flat(dataset="imagenet2012", model="resnet50").config_hash()


def _streamed_trainer(fake_imagenet, seed=0):
    import tf_lottery as tfl
    from conftest import tiny_training

    splits = data.load("imagenet2012", data_dir=fake_imagenet.data_dir, validation_size=2, image_size=32)
    model = tfl.wrap(tfl.models.build("lenet", input_shape=splits.input_shape,
                                      num_classes=splits.num_classes, seed=seed, hidden=(8,)))
    config = tiny_training(train_steps=6, batch_size=4, eval_every=3, eval_batch_size=4,
                           checkpoint_every=2, steps_per_call=2)
    return model, tfl.Trainer(model, splits, config)


class _Kill(Exception):
    pass


def test_a_streamed_run_resumes_where_its_data_stopped(fake_imagenet, tmp_path):
    straight, trainer = _streamed_trainer(fake_imagenet)
    expected = trainer.train(directory=tmp_path / "a")
    assert [r["iteration"] for r in expected.curve] == [0, 3, 6]
    assert expected.curve[-1]["val_loss"] is not None and expected.curve[-1]["test_accuracy"] is not None

    def kill(step):
        raise _Kill(step)

    _, trainer = _streamed_trainer(fake_imagenet)
    with pytest.raises(_Kill):
        trainer.train(directory=tmp_path / "b", hooks={5: kill})
    resumed, trainer = _streamed_trainer(fake_imagenet, seed=5)
    result = trainer.train(directory=tmp_path / "b")  # from the checkpoint at 4, iterator included
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert result.curve == expected.curve


def test_imp_with_rewinding_runs_on_streamed_imagenet(fake_imagenet, tmp_path):
    from tf_lottery import experiment

    config = ExperimentConfig.from_flat(
        model="lenet", hidden=(8,), dataset="imagenet2012", data_dir=str(fake_imagenet.data_dir),
        validation_size=2, image_size=32, rounds=2, prune_fraction=0.5, reset="rewind", rewind_step=2,
        train_steps="2ep", batch_size=4, eval_every=2, eval_batch_size=4, checkpoint_every=2,
        steps_per_call=2, experiment_dir=str(tmp_path / "imp"))
    prepared = experiment.prepare(config)
    assert prepared.config.training.train_steps == 4  # 8 training examples, batch 4: 2 iterations per epoch
    summary = experiment.run_imp(prepared)
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    # 32*32*3*8 + 8*1000 weights; 50% per round, the output layer at 25%.
    assert [round(r["remaining_fraction"], 4) for r in rounds] == [
        1.0, round((12288 + 6000) / 32576, 4), round((6144 + 4500) / 32576, 4)]
    assert all(r["early_stop_iteration"] in (0, 2, 4) for r in rounds)
    assert experiment.run_imp(prepared) == summary  # finished rounds are not retrained
