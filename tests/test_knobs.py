"""The knobs of the open questions: --width, --dropout and --train_size."""

import json

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import data, imp, training

from conftest import SMALL_LOTTERY, killed_after_save, make_splits, run_binary, tiny_training


def _units(model):
    return {layer.name: layer.units if hasattr(layer, "units") else layer.filters
            for layer in model.layers if hasattr(layer, "units") or hasattr(layer, "filters")}


def test_width_scales_every_hidden_layer():
    lenet = tfl.models.build("lenet", (28, 28, 1), 10, width=0.5)
    assert _units(lenet) == {"fc1": 150, "fc2": 50, "output": 10}
    conv = tfl.models.build("conv2", (32, 32, 3), 10, width=0.5)
    assert _units(conv) == {"conv1": 32, "conv2": 32, "fc1": 128, "fc2": 128, "output": 10}
    config = tfl.ExperimentConfig.from_flat(width=2)
    assert config.model.options() == {"hidden": (300, 100), "width": 2.0}
    assert tfl.ExperimentConfig().name() == tfl.ExperimentConfig.from_flat(width=1.0, dropout=0).name()
    assert config.name() != tfl.ExperimentConfig().name()


def _dropout_run(directory, splits):
    training.configure_runtime(0)
    model = tfl.wrap(tfl.models.build("lenet", (8, 8, 1), 4, seed=0, hidden=(16, 8), dropout=0.5))
    return imp.run_rounds(model, splits, rounds=1, training_config=tiny_training(train_steps=30,
                          checkpoint_every=10), pruning_config=tfl.PruningConfig(fraction=0.3),
                          experiment_dir=directory)


def test_dropout_trains_only_in_training_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    model = tfl.models.build("lenet", (8, 8, 1), 4, hidden=(16, 8), dropout=0.5)
    assert [layer.name for layer in model.layers if "dropout" in layer.name] == ["dropout1", "dropout2"]
    x = np.ones((4, 8, 8, 1), np.float32)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False))
    splits = make_splits()
    expected = _dropout_run(tmp_path / "straight", splits)
    killed_after_save(monkeypatch, 2, lambda: _dropout_run(tmp_path / "killed", splits))
    resumed = _dropout_run(tmp_path / "killed", splits)
    strip = [{k: v for k, v in r.items() if k != "wall_seconds"} for r in expected]
    assert [{k: v for k, v in r.items() if k != "wall_seconds"} for r in resumed] == strip
    with pytest.raises(tfl.ConfigError, match="dropout: applies to lenet, conv2, conv4, conv6, not resnet20"):
        tfl.ExperimentConfig.from_flat(model="resnet20", dataset="cifar10", dropout=0.3)


def test_train_size_keeps_a_seeded_subset_in_order():
    splits = make_splits(n_train=240)
    small = data.with_train_size(splits, 100, seed=3)
    assert small.train_size == 100 and len(small.train_y) == 100
    rows = {bytes(x) for x in splits.train_x.reshape(240, -1)}
    assert all(bytes(x) in rows for x in small.train_x.reshape(100, -1))
    again = data.with_train_size(splits, 100, seed=3)
    np.testing.assert_array_equal(small.train_x, again.train_x)
    assert not np.array_equal(data.with_train_size(splits, 100, seed=4).train_x, small.train_x)
    assert small.mean == pytest.approx(float(small.train_x.mean()) / 255)
    np.testing.assert_array_equal(small.test_x, splits.test_x)
    assert data.with_train_size(splits, None, seed=0) is splits
    with pytest.raises(data.DataError, match="train_size=241 is more than the 240 training examples"):
        data.with_train_size(splits, 241, seed=0)


def test_the_lottery_binary_takes_train_size(tmp_path):
    exp = tmp_path / "exp"
    run = run_binary("lottery", *SMALL_LOTTERY, "--train_steps=1ep", "--rounds=0", "--train_size=600",
                     f"--experiment_dir={exp}")
    assert run.returncode == 0, run.stderr
    config = json.loads((exp / "config.json").read_text())
    assert config["train_size"] == 600 and config["train_steps"] == 10  # one epoch of 600 at batch 60
    bad = run_binary("lottery", "--dataset=mnist_small", "--validation_size=500", "--train_size=9000",
                     f"--experiment_dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "train_size=9000 is more than the 7500 training examples" in bad.stderr
    assert not (tmp_path / "bad").exists()
