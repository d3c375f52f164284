"""A notebook user's first hour with run_rounds: rerunning a cell, optional test data, bad data refused
before anything is written, a failed first run that a corrected rerun replaces, multi-input models."""

import hashlib
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import export, imp, results, training
from tf_lottery.results import library

from conftest import killed_after_save, tiny_training

PRUNING = tfl.PruningConfig(fraction=0.5)
# Without XLA: these runs are too short to pay back its compilation (the fused path has its own tests).
TRAINING = tiny_training(train_steps=20, learning_rate=tfl.TrainingConfig().learning_rate, jit_compile=False)


def _mlp(activation="relu", compiled=True, shape=(8, 8, 1), loss=None, batch_norm=False):
    """A Keras model as a notebook cell builds it: every name made up by Keras."""
    norm = [keras.layers.BatchNormalization()] if batch_norm else []
    model = tfl.wrap(keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                                       keras.layers.Dense(16, activation=activation), *norm,
                                       keras.layers.Dense(4)]))
    if compiled:
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    return model


def _arrays(splits):
    """(train, validation, test) NumPy pairs of the synthetic splits, scaled to [0, 1]."""
    def pair(x, y):
        return (x / np.float32(255)).astype("float32"), y
    return (pair(splits.train_x, splits.train_y), pair(splits.val_x, splits.val_y),
            pair(splits.test_x, splits.test_y))


def _pipeline(pair, batch=20):
    return tf.data.Dataset.from_tensor_slices(pair).batch(batch)


def _run(directory, model, train, validation=None, test=None, **kwargs):
    training.configure_runtime(0)
    values = dict(rounds=1, experiment_dir=directory, training_config=TRAINING, pruning_config=PRUNING)
    values.update(kwargs)
    return imp.run_rounds(model, train, validation_data=validation, test_data=test, **values)


def _comparable(records):
    """Records without their time, layers in order (two models built in one process differ in names)."""
    return [{**{k: v for k, v in r.items() if k != "wall_seconds"}, "layers": list(r["layers"].values())}
            for r in records]


# 1. Re-running a cell.

def test_rerunning_the_cell_in_one_process_resumes(splits, tmp_path):
    train, val, test = _arrays(splits)
    directory = tmp_path / "exp"
    first_model = _mlp(batch_norm=True)  # its reset point holds the batch norm's variables by path
    first = _run(directory, first_model, train, val, test, rounds=0)
    again = _mlp(batch_norm=True)
    assert again.name != first_model.name  # Keras made up other model and layer names
    assert sorted(tfl.get_masks(again)) != sorted(tfl.get_masks(first_model))
    assert _run(directory, again, train, val, test, rounds=0) == first
    # The model holds the folder's ticket, under the folder's layer names.
    assert sorted(tfl.raw_weights(again)) == sorted(tfl.raw_weights(first_model))
    for key, value in tfl.raw_weights(first_model).items():
        np.testing.assert_array_equal(tfl.raw_weights(again)[key], value)
    # One more round from a third rebuild: it is written under the folder's names and exports.
    third = _mlp(batch_norm=True)
    records = _run(directory, third, train, val, test)
    assert records[:1] == first
    assert sorted(results.round_masks(directory, 1)) == sorted(results.round_masks(directory, 0))
    assert sorted(records[1]["layers"]) == sorted(first[0]["layers"])
    assert json.loads(results.config_path(directory).read_text())["model"] == first_model.name
    report = export.export(directory, tmp_path / "out", round=1, formats=("keras",))
    assert report["formats"]["keras"]["argmax_agreement"] == 1.0


def _old_fingerprint(model):
    """The architecture hash the code before issue 27 wrote: layer classes and weight shapes."""
    digest = hashlib.sha256()
    for layer in model._flatten_layers(include_self=False):
        digest.update(type(layer).__name__.encode())
        for weight in layer.weights:
            digest.update(str(tuple(weight.shape)).encode())
    return digest.hexdigest()[:16]


def test_a_folder_of_the_old_code_resumes_when_only_the_model_name_differs(splits, tmp_path):
    train, val, test = _arrays(splits)
    directory = tmp_path / "exp"
    first = _run(directory, _mlp(), train, val, test)
    model = _mlp()
    path = results.config_path(directory)
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "model": "sequential_77", "model_fingerprint": _old_fingerprint(model)}))
    assert _run(directory, model, train, val, test) == first
    assert json.loads(path.read_text())["model_fingerprint"] == saved["model_fingerprint"]


def test_the_architecture_counts_beyond_weight_shapes(splits, tmp_path):
    train, val, test = _arrays(splits)
    _run(tmp_path / "exp", _mlp(), train, val, test)
    with pytest.raises(ValueError, match=r"differs in model_fingerprint\)"):
        _run(tmp_path / "exp", _mlp(activation="tanh"), train, val, test)


# 2. test_data=None.

@pytest.mark.parametrize("kind", ["numpy", "tf.data"])
def test_without_test_data_the_rounds_have_no_test_accuracy(splits, tmp_path, kind):
    train, val, _ = _arrays(splits)
    if kind == "tf.data":
        train, val = _pipeline(train), _pipeline(val)
    directory = tmp_path / "exp"
    records = _run(directory, _mlp(), train, val, None)
    assert [(r["early_stop_test_accuracy"], r["final_test_accuracy"]) for r in records] == [(None, None)] * 2
    assert all(c["test_accuracy"] is None for c in json.loads(results.curve_path(
        results.round_dir(directory, 1)).read_text()))
    assert all(0 <= r["early_stop_val_accuracy"] <= 1 for r in records)
    assert not library.test_sample_path(directory).exists()
    with pytest.raises(tfl.ConfigError) as error:
        export.export(directory, tmp_path / "out", round=1)
    assert str(error.value) == (f"experiment_dir: {library.test_sample_path(directory)} does not exist: "
                                "the experiment had no test data to check an export on")
    assert not (tmp_path / "out").exists()


# 3. Data checked against the model before anything is written; a failed first run is replaced.

def _flat(pair):
    return pair[0].reshape(len(pair[0]), -1), pair[1]


@pytest.mark.parametrize("bad", ["train", "validation", "test"])
def test_flat_inputs_for_an_image_model_are_refused_before_anything_is_written(splits, tmp_path, bad):
    pairs = dict(zip(("train", "validation", "test"), _arrays(splits)))
    pairs[bad] = _flat(pairs[bad])
    with pytest.raises(ValueError) as error:
        _run(tmp_path / "exp", _mlp(), pairs["train"], pairs["validation"], pairs["test"])
    assert str(error.value) == f"{bad}_data: the model takes inputs of shape (None, 8, 8, 1), got (None, 64)"
    assert not (tmp_path / "exp").exists()


def test_a_first_run_that_never_finished_a_round_takes_corrected_data(splits, tmp_path, monkeypatch):
    train, val, test = _arrays(splits)
    wrong = (train[0][::-1].copy(), train[1]), (val[0][::-1].copy(), val[1]), (test[0][::-1].copy(), test[1])
    directory = tmp_path / "exp"

    def broken(*args, **kwargs):
        raise RuntimeError("the kernel died")
    monkeypatch.setattr(training.Trainer, "train", broken)
    with pytest.raises(RuntimeError):
        _run(directory, _mlp(), *wrong, rounds=0)
    monkeypatch.undo()
    assert results.config_path(directory).exists() and library.test_sample_path(directory).exists()
    records = _run(directory, _mlp(), train, val, test, rounds=0)
    expected = _run(tmp_path / "straight", _mlp(), train, val, test, rounds=0)
    assert _comparable(records) == _comparable(expected)
    sample_x, _ = library.read_test_sample(directory)
    np.testing.assert_array_equal(sample_x, test[0])
    def settings(folder):
        saved = json.loads(results.config_path(folder).read_text())
        return {k: v for k, v in saved.items() if k not in ("model", "weight_keys")}  # names Keras made up
    assert settings(directory) == settings(tmp_path / "straight")


def test_an_interrupted_round_0_on_other_data_is_trained_again_from_its_start(splits, tmp_path, monkeypatch):
    train, val, test = _arrays(splits)
    config = tiny_training(train_steps=30, checkpoint_every=10, learning_rate=tfl.TrainingConfig().learning_rate,
                           jit_compile=False)
    wrong = (train[0][::-1].copy(), train[1])
    killed_after_save(monkeypatch, 1, lambda: _run(tmp_path / "exp", _mlp(), wrong, val, test, rounds=0,
                                                    training_config=config))
    records = _run(tmp_path / "exp", _mlp(), train, val, test, rounds=0, training_config=config)
    expected = _run(tmp_path / "straight", _mlp(), train, val, test, rounds=0, training_config=config)
    assert _comparable(records) == _comparable(expected)


def test_a_folder_with_a_finished_round_still_refuses_other_data(splits, tmp_path):
    train, val, test = _arrays(splits)
    _run(tmp_path / "exp", _mlp(), train, val, test, rounds=0)
    with pytest.raises(ValueError, match=r"differs in data_fingerprint\)"):
        _run(tmp_path / "exp", _mlp(), (train[0][::-1].copy(), train[1]), val, test, rounds=0)


# 4. Multi-input models.

def _two_inputs(by_name=False):
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    hidden = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(a),
                                         keras.layers.Dense(8, activation="relu")(b)])
    return tfl.wrap(keras.Model({"a": a, "b": b} if by_name else [a, b], keras.layers.Dense(2)(hidden)))


def _two_input_data(n, seed):
    rng = np.random.default_rng(seed)
    xa, xb = rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")
    return xa, xb, (xa[:, 0] + xb[:, 0] > 0).astype("int64")


def _as(kind, xa, xb, y):
    inputs = {"numpy list": [xa, xb], "numpy tuple": (xa, xb), "numpy dict": {"a": xa, "b": xb},
              "tf.data tuple": (xa, xb), "tf.data dict": {"a": xa, "b": xb}}[kind]
    return _pipeline((inputs, y)) if kind.startswith("tf.data") else (inputs, y)


@pytest.mark.parametrize("kind, by_name, keys", [
    ("numpy list", False, ["x0", "x1", "y"]),
    ("numpy tuple", False, ["x0", "x1", "y"]),
    ("numpy dict", True, ["x/a", "x/b", "y"]),
    ("tf.data tuple", False, ["x0", "x1", "y"]),
    ("tf.data dict", True, ["x/a", "x/b", "y"]),
])
def test_two_input_models_train_and_keep_every_input_in_the_test_sample(tmp_path, kind, by_name, keys):
    (xa, xb, y), (va, vb, vy), (ta, tb, ty) = (_two_input_data(n, seed) for n, seed in
                                               ((200, 0), (40, 1), (50, 2)))  # 50: a partial last batch
    model = _two_inputs(by_name)
    # The NumPy list trains as the README's runs do: with XLA, in fused chunks of steps.
    config = tiny_training(train_steps=80, jit_compile=None if kind == "numpy list" else False)
    (record,) = _run(tmp_path / "exp", model, _as(kind, xa, xb, y), _as(kind, va, vb, vy),
                     _as(kind, ta, tb, ty), rounds=0, training_config=config)
    assert record["final_test_accuracy"] >= 0.8
    test_x = {"a": ta, "b": tb} if by_name else [ta, tb]
    accuracy = float(np.mean(np.argmax(model(test_x), -1) == ty))
    assert record["final_test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    sample = np.load(library.test_sample_path(tmp_path / "exp"))
    assert sorted(sample.files) == keys
    np.testing.assert_array_equal(sample[keys[1]], tb)
    x, labels = library.read_test_sample(tmp_path / "exp")
    np.testing.assert_array_equal(x["a"] if by_name else x[0], ta)
    np.testing.assert_array_equal(labels, ty)


@pytest.mark.parametrize("by_name", [False, True])
def test_a_two_input_folder_exports_and_verifies(tmp_path, by_name):
    data = [_two_input_data(n, seed) for n, seed in ((200, 0), (40, 1), (50, 2))]
    kind = "numpy dict" if by_name else "numpy list"
    _run(tmp_path / "exp", _two_inputs(by_name), *(_as(kind, *d) for d in data), rounds=0,
         training_config=tiny_training(train_steps=60, jit_compile=False))
    report = export.export(tmp_path / "exp", tmp_path / "out", round=0)
    assert report["test_examples"] == 50
    assert report["signature"]["inputs"] == {"a": [None, 4], "b": [None, 3]}
    for name in ("saved_model", "keras", "tflite_float"):
        assert report["formats"][name]["argmax_agreement"] == 1.0, name


@pytest.mark.parametrize("make, message", [
    (lambda xa, xb, y: (xa, y), "train_data: the model takes 2 inputs (a, b), got one array"),
    (lambda xa, xb, y: ([xa, xb, xb], y), "train_data: the model takes 2 inputs (a, b), got 3 arrays"),
    (lambda xa, xb, y: ([xb, xa], y), "train_data: the model's input 'a' takes shape (None, 4), got (None, 3)"),
    (lambda xa, xb, y: ({"a": xa, "c": xb}, y), "train_data: the model takes inputs a, b by name, got a, c"),
    (lambda xa, xb, y: ([xa, xb[:-1]], y), "train_data: input 1 of x has 199 examples and y has 200"),
])
def test_two_input_data_of_another_structure_is_refused(tmp_path, make, message):
    with pytest.raises(ValueError) as error:
        _run(tmp_path / "exp", _two_inputs(), make(*_two_input_data(200, 0)))
    assert str(error.value) == message
    assert not (tmp_path / "exp").exists()


def test_a_list_of_two_arrays_for_a_one_input_model_is_refused(splits, tmp_path):
    (x, y), _, _ = _arrays(splits)
    with pytest.raises(ValueError) as error:
        _run(tmp_path / "exp", _mlp(), ([x, x], y))
    assert str(error.value) == "train_data: the model takes one input, got a list of 2 arrays"
    assert not (tmp_path / "exp").exists()


# 8. Error messages about the data that say what to do.

def _bad_data(case, splits):
    (x, y), _, _ = _arrays(splits)
    if case == "empty":
        return _pipeline((x, y)).take(0)
    if case == "unbatched":
        return tf.data.Dataset.from_tensor_slices((x, y))
    if case == "labels":
        return x, np.arange(len(y)) % 6
    if case == "text":
        return x.astype(str), y
    return x, keras.utils.to_categorical(y, 4)


@pytest.mark.parametrize("case, model, error_type, message", [
    ("empty", _mlp, ValueError, "train_data: the pipeline yields no batches"),
    ("unbatched", _mlp, ValueError, "train_data: the pipeline yields single examples (labels of shape ()), "
                                    "not batches; batch it, e.g. dataset.batch(32)"),
    ("labels", _mlp, ValueError, "train_data: labels must be class indices 0..3 for the model's 4 output "
                                 "units, got labels 0..5"),
    ("labels", lambda: _mlp(compiled=False), ValueError, "train_data: labels must be class indices 0..3 for "
                                                         "the model's 4 output units, got labels 0..5"),
    ("one-hot", lambda: _mlp(compiled=False), ValueError,
     "train_data: labels of shape (None, 4) look one-hot, but the model is not compiled and trains on "
     "class indices (sparse cross-entropy); pass y.argmax(-1) or compile the model with a categorical loss"),
    ("one-hot", _mlp, ValueError,
     "train_data: labels of shape (None, 4) look one-hot, but the loss SparseCategoricalCrossentropy "
     "takes class indices; pass y.argmax(-1) or compile the model with a categorical loss"),
    ("text", _mlp, TypeError, "train_data: x holds <U32 values, expected numbers (the model takes float32)"),
])
def test_bad_data_gets_a_one_line_error_before_anything_is_written(splits, tmp_path, case, model, error_type,
                                                                    message):
    _, val, test = _arrays(splits)
    if case in ("empty", "unbatched"):
        val, test = _pipeline(val), _pipeline(test)
    with pytest.raises(error_type) as error:
        _run(tmp_path / "exp", model(), _bad_data(case, splits), val, test)
    assert str(error.value) == message
    assert not (tmp_path / "exp").exists()


def test_class_indices_for_a_categorical_loss_are_refused(splits, tmp_path):
    train, val, test = _arrays(splits)
    model = _mlp(loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError) as error:
        _run(tmp_path / "exp", model, train, val, test)
    assert str(error.value) == ("train_data: labels of shape (None,) are class indices, but the loss "
                                "CategoricalCrossentropy takes one-hot labels of shape (None, 4); pass "
                                "keras.utils.to_categorical(y, 4) or compile the model with a sparse loss")
    assert not (tmp_path / "exp").exists()


def test_one_hot_labels_train_a_model_compiled_with_a_categorical_loss(splits, tmp_path):
    train, val, test = ((x, keras.utils.to_categorical(y, 4)) for x, y in _arrays(splits))
    model = _mlp(loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    records = _run(tmp_path / "exp", model, train, val, test)
    assert all(0 <= r["final_test_accuracy"] <= 1 for r in records)
