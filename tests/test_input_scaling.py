"""--input_scaling: standardize (the default), unit_norm (the LTH authors' code) and unit_range (x / 255)."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import data, input_pipeline

from conftest import SMALL_LOTTERY, make_splits, run_binary


def _sources(splits):
    return input_pipeline.sources(splits, tfl.TrainingConfig(batch_size=20, eval_batch_size=32))


def test_unit_norm_scales_every_image_to_unit_l2_norm():
    splits = data.with_scaling(make_splits(), "unit_norm")
    splits.train_x[0] = 0  # an all-zero image stays zero, as with keras.utils.normalize
    train, val, test = _sources(splits)
    x = train.prepare(tf.range(40)).__getitem__(0).numpy()
    raw = splits.train_x[:40].astype(np.float64)
    norms = np.sqrt((raw ** 2).reshape(40, -1).sum(1))
    expected = raw / np.where(norms > 0, norms, 1)[:, None, None, None]
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(x[0], 0)
    np.testing.assert_allclose(np.sqrt((x[1:] ** 2).reshape(39, -1).sum(1)), 1, rtol=1e-6)
    # The compiled evaluation slice, eager evaluation batches and the export's test arrays agree.
    sliced = tf.function(lambda: test.eval_slice(0, 32))()[0].numpy()
    batched = next(test.eval_batches(32))[0].numpy()
    exported, _ = splits.test_arrays(32)
    np.testing.assert_allclose(sliced, batched, rtol=1e-6)
    np.testing.assert_allclose(exported, batched, rtol=1e-6)
    assert splits.normalization["formula"].startswith("float32(uint8) / its L2 norm")


def test_unit_range_divides_by_255_and_standardize_is_the_default():
    plain = make_splits()
    assert plain.scaling == "standardize"
    unit = data.with_scaling(plain, "unit_range")
    x = _sources(unit)[0].prepare(tf.range(20))[0].numpy()
    np.testing.assert_array_equal(x, plain.train_x[:20].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(unit.test_arrays(5)[0], plain.test_x[:5].astype(np.float32) / np.float32(255))
    standard = _sources(plain)[0].prepare(tf.range(20))[0].numpy()
    expected = (plain.train_x[:20].astype(np.float32) / np.float32(255) - np.float32(plain.mean)) / np.float32(plain.std)
    np.testing.assert_array_equal(standard, expected)
    assert data.with_scaling(plain, "standardize") is plain


def test_scaling_is_refused_where_it_cannot_apply():
    scaled = dataclasses.replace(make_splits(), train_x=np.zeros((4, 8, 8, 1), np.float32),
                                 val_x=np.zeros((0, 8, 8, 1), np.float32),
                                 test_x=np.zeros((4, 8, 8, 1), np.float32), scaled=True)
    with pytest.raises(data.DataError, match="input_scaling='unit_norm' applies to datasets held in memory"):
        data.with_scaling(scaled, "unit_norm")
    with pytest.raises(tfl.ConfigError, match="input_scaling: must be one of standardize, unit_norm, unit_range"):
        tfl.DataConfig(input_scaling="l2")


def test_the_default_keeps_folder_names_and_other_scalings_get_their_own():
    base = tfl.ExperimentConfig.from_flat(dataset="mnist_small")
    assert "input_scaling" not in base.name() or base.name() == base.replace(input_scaling="standardize").name()
    names = {base.replace(input_scaling=s).name() for s in data.INPUT_SCALINGS}
    assert len(names) == 3


def test_the_lottery_binary_trains_and_records_unit_norm(tmp_path):
    exp = tmp_path / "exp"
    run = run_binary("lottery", *SMALL_LOTTERY, "--train_steps=40", "--rounds=0", "--input_scaling=unit_norm",
                     f"--experiment_dir={exp}")
    assert run.returncode == 0, run.stderr
    assert json.loads((exp / "config.json").read_text())["input_scaling"] == "unit_norm"
    launch, = json.loads((exp / "launches.json").read_text())
    assert launch["command"].startswith("python -m binaries.lottery ")
    assert "--input_scaling=unit_norm" in launch["command"] and "--rounds=0" in launch["command"]
    record = json.loads((exp / "round_00" / "metrics.json").read_text())
    assert record["early_stop_test_accuracy"] > 0.25  # ten classes: it learns
