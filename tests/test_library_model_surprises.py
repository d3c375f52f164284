"""Issue 27, second pass: what a notebook user meets on the model side (monitor names, strip of a
compiled model, parameter counts, error messages, transposed convolutions)."""

import json
import logging
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tf_lottery as tfl
from tf_lottery import imp, results, training
from tf_lottery.objective import Objective
from tf_lottery.pruning import prune_count

from conftest import tiny_model, tiny_training


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                             keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(4, name="out")],
                            name="mlp")


def _xy(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)).astype("float32"), rng.integers(0, 4, n)


def _compile(model, metrics=("accuracy",)):
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=list(metrics))
    return model


def _top():
    return (keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"))


def _run(tmp_path, splits, model, **kwargs):
    training.configure_runtime(0)
    values = dict(rounds=0, experiment_dir=tmp_path / "exp", pruning_config=tfl.PruningConfig(fraction=0.5),
                  training_config=tiny_training(train_steps=20,
                                                learning_rate=tfl.TrainingConfig().learning_rate))
    return imp.run_rounds(model, splits, **{**values, **kwargs})


# 5. Monitor names are checked, and every compiled metric reaches the round record.

def test_an_unknown_monitor_is_refused_before_anything_is_written(splits, tmp_path):
    model = _compile(tfl.wrap(tiny_model()), metrics=("accuracy", *_top()))
    with pytest.raises(ValueError) as error:
        _run(tmp_path, splits, model, monitor="val_acuracy")
    assert str(error.value) == (
        "monitor must name a validation or test quantity the evaluation produces, one of val_loss, "
        "val_accuracy, val_top1, val_top2, test_loss, test_accuracy, test_top1, test_top2; got 'val_acuracy'")
    assert not (tmp_path / "exp").exists()


def test_an_uncompiled_model_has_loss_and_accuracy_only():
    with pytest.raises(ValueError, match="one of val_loss, val_accuracy, test_loss, test_accuracy; "
                                         "got 'val_top1'$"):
        Objective.from_compiled(tfl.wrap(tiny_model()), "val_top1")
    with pytest.raises(ValueError, match="got 'loss'$"):
        Objective(monitor="loss")
    assert Objective.from_compiled(_compile(tfl.wrap(tiny_model()), _top()), "test_top2").mode == "max"


def test_every_compiled_metric_reaches_the_round_record(splits, tmp_path):
    model = _compile(tfl.wrap(tiny_model()), metrics=("accuracy", *_top()))
    record = _run(tmp_path, splits, model, monitor="val_top1")[0]
    curve = json.loads(results.curve_path(results.round_dir(tmp_path / "exp", 0)).read_text())
    best = max(curve, key=lambda r: r["val_top1"])  # the first best one
    assert record["early_stop_monitor"] == "val_top1"
    assert record["early_stop_iteration"] == best["iteration"]
    for name in ("val_top1", "val_top2", "test_top1", "test_top2"):
        assert record[f"early_stop_{name}"] == best[name]
        assert record[f"final_{name}"] == curve[-1][name]
    assert record["early_stop_val_accuracy"] == best["val_accuracy"]  # the existing names are kept


def test_a_model_compiled_with_accuracy_only_keeps_the_record_fields():
    objective = Objective.from_compiled(_compile(tfl.wrap(tiny_model())))
    assert sorted(training.TrainResult(CURVE, 20, 1.0, objective).summary()) == sorted([
        "early_stop_iteration", "early_stop_val_loss", "early_stop_val_accuracy",
        "early_stop_test_accuracy", "final_val_accuracy", "final_test_accuracy", "train_steps",
        "wall_seconds"])


CURVE = [dict(iteration=10, val_loss=1.0, val_accuracy=0.5, test_loss=0.9, test_accuracy=0.4),
         dict(iteration=20, val_loss=1.1, val_accuracy=0.6, test_loss=0.7, test_accuracy=0.3)]


def test_a_monitor_outside_the_record_gets_its_early_stop_field():
    summary = training.TrainResult(CURVE, 20, 1.0, Objective(monitor="test_loss")).summary()
    assert summary["early_stop_iteration"] == 20 and summary["early_stop_test_loss"] == 0.7


# 6. tfl.strip gives the plain model, uncompiled unless asked, without optimizer variables.

def _keras_file_variables(path):
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as handle:
        with h5py.File(handle, "r") as weights:
            names = []
            weights.visititems(
                lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def test_strip_of_a_compiled_model_has_no_optimizer(tmp_path):
    x, y = _xy()
    model = _compile(tfl.wrap(_mlp()))
    model.fit(x, y, epochs=2, verbose=0)
    ticket = tfl.strip(model)
    assert not ticket.compiled and getattr(ticket, "optimizer", None) is None
    np.testing.assert_allclose(ticket.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    ticket.save(tmp_path / "ticket.keras")
    _mlp().save(tmp_path / "plain.keras")
    saved = _keras_file_variables(tmp_path / "ticket.keras")
    assert not [name for name in saved if name.startswith("optimizer")]
    assert len(saved) == len(_keras_file_variables(tmp_path / "plain.keras"))
    sizes = [os.path.getsize(tmp_path / name) for name in ("ticket.keras", "plain.keras")]
    assert abs(sizes[0] - sizes[1]) < 0.05 * sizes[1]
    assert model.compiled and model.optimizer.iterations.numpy() == 4  # the wrapped model is untouched


def test_strip_compile_true_compiles_with_a_fresh_optimizer():
    x, y = _xy()
    model = _compile(tfl.wrap(_mlp()), metrics=("accuracy", _top()[1]))
    model.fit(x, y, epochs=1, verbose=0)
    ticket = tfl.strip(model, compile=True)
    assert ticket.compiled and ticket.optimizer is not model.optimizer
    assert ticket.optimizer.get_config() == model.optimizer.get_config()
    assert int(ticket.optimizer.iterations.numpy()) == 0
    slots = [v for v in ticket.optimizer.variables if v.name not in ("iteration", "learning_rate")]
    assert len(slots) == 2 * len(ticket.trainable_weights) and not any(np.any(v.numpy()) for v in slots)
    assert ticket.get_compile_config()["loss"] == model.get_compile_config()["loss"]
    assert ticket.get_compile_config()["metrics"] == model.get_compile_config()["metrics"]
    with pytest.raises(ValueError) as error:
        tfl.strip(tfl.wrap(_mlp()), compile=True)
    assert str(error.value) == "compile=True: model 'mlp' is not compiled"


# 7. count_params and summary totals are the model's own parameters.

def _summary_lines(model):
    lines = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    return "\n".join(lines).splitlines()


def _totals(lines):
    return [line.strip() for line in lines if line.strip().startswith(("Total params", "Trainable params",
                                                                        "Non-trainable params"))]


def _nested():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, name="inner_fc")], name="block")
    inputs = keras.Input((8,))
    x = keras.layers.BatchNormalization(name="bn")(inner(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x), name="nested")


@pytest.mark.parametrize("build", [_mlp, _nested])
def test_count_params_and_summary_totals_are_the_models_own(build, tmp_path):
    plain = build()
    wrapped = tfl.wrap(plain)
    assert wrapped.count_params() == plain.count_params()
    lines = _summary_lines(wrapped)
    assert _totals(lines) == _totals(_summary_lines(plain))
    bookkeeping = sum(int(np.prod(v.shape)) for w in tfl.model_ops.wrappers(wrapped)
                      for v in [m for _, _, m in w.masked_weights] + [s for _, s in w.snapshots])
    assert [line.strip() for line in lines if "masks and snapshots" in line] == [
        f"tf_lottery masks and snapshots: {bookkeeping:,} (not parameters, not counted above)"]
    wrapped.save(tmp_path / "wrapped.keras")  # still a plain Keras model to save and load
    loaded = keras.models.load_model(tmp_path / "wrapped.keras")
    np.testing.assert_array_equal(loaded(np.ones((2, 8), "float32")), wrapped(np.ones((2, 8), "float32")))


# 8. Error messages a user can act on.

def test_a_bad_prunable_on_a_functional_model_names_the_weights():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="d")(inputs))
    with pytest.raises(ValueError) as error:
        tfl.wrap(model, prunable={"d": ("kernal",)})
    assert str(error.value) == "prunable: layer 'd' (Dense) has no weight 'kernal'; its weights: kernel, bias"


def test_prune_refuses_bad_fractions_and_masks_in_one_line():
    model = tfl.wrap(_mlp())
    weights, masks = tfl.effective_weights(model), tfl.get_masks(model)
    with pytest.raises(TypeError) as error:
        tfl.prune(weights, masks, 0.5)
    assert str(error.value) == ("fractions must be a dict {key: fraction} over the keys of masks "
                                "(fc1/kernel, out/kernel), got float 0.5")
    with pytest.raises(ValueError) as error:
        tfl.prune(weights, masks, {"nope": 0.5})
    assert str(error.value) == "fractions: 'nope' is not a key of masks (fc1/kernel, out/kernel)"
    with pytest.raises(ValueError) as error:
        tfl.prune(weights, {**masks, "fc1/kernel": np.ones((3, 3))}, {"fc1/kernel": 0.5})
    assert str(error.value) == "masks['fc1/kernel'] has shape (3, 3), weights['fc1/kernel'] has (8, 16)"
    with pytest.raises(ValueError) as error:
        tfl.prune(weights, {"fc1/kernel": masks["fc1/kernel"]}, {"fc1/kernel": 0.5})
    assert str(error.value) == "weights and masks must have the same keys: out/kernel only in weights"
    with pytest.raises(TypeError) as error:
        tfl.set_masks(model, 0.5)
    assert str(error.value) == "masks must be a dict {key: 0/1 array}, got float"


def test_unknown_layer_names_are_refused_naming_the_argument_and_the_layers():
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    model = _compile(tfl.wrap(_mlp()))
    with pytest.raises(ValueError) as error:
        model.fit(*_xy(), epochs=1, verbose=0,
                  callbacks=[tfl.PruneDuringFit(schedule, dense_layers=("fc", "out"))])
    assert str(error.value) == ("dense_layers: model 'mlp' has no layer named 'fc'; "
                                "its layers with weights: fc1, bn, out")
    assert int(model.optimizer.iterations.numpy()) == 0
    with pytest.raises(ValueError) as error:
        tfl.wrap(_mlp(), exclude=["fc2"])
    assert str(error.value) == ("exclude: model 'mlp' has no layer named 'fc2'; "
                                "its layers with weights: fc1, bn, out")


# 9. Transposed convolutions are wrapped and pruned like the others.

@pytest.mark.parametrize("layer, shape", [(keras.layers.Conv1DTranspose, (5, 2)),
                                          (keras.layers.Conv2DTranspose, (3, 3, 2)),
                                          (keras.layers.Conv3DTranspose, (2, 2, 2, 2))])
def test_transposed_convolutions_are_wrapped_pruned_and_stripped(layer, shape):
    keras.utils.set_random_seed(0)
    model = tfl.wrap(keras.Sequential([keras.Input(shape), layer(3, 2, name="up"), keras.layers.Flatten(),
                                       keras.layers.Dense(2, name="out")]))
    assert [w.name for w in tfl.model_ops.wrappers(model)] == ["up", "out"]
    assert tfl.model_ops.conv_keys(model) == ["up/kernel"]
    masks = tfl.prune(tfl.effective_weights(model), tfl.get_masks(model), {"up/kernel": 0.5})
    tfl.set_masks(model, masks)
    size = int(np.prod(model.get_layer("up").layer.kernel.shape))
    ticket = tfl.strip(model)
    assert int(np.sum(ticket.get_layer("up").kernel.numpy() == 0)) == prune_count(size, 0.5)
    x = np.random.default_rng(1).normal(size=(4, *shape)).astype("float32")
    np.testing.assert_array_equal(ticket(x).numpy(), model(x).numpy())


def test_wrap_logs_the_layers_with_weights_it_leaves_unwrapped(caplog):
    with caplog.at_level(logging.INFO, logger="absl"):  # Keras' model.export leaves absl's logger at WARNING
        tfl.wrap(_mlp())
    assert [r.getMessage() for r in caplog.records if "not wrapped" in r.getMessage()] == [
        "wrap: layers with weights not wrapped (never pruned): bn (BatchNormalization, 64 parameters)"]
