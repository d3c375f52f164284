"""IMP from Python on the user's own compiled model and data, with the binaries' guarantees."""

import json
import os
import pathlib
import re
import subprocess
import sys

import hypothesis
import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import strategies as st

import tf_lottery as tfl
from tf_lottery import imp, results, training
from tf_lottery.results import launches

from conftest import killed_after_save, tiny_model, tiny_training

REPO = pathlib.Path(__file__).resolve().parents[1]
PRUNING = tfl.PruningConfig(fraction=0.5)


def _run(tmp_path, splits, model=None, **kwargs):
    training.configure_runtime(0)
    values = dict(rounds=2, experiment_dir=tmp_path / "exp", training_config=tiny_training(train_steps=20),
                  pruning_config=PRUNING)
    values.update(kwargs)
    return imp.run_rounds(model or tfl.wrap(tiny_model()), splits, **values)


def _files(directory):
    return sorted(str(p.relative_to(directory)) for p in pathlib.Path(directory).rglob("*"))


def test_readme_from_python_runs_as_written_then_export_and_plots(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "experiments/my_mlp/summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2, 3]
    assert summary["rounds"][3]["remaining_fraction"] < 0.2
    for command in commands:
        done = subprocess.run([sys.executable, *command.split()[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    report = json.loads((tmp_path / "exports/my_mlp/export_report.json").read_text())
    assert report["formats"]["saved_model"]["argmax_agreement"] == 1.0
    assert (tmp_path / "experiments/my_mlp/report.md").is_file()
    lmc = subprocess.run([sys.executable, "-m", "binaries.analyze", "lmc",
                          "--experiment_dir=experiments/my_mlp", "--round=1"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert lmc.returncode == 2 and "written by imp.run_rounds from Python" in lmc.stderr
    assert len(lmc.stderr.strip().splitlines()) == 1


def test_rerun_of_a_finished_folder_restores_the_last_ticket(splits, tmp_path):
    records = _run(tmp_path, splits)
    fresh = tfl.wrap(tiny_model())
    assert _run(tmp_path, splits, model=fresh) == records
    masks = results.round_masks(tmp_path / "exp", 2)
    for key, mask in tfl.get_masks(fresh).items():
        np.testing.assert_array_equal(mask, masks[key])
    kernel = tfl.strip(fresh).get_layer("fc1").kernel.numpy()
    assert int((kernel != 0).sum()) == int(masks["fc1/kernel"].sum())


@pytest.mark.parametrize("change, field", [
    (dict(pruning_config=tfl.PruningConfig(fraction=0.3)), "prune_fraction"),
    (dict(training_config=tiny_training(train_steps=20, learning_rate=0.5)), "learning_rate"),
    (dict(reset="rewind", rewind_step=10), "reset"),
    (dict(model=lambda: tfl.wrap(tiny_model(hidden=(12, 8)))), "model_fingerprint"),
])
def test_a_changed_setting_is_refused_naming_it(splits, tmp_path, change, field):
    _run(tmp_path, splits, rounds=1)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "exp").rglob("*")}
    if "model" in change:
        change = {"model": change["model"]()}
    with pytest.raises(ValueError, match=f"differs in .*{field}"):
        _run(tmp_path, splits, rounds=1, **change)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "exp").rglob("*")} == before


def test_other_data_is_refused(splits, tmp_path):
    from conftest import make_splits
    _run(tmp_path, splits, rounds=1)
    with pytest.raises(ValueError, match="differs in data_fingerprint"):
        _run(tmp_path, make_splits(seed=3), rounds=1)


def test_more_rounds_extend_the_experiment(splits, tmp_path):
    first = _run(tmp_path, splits, rounds=1)
    assert _run(tmp_path, splits, rounds=2)[:2] == first
    # Each launch is recorded with what ran it.
    first_launch, second_launch = launches.read(tmp_path / "exp")
    assert first_launch["command"] == "python API" and first_launch["commit"] == launches.commit()
    assert first_launch["packages"]["tensorflow"] == tf.__version__
    assert first_launch["packages"]["keras"] == keras.__version__
    assert second_launch["started"] >= first_launch["started"]


@pytest.mark.parametrize("make, message", [
    (lambda: dict(pruning_config=tfl.PruningConfig(dense_layers=("fc9",))), "has no layer named 'fc9'"),
    (lambda: dict(rounds=-1), "rounds: must be >= 0"),
    (lambda: dict(rounds=1.5), "rounds must be an int"),
    (lambda: dict(reset="restart"), "reset: must be one of init, rewind"),
    (lambda: dict(reset="rewind", rewind_step=21), "rewind_step must be in \\[0, train_steps=20\\]"),
    (lambda: dict(training_config=tiny_training(batch_size=1000)), "exceeds the 240 training examples"),
    (lambda: dict(monitor="loss"), "monitor must name a validation or test quantity"),
    (lambda: dict(training_config="fast"), "training_config must be a tf_lottery.TrainingConfig"),
    (lambda: dict(callbacks=["stop"]), "callbacks must be keras.callbacks.Callback"),
])
def test_bad_arguments_fail_before_anything_is_written(splits, tmp_path, make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _run(tmp_path, splits, **make())
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("build, field", [
    (lambda: tfl.PruningConfig(fraction=1.5), "prune_fraction"),
    (lambda: tfl.PruningConfig(fraction=-0.2), "prune_fraction"),
    (lambda: tfl.PruningConfig(scope="globall"), "prune_scope"),
    (lambda: tfl.PruningConfig(structure="neurons"), "structure"),
    (lambda: tfl.TrainingConfig(train_steps=0), "train_steps"),
    (lambda: tfl.TrainingConfig(batch_size=0), "batch_size"),
])
def test_bad_settings_fail_when_made(build, field):
    with pytest.raises(tfl.ConfigError) as error:
        build()
    assert error.value.field == field


def test_float_images_need_scaled_splits(splits):
    with pytest.raises(tfl.data.DataError, match="train_x is float32, but raw images must be uint8"):
        tfl.data.Splits("mine", splits.train_x.astype("float32"), splits.train_y, splits.val_x,
                        splits.val_y, splits.test_x, splits.test_y, 4, 0.5, 0.2)


def test_numpy_pairs_are_used_as_given(splits, tmp_path):
    def scaled(x):
        return ((x / 255.0) - splits.mean) / splits.std

    as_arrays = _run(tmp_path / "a", (scaled(splits.train_x), splits.train_y),
                     validation_data=(scaled(splits.val_x), splits.val_y),
                     test_data=(scaled(splits.test_x), splits.test_y), rounds=1)
    as_splits = _run(tmp_path / "b", splits, rounds=1)
    for a, b in zip(as_arrays, as_splits):
        assert a["remaining"] == b["remaining"]
        assert abs(a["final_test_accuracy"] - b["final_test_accuracy"]) <= 1 / 60


def _pipelines(splits, batch=20):
    def make(x, y, shuffle=False):
        dataset = tf.data.Dataset.from_tensor_slices(((x / 255.0).astype("float32"), y))
        # A pipeline reshuffling each epoch takes its order from a seed generator TensorFlow
        # shares between pipelines of the same seeds in one process: fixed order here.
        shuffled = dataset.shuffle(len(y), seed=1, reshuffle_each_iteration=False)
        return (shuffled if shuffle else dataset).batch(batch)
    return (make(splits.train_x, splits.train_y, True), make(splits.val_x, splits.val_y),
            make(splits.test_x, splits.test_y))


def _compiled(optimizer=None, loss=None, metrics=("accuracy",)):
    model = tfl.wrap(tiny_model())
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2),
                  loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=list(metrics))
    return model


def _compiled_training(**overrides):
    """tiny_training without the optimizer settings a compiled model brings itself."""
    return tiny_training(learning_rate=tfl.TrainingConfig().learning_rate, **overrides)


def test_compiled_optimizer_loss_and_metrics_are_used(splits, tmp_path):
    train, val, test = _pipelines(splits)
    frozen = _compiled(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    theta0 = tfl.raw_weights(frozen)
    _run(tmp_path / "sgd0", train, model=frozen, validation_data=val, test_data=test, rounds=0,
         training_config=_compiled_training(train_steps=20))
    for key, value in tfl.raw_weights(frozen).items():
        np.testing.assert_array_equal(value, theta0[key])  # learning rate 0: nothing moved
    model = _compiled(metrics=("accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2)))
    records = _run(tmp_path / "adam", train, model=model, validation_data=val, test_data=test,
                   rounds=1, monitor="val_accuracy", training_config=_compiled_training(train_steps=20))
    curve = json.loads(results.curve_path(results.round_dir(tmp_path / "adam" / "exp", 1)).read_text())
    assert 0 <= curve[-1]["val_sparse_top_k_categorical_accuracy"] <= 1
    assert curve[-1]["val_sparse_top_k_categorical_accuracy"] >= curve[-1]["val_accuracy"]
    best = max(r["val_accuracy"] for r in curve)
    assert records[1]["early_stop_val_accuracy"] == best
    assert records[1]["early_stop_monitor"] == "val_accuracy"
    saved = json.loads(results.config_path(tmp_path / "adam" / "exp").read_text())
    assert saved["objective"]["optimizer"]["class_name"].lower() == "adam"


def test_training_config_optimizer_settings_conflict_with_a_compiled_model(splits, tmp_path):
    with pytest.raises(ValueError, match="sets learning_rate, but the model is compiled"):
        _run(tmp_path, splits, model=_compiled(), training_config=tiny_training(train_steps=20))


def test_callbacks_see_every_evaluation_and_can_stop_a_round(splits, tmp_path):
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, mode="max")
    records = _run(tmp_path, splits, rounds=1, callbacks=[Record(), stop],
                   training_config=tiny_training(train_steps=40, eval_every=10))
    assert seen[0] == (0, ["loss", "test_accuracy", "test_loss", "val_accuracy", "val_loss"])
    assert all(r.get("stopped_at", 40) < 40 for r in records)  # mode=max on a falling loss: stop


def test_a_killed_pipeline_run_resumes_to_the_same_numbers(splits, tmp_path, monkeypatch):
    config = _compiled_training(train_steps=30, checkpoint_every=10)

    def run(name):
        training.configure_runtime(0)  # the pipeline's shuffle seed pairs its own with the global one
        train, val, test = _pipelines(splits)
        model = tfl.wrap(tiny_model())
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return _run(tmp_path / name, train, model=model, validation_data=val, test_data=test,
                    rounds=1, training_config=config)

    expected = run("straight")
    killed_after_save(monkeypatch, 5, lambda: run("killed"))  # round 1, after its checkpoint at 20
    resumed = run("killed")

    def comparable(records):
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in records]
    assert comparable(resumed) == comparable(expected)


@hypothesis.settings(max_examples=40, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(values=st.dictionaries(
    st.sampled_from(["fraction", "output_fraction", "scope", "criterion", "structure", "n_of_m",
                     "block_shape", "dense_layers", "schedule"]),
    st.one_of(st.floats(-2, 2), st.integers(-3, 5), st.text(max_size=6),
              st.tuples(st.integers(-2, 5), st.integers(-2, 5)), st.none()), max_size=3),
    rounds=st.one_of(st.integers(-2, 1), st.floats(-1, 1), st.text(max_size=2)))
def test_python_api_gives_value_or_type_errors_and_writes_nothing(splits, tmp_path, values, rounds):
    directory = tmp_path / f"h{abs(hash((repr(values), repr(rounds))))}"
    try:
        config = tfl.PruningConfig(**values)
    except (ValueError, TypeError):
        return
    try:
        imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=rounds, experiment_dir=directory,
                       training_config=tiny_training(train_steps=10), pruning_config=config)
    except (ValueError, TypeError):
        assert not directory.exists()


def test_wrap_keeps_the_compile_settings(splits, tmp_path):
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    wrapped = tfl.wrap(model)
    assert wrapped.compiled
    optimizer = wrapped.get_compile_config()["optimizer"]["config"]
    assert (round(optimizer["learning_rate"], 6), optimizer["momentum"]) == (0.05, 0.5)
    assert wrapped.optimizer is not model.optimizer
    records = _run(tmp_path, splits, model=wrapped, rounds=0,
                   training_config=_compiled_training(train_steps=20))
    saved = json.loads(results.config_path(tmp_path / "exp").read_text())
    assert saved["optimizer"] == "sgd (compiled)" and records[0]["train_steps"] == 20


@hypothesis.settings(max_examples=30, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(
    mask_value=st.one_of(st.floats(allow_nan=True), st.integers(-2, 3)),
    mask_shape=st.sampled_from([(64, 16), (16, 64), (3,), ()]),
    data=st.one_of(st.none(), st.integers(), st.text(max_size=3),
                   st.tuples(st.integers(1, 5), st.integers(1, 5)),
                   st.lists(st.integers(0, 3), max_size=3).map(tuple)))
def test_masks_and_data_from_python_give_value_or_type_errors(splits, tmp_path, mask_value, mask_shape,
                                                              data):
    model = tfl.wrap(tiny_model())
    masks = tfl.get_masks(model)
    masks["fc1/kernel"] = np.full(mask_shape, mask_value, dtype=np.float32)
    try:
        tfl.set_masks(model, masks)
    except ValueError:
        pass
    else:
        assert mask_shape == (64, 16) and np.float32(mask_value) in (0, 1)
    directory = tmp_path / f"d{abs(hash(repr(data)))}"
    with pytest.raises((ValueError, TypeError)):
        imp.run_rounds(model, data, rounds=0, experiment_dir=directory,
                       training_config=tiny_training(train_steps=10))
    assert not directory.exists()
