"""Issue 27, follow-ups: a folder without test data gets its plots and report, export states the scaling
the model's inputs need, structured pruning of a transposed convolution works on its output filters, and
run_rounds' dense_layers error lists the layers."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tf_lottery as tfl
from tf_lottery import export, imp, plots, report, results, shrink, tensorboard, training
from tf_lottery.results import library

from conftest import tiny_training

TRAINING = tiny_training(train_steps=20, learning_rate=tfl.TrainingConfig().learning_rate, jit_compile=False)


def _mlp(shape=(8, 8, 1)):
    keras.utils.set_random_seed(0)
    return tfl.wrap(keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                                      keras.layers.Dense(16, activation="relu", name="fc1"),
                                      keras.layers.Dense(4, name="out")], name="mlp"))


def _scaled(x):
    return (x / np.float32(255)).astype("float32")


def _run(directory, model, train, validation=None, test=None, **kwargs):
    training.configure_runtime(0)
    values = dict(rounds=1, experiment_dir=directory, training_config=TRAINING,
                  pruning_config=tfl.PruningConfig(fraction=0.5))
    return imp.run_rounds(model, train, validation_data=validation, test_data=test, **{**values, **kwargs})


# 1. A folder written without test data: plots, report.md and TensorBoard from what it has.

NO_TEST = ("The runs recorded no test accuracy (they had no test data): the figures and tables show "
           "validation accuracy instead.")


@pytest.fixture(scope="module")
def no_test_folder(splits, tmp_path_factory):
    """A folder of run_rounds without test data (round 0 only)."""
    directory = tmp_path_factory.mktemp("no_test") / "exp"
    _run(directory, _mlp(), (_scaled(splits.train_x), splits.train_y), (_scaled(splits.val_x), splits.val_y),
         rounds=0)
    return directory


def test_a_folder_without_test_data_gets_figures_of_validation_accuracy(no_test_folder):
    written = plots.write_plots([no_test_folder])
    assert [p.name for p in written] == ["val_accuracy_vs_remaining", "early_stop_vs_remaining",
                                         "val_accuracy_curves", "layer_remaining"]
    assert all(p.png.is_file() and p.svg.is_file() for p in written)
    assert [written[0].caption, written[2].caption] == [
        "Validation accuracy at the early-stop iteration vs weights remaining (no test accuracy recorded).",
        "Validation accuracy during training in rounds 0, ticket and controls (stars: early-stop "
        "iterations) (no test accuracy recorded)."]


def test_a_folder_without_test_data_gets_its_report_and_tensorboard_runs(no_test_folder, tmp_path):
    tensorboard.write_tensorboard(no_test_folder)
    text = report.write_report([no_test_folder], []).read_text()
    assert NO_TEST in text.splitlines()
    assert "| round | remaining % | early-stop it | val acc @es | final val acc | seconds |" in text
    (rec,) = results.read_summary(no_test_folder)["rounds"]
    val, final = rec["early_stop_val_accuracy"], rec["final_val_accuracy"]
    assert (f"| 0 | 100.00 | {rec['early_stop_iteration']} | {val:.4f} | {final:.4f} |") in text
    # Replicates (the same folder twice) go through the tables over runs.
    for seed in (0, 1):
        shutil.copytree(no_test_folder, tmp_path / "replicates" / f"seed_{seed}")
    text = report.write_report([tmp_path / "replicates"], []).read_text()
    assert (f"| 0 | 100.00 | {val:.4f} ({val:.4f}-{val:.4f}) | {rec['early_stop_iteration']} | "
            f"{final:.4f} ({final:.4f}-{final:.4f}) |") in text


# 2. The export report states the scaling the model's inputs need.

@pytest.mark.parametrize("kind", ["uint8 Splits", "scaled arrays"])
def test_the_export_report_states_the_scaling_the_model_takes(splits, tmp_path, kind):
    if kind == "uint8 Splits":
        data = (splits,)
        expected = {"normalization": "(uint8 / 255 - mean) / std", "mean": splits.mean, "std": splits.std}
    else:
        data = ((_scaled(splits.train_x), splits.train_y), (_scaled(splits.val_x), splits.val_y),
                (_scaled(splits.test_x), splits.test_y))
        expected = {"normalization": "as given, as float32", "mean": 0.0, "std": 1.0}
    directory = tmp_path / "exp"
    _run(directory, _mlp(), *data, rounds=0)
    stated = export.export(directory, tmp_path / "out", round=0, formats=("keras",))["input"]
    assert stated == {"shape": [None, 8, 8, 1], "dtype": "float32", **expected}
    # The stated scaling of the raw test images is what the model was checked on.
    raw = splits.test_x.astype("float32") / 255 if kind == "uint8 Splits" else _scaled(splits.test_x)
    inputs = (raw - np.float32(stated["mean"])) / np.float32(stated["std"])
    sample_x, _ = library.read_test_sample(directory)
    np.testing.assert_allclose(inputs, sample_x, atol=1e-6)


def test_a_folder_that_does_not_record_its_scaling_says_so(splits, tmp_path):
    directory = tmp_path / "exp"
    _run(directory, _mlp(), splits, rounds=0)
    path = results.config_path(directory)
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in saved.items() if k != "input_normalization"}))
    stated = export.export(directory, tmp_path / "out", round=0, formats=("keras",))["input"]
    assert stated["normalization"] == ("as in training (not recorded in config.json: run_rounds wrote this "
                                       "folder before it recorded the scaling)")
    assert stated["mean"] is None and stated["std"] is None
    _run(directory, _mlp(), splits, rounds=0)  # the folder resumes, and now records it
    assert json.loads(path.read_text())["input_normalization"] == splits.normalization


# 3. Structured pruning of a transposed convolution: its kernel is (..., out_channels, in_channels).

def _transposed(filters=4, channels=8):
    keras.utils.set_random_seed(0)
    model = tfl.wrap(keras.Sequential([keras.Input((4, 4, channels)),
                                       keras.layers.Conv2DTranspose(filters, 2, name="up"),
                                       keras.layers.Flatten(), keras.layers.Dense(2, name="out")], name="net"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _transposed_data(n=32, channels=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4, 4, channels)).astype("float32")
    return x, (x[..., 0].mean((1, 2)) > 0).astype("int64")


def _units(mask, axis):
    """(how many units along `axis` are all zero, whether every unit is all zero or all one)."""
    units = np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1)
    return int(np.sum(units.max(1) == 0)), bool(np.all(units.min(1) == units.max(1)))


@pytest.mark.parametrize("structure, axis, dead", [("filter", -2, 2), ("neuron", -2, 2), ("channel", -1, 4)])
def test_prune_during_fit_prunes_a_transposed_convolution_by_its_filters(structure, axis, dead):
    model = _transposed()
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    model.fit(*_transposed_data(), batch_size=16, epochs=1, verbose=0,
              callbacks=[tfl.PruneDuringFit(schedule, structure=structure, dense_layers=("out",))])
    mask = tfl.get_masks(model)["up/kernel"]
    assert mask.shape == (2, 2, 4, 8)  # (height, width, out_channels, in_channels)
    assert _units(mask, axis) == (dead, True)
    assert _units(mask, -1 if axis == -2 else -2) == (0, False)


def test_n_of_m_groups_a_transposed_kernel_along_its_input_channels():
    model = _transposed()
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    model.fit(*_transposed_data(), batch_size=16, epochs=1, verbose=0,
              callbacks=[tfl.PruneDuringFit(schedule, structure="n_of_m", n_of_m=(2, 4), dense_layers=("out",))])
    mask = tfl.get_masks(model)["up/kernel"]
    np.testing.assert_array_equal(mask.reshape(2, 2, 4, 2, 4).sum(-1), 2)


def test_run_rounds_prunes_the_filters_of_a_transposed_convolution(tmp_path):
    x, y = _transposed_data(64)
    training.configure_runtime(0)
    imp.run_rounds(_transposed(), (x, y), (x[:16], y[:16]), rounds=1, experiment_dir=tmp_path / "exp",
                   training_config=tiny_training(train_steps=10, learning_rate=tfl.TrainingConfig().learning_rate,
                                                 jit_compile=False),
                   pruning_config=tfl.PruningConfig(fraction=0.5, structure="filter", dense_layers=("out",)))
    mask = results.round_masks(tmp_path / "exp", 1)["up/kernel"]
    assert _units(mask, -2) == (2, True) and _units(mask, -1) == (0, False)


def test_shrink_refuses_a_transposed_convolution_naming_it():
    model = _transposed()
    with pytest.raises(shrink.ShrinkError) as error:
        shrink.shrink(tfl.strip(model), tfl.get_masks(model))
    assert str(error.value) == ("layer 'up' (Conv2DTranspose): shrink does not support transposed "
                                "convolutions; export without shrink")


# 4. run_rounds' dense_layers names the model's layers with weights.

def test_run_rounds_lists_the_layers_when_dense_layers_names_an_unknown_one(splits, tmp_path):
    with pytest.raises(ValueError) as error:
        _run(tmp_path / "exp", _mlp(), splits, pruning_config=tfl.PruningConfig(dense_layers=("fc", "out")))
    assert str(error.value) == ("pruning_config.dense_layers: model 'mlp' has no layer named 'fc'; "
                                "its layers with weights: fc1, out")
    assert not (tmp_path / "exp").exists()
