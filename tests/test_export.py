"""Export: every format read back and checked, the report, best-round choice, shrink, refusals, the binary."""

import importlib
import json
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import experiment, export, pruning, results, shrink
from tf_lottery.config import ConfigError, ExperimentConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory):
    """A finished 3-round IMP run of a small LeNet on the bundled MNIST subset, neurons pruned."""
    directory = tmp_path_factory.mktemp("exp") / "lenet"
    config = ExperimentConfig.from_flat(
        dataset="mnist_small", validation_size=500, hidden=(32, 16), rounds=2, train_steps=60,
        learning_rate=3e-3, eval_every=30, checkpoint_every=30, eval_batch_size=1000,
        structure="neuron", prune_fraction=0.5, experiment_dir=str(directory))
    experiment.run_imp(experiment.prepare(config))
    return directory


@pytest.fixture(scope="module")
def exported(experiment_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "round2"
    return out, export.export(experiment_dir, out, round=2)


def _inputs(experiment_dir, n=None):
    prepared = experiment.load_experiment(experiment_dir)
    x, y = prepared.splits.test_arrays()
    return prepared, x[:n], y[:n]


def test_every_format_is_written_and_reported(experiment_dir, exported):
    out, report = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "export_report.json", "model.keras", "model_float.tflite", "model_int8.tflite", "saved_model"]
    assert json.loads((out / "export_report.json").read_text()) == json.loads(json.dumps(report))
    assert report["round"] == 2 and report["source"] == str(experiment_dir.resolve())
    masks = results.round_masks(experiment_dir, 2)
    assert set(report["layers"]) == set(masks) == {"fc1/kernel", "fc2/kernel", "output/kernel"}
    for key, layer in report["layers"].items():
        assert layer["shape"] == list(masks[key].shape)
        assert layer["mask_ones"] == masks[key].sum()
        assert 0 < layer["nonzeros"] <= layer["mask_ones"]
        assert layer["sparsity"] == pytest.approx(1 - layer["nonzeros"] / masks[key].size)
    overall = report["overall"]
    assert overall["nonzeros"] == sum(v["nonzeros"] for v in report["layers"].values())
    assert overall["sparsity"] == pytest.approx(1 - overall["nonzeros"] / overall["size"])
    assert overall["mask_ones"] / overall["size"] == pytest.approx(report["remaining_fraction"])
    formats = report["formats"]
    assert set(formats) == {"saved_model", "keras", "tflite_float", "tflite_int8"}
    for name in ("saved_model", "keras"):
        assert formats[name]["max_abs_diff"] <= 1e-5
        assert formats[name]["test_accuracy"] == report["reference_test_accuracy"]
        assert formats[name]["nonzeros"] == {k: v["nonzeros"] for k, v in report["layers"].items()}
    assert formats["tflite_float"]["max_abs_diff"] <= 1e-4
    assert formats["tflite_int8"]["argmax_agreement"] >= 0.95
    assert formats["tflite_int8"]["bytes"] < formats["tflite_float"]["bytes"]
    assert report["reference_test_accuracy"] == pytest.approx(report["final_test_accuracy"], abs=1e-3)
    assert report["test_examples"] == 2000 and report["shrink"] is None
    assert report["signature"]["inputs"] == {"image": [None, 28, 28, 1]}


def test_saved_model_and_tflite_load_without_tf_lottery(experiment_dir, exported, tmp_path):
    out, _ = exported
    prepared, x, _ = _inputs(experiment_dir, 64)
    wrapped = experiment.restore_round(prepared, 2)
    np.savez(tmp_path / "batch.npz", x=x, expected=np.asarray(wrapped(x, training=False)))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tf_lottery"] = None  # importing it would fail
        import numpy as np
        import tensorflow as tf
        batch = np.load("batch.npz")
        serve = tf.saved_model.load({str(out / "saved_model")!r}).signatures["serve"]
        outputs = serve(image=tf.constant(batch["x"]))["output_0"].numpy()
        assert np.abs(outputs - batch["expected"]).max() <= 1e-5
        for name, check in (("float", "diff"), ("int8", "argmax")):
            interpreter = tf.lite.Interpreter(model_path={str(out)!r} + f"/model_{{name}}.tflite")
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, batch["x"].shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(index, batch["x"])
            interpreter.invoke()
            got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            if check == "diff":
                assert np.abs(got - batch["expected"]).max() <= 1e-4
            else:
                assert np.mean(got.argmax(1) == batch["expected"].argmax(1)) >= 0.95
        print("ok", "tf_lottery" in sys.modules and sys.modules["tf_lottery"] is not None)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ok False"


def test_keras_file_has_plain_layers_and_the_masked_kernels(experiment_dir, exported):
    out, _ = exported
    prepared, x, _ = _inputs(experiment_dir, 64)
    wrapped = experiment.restore_round(prepared, 2)
    loaded = keras.saving.load_model(out / "model.keras", compile=False)
    assert not any(isinstance(layer, tfl.LotteryWrapper) for layer in loaded.layers)
    assert not any("mask" in v.path or "snapshot" in v.path for v in loaded.weights)
    np.testing.assert_allclose(loaded(x), wrapped(x, training=False), atol=1e-5)
    for key, weight in tfl.effective_weights(wrapped).items():
        np.testing.assert_array_equal(loaded.get_layer(key.split("/")[0]).kernel.numpy(), weight)


RECORDS = [
    {"round": 0, "remaining_fraction": 1.0, "early_stop_test_accuracy": 0.950},
    {"round": 1, "remaining_fraction": 0.8, "early_stop_test_accuracy": 0.958},
    {"round": 2, "remaining_fraction": 0.64, "early_stop_test_accuracy": 0.946},
    {"round": 3, "remaining_fraction": 0.51, "failed": True, "error": "nan"},
    {"round": 4, "remaining_fraction": 0.41, "early_stop_test_accuracy": 0.944},
]


@pytest.mark.parametrize("tolerance, expected", [(0.5, 2), (0.6, 4), (0.0, 1), (10, 4)])
def test_best_round_is_the_sparsest_within_tolerance(tolerance, expected):
    chosen, selection = export.select_round(RECORDS, "best", tolerance)
    assert chosen == expected
    assert 3 not in selection["eligible_rounds"]
    assert selection["round0_early_stop_test_accuracy"] == 0.95


def test_round_choice_errors():
    assert export.select_round(RECORDS, "3")[0] == 3  # an explicit round is checked on disk later
    with pytest.raises(ConfigError, match="round: must be a round number or 'best'"):
        export.select_round(RECORDS, "last")
    with pytest.raises(ConfigError, match="round 0, which has not finished"):
        export.select_round(RECORDS[1:], "best")
    with pytest.raises(ConfigError, match="tolerance"):
        export.select_round(RECORDS, "best", -1)


# Shrink: same outputs from a smaller network.

def _set_random_parameters(model, seed=0):
    """Nonzero biases and batch-norm statistics, so that pruned units are constant, not zero."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.normal(1, 0.5, gamma.shape), rng.normal(0, 1, beta.shape),
                               rng.normal(0, 1, mean.shape), rng.uniform(0.5, 2, var.shape)])
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape))


def _pruned(model, structure, fraction=0.6):
    _set_random_parameters(model)
    wrapped = tfl.wrap(model)
    output = tfl.model_ops.output_key(wrapped)
    masks = tfl.get_masks(wrapped)
    new = pruning.prune(tfl.effective_weights(wrapped), masks, {k: fraction for k in masks if k != output},
                        structure=structure)
    tfl.set_masks(wrapped, {k: np.asarray(v) for k, v in new.items()})
    return tfl.strip(wrapped), tfl.get_masks(wrapped)


def _check_shrunk(model, masks, x):
    result = shrink.shrink(model, masks)
    np.testing.assert_allclose(result.model(x), model(x), atol=1e-4)
    for key, mask in result.masks.items():
        kernel = result.model.get_layer(key.split("/")[0]).kernel.numpy()
        assert kernel.shape == mask.shape and not np.any(kernel[mask == 0])
    assert result.model.count_params() < model.count_params()
    return result


def test_shrink_mlp_folds_constant_units_and_drops_unused_ones():
    model = tfl.models.build("lenet", (4, 4, 1), 3, hidden=(8, 6))
    fc1, fc2, output = (model.get_layer(n) for n in ("fc1", "fc2", "output"))
    k1, k2, k3 = fc1.kernel.numpy(), fc2.kernel.numpy(), output.kernel.numpy()
    b1 = np.linspace(-0.4, 0.4, 8).astype("float32")
    k1[:, [0, 6]] = 0          # no incoming weights: fc1/0 outputs relu(-0.4) = 0, fc1/6 relu(0.29) > 0
    k2[[2, 3], :] = 0          # fc1/2 and fc1/3 feed nothing
    k2[:, 5] = 0
    k2[6, 5] = 1.5             # fc2/5 hears only the constant fc1/6: constant itself, folded on
    k3[4, :] = 0               # fc2/4 feeds nothing
    fc1.set_weights([k1, b1])
    fc2.set_weights([k2, np.full(6, 0.1, "float32")])
    output.set_weights([k3, np.zeros(3, "float32")])
    x = np.random.default_rng(0).normal(size=(32, 4, 4, 1)).astype("float32")
    result = _check_shrunk(model, None, x)
    assert result.units == {"fc1": (4, 8), "fc2": (4, 6), "output": (3, 3)}
    assert result.folded == {"fc1": 1, "fc2": 1}
    folded = 0.1 + np.maximum(b1[6], 0) * 1.5
    expected = np.maximum(folded, 0) * k3[5]
    np.testing.assert_allclose(result.model.get_layer("output").bias.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("structure", ["filter", "channel", "unstructured"])
def test_shrink_conv_stack_with_flatten(structure):
    model = tfl.models.build("conv4", (8, 8, 1), 4, hidden=(16, 8), width=0.25)
    stripped, masks = _pruned(model, structure, fraction=0.9 if structure == "unstructured" else 0.6)
    x = np.random.default_rng(1).normal(size=(16, 8, 8, 1)).astype("float32")
    if structure == "unstructured":  # whole units die only by chance here
        np.testing.assert_allclose(shrink.shrink(stripped, masks).model(x), stripped(x), atol=1e-4)
        return
    result = _check_shrunk(stripped, masks, x)
    kept_conv4 = result.units["conv4"][0]
    assert result.model.get_layer("fc1").kernel.shape[0] == 2 * 2 * kept_conv4  # flatten rows
    if structure == "filter":
        assert result.merged and all(kept < total for kept, total in result.units.values()
                                     if total > 4)


def test_shrink_vgg_like_conv_batch_norm_stack():
    model = tfl.models.build("vgg16", (16, 16, 3), 4, width=0.125)
    stripped, masks = _pruned(model, "filter")
    x = np.random.default_rng(2).normal(size=(8, 16, 16, 3)).astype("float32")
    result = _check_shrunk(stripped, masks, x)
    assert result.merged  # constant BN outputs before a zero-padded conv: merged into one filter
    for i in range(1, 14):
        kept = result.units[f"conv{i}"][0]
        assert result.model.get_layer(f"bn{i}").gamma.shape == (kept,)
    assert result.model.count_params() < 0.4 * stripped.count_params()


def test_shrink_folds_into_a_valid_conv_without_bias():
    rng = np.random.default_rng(3)
    model = keras.Sequential([
        keras.Input((9, 9, 2), name="image"),
        keras.layers.Conv2D(6, 3, activation="tanh", name="c1"),
        keras.layers.AveragePooling2D(2, padding="same", name="pool"),
        keras.layers.Conv2D(5, 2, use_bias=False, name="c2"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.LeakyReLU(name="leaky"),
        keras.layers.GlobalMaxPooling2D(name="gmp"),
        keras.layers.Dense(3, use_bias=False, name="out")])
    _set_random_parameters(model)
    for name in ("c1", "c2", "out"):
        layer = model.get_layer(name)
        layer.kernel.assign(rng.normal(size=layer.kernel.shape))
    k1 = model.get_layer("c1").kernel.numpy()
    k1[..., [0, 3]] = 0
    model.get_layer("c1").kernel.assign(k1)
    k2 = model.get_layer("c2").kernel.numpy()
    k2[..., 1] = 0
    model.get_layer("c2").kernel.assign(k2)
    x = rng.normal(size=(4, 9, 9, 2)).astype("float32")
    result = _check_shrunk(model, None, x)
    assert result.units == {"c1": (4, 6), "c2": (4, 5), "out": (3, 3)}
    assert result.folded == {"c1": 2, "c2": 1} and not result.merged
    assert result.model.get_layer("c2").use_bias and result.model.get_layer("out").use_bias


@pytest.mark.parametrize("build, message", [
    (lambda: tfl.models.build("resnet20", (8, 8, 3), 4, width=0.25),
     "shrink supports sequential Dense/Conv stacks; residual additions need equal channel sets"),
    (lambda: keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="a"),
                               keras.layers.LayerNormalization(name="norm"), keras.layers.Dense(2)]),
     "layer 'norm' (LayerNormalization) is not supported by shrink"),
    (lambda: keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax", name="a"),
                               keras.layers.Dense(2)]),
     "hidden layer 'a' has a softmax activation"),
    (lambda: tfl.wrap(tfl.models.build("lenet", (4, 4, 1), 3, hidden=(4,))),
     "shrink a stripped model"),
])
def test_shrink_refuses_what_it_cannot_keep_identical(build, message):
    with pytest.raises(shrink.ShrinkError, match=re.escape(message)):
        shrink.shrink(build())


def test_export_with_shrink(experiment_dir, tmp_path):
    report = export.export(experiment_dir, tmp_path / "small", round=2, formats=["keras", "tflite"],
                           shrink=True)
    info = report["shrink"]
    assert info["units"]["fc1"][0] < 32 and info["units"]["fc2"][0] < 16
    assert info["units"]["output"] == [10, 10]
    assert info["parameters_after"] < 0.5 * info["parameters_before"]
    assert info["max_abs_diff"] <= 1e-4
    assert report["layers"]["fc1/kernel"]["shape"] == [784, info["units"]["fc1"][0]]
    assert report["layers"]["fc1/kernel"]["original_shape"] == [784, 32]
    assert report["formats"]["keras"]["test_accuracy"] == report["reference_test_accuracy"]
    assert report["formats"]["tflite_float"]["max_abs_diff"] <= 2e-4
    assert not (tmp_path / "small" / "saved_model").exists()  # only the TFLite converter's source


# Refusals: one-line reasons, nothing written.

def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_missing_round_and_non_empty_folder_are_refused(experiment_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"round: .*round_07 is not a finished round \(finished: 0, 1, 2\)"):
        export.export(experiment_dir, tmp_path / "out", round=7)
    assert _leftovers(tmp_path) == []
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty; pass --overwrite"):
        export.export(experiment_dir, out, round=1, formats=["keras"])
    assert _leftovers(out) == ["keep.txt"]
    report = export.export(experiment_dir, out, round=1, formats=["keras"], overwrite=True)
    assert _leftovers(out) == ["export_report.json", "model.keras"] and report["round"] == 1
    assert _leftovers(tmp_path) == ["taken"]
    with pytest.raises(ConfigError, match="holds the experiment folder"):
        export.export(experiment_dir, experiment_dir.parent, overwrite=True)


def test_corrupt_checkpoint_is_refused(experiment_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(experiment_dir, copy)
    for data in results.checkpoint_dir(results.round_dir(copy, 1)).glob("*.data-*"):
        data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"experiment_dir: .*round_01/ckpt/ckpt-\d+ is damaged \(IndexError: "
                                          r"Read less bytes than requested\); delete .*round_01 and rerun"):
        export.export(copy, tmp_path / "out", round=1)
    assert _leftovers(tmp_path) == ["copy"]


def test_failed_check_leaves_nothing(experiment_dir, tmp_path, monkeypatch):
    # The module itself: tf_lottery.export.runner is a lazy proxy, and monkeypatch's undo through it
    # deletes the constant from the real module (every later export in the process then fails).
    runner = importlib.import_module("tf_lottery.export.runner")
    monkeypatch.setattr(runner, "MAX_DIFF", -1.0)
    with pytest.raises(export.ExportError, match="keras: outputs differ from the round's model"):
        export.export(experiment_dir, tmp_path / "deep" / "out", round=1, formats=["keras"])
    assert _leftovers(tmp_path) == []


# The binary.

def _binary(*args):
    return subprocess.run([sys.executable, "-m", "binaries.export", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("export: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_binary_exports_best_round_shrunk(experiment_dir, tmp_path):
    out = tmp_path / "best"
    result = _binary(f"--experiment_dir={experiment_dir}", f"--export_dir={out}", "--round=best",
                     "--tolerance=100", "--shrink", "--format=saved_model,keras")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "export_report.json").read_text())
    assert report["round"] == 2 and report["selection"]["eligible_rounds"] == [0, 1, 2]
    assert "shrunk:" in result.stdout and f"exported: {out}" in result.stdout
    assert [line.split()[0] for line in result.stdout.splitlines()[-3:-1]] == ["saved_model", "keras"]


@pytest.mark.parametrize("args, message", [
    (["--round=9"], "--round: "),
    (["--round=last"], "--round: must be a round number or 'best', got 'last'"),
    (["--format=onnx"], "--format: must be names from saved_model, keras, tflite"),
    (["--export_dir="], "--export_dir: is required"),
    (["--experiment_dir=/nonexistent/exp"], "--experiment_dir: /nonexistent/exp/config.json does not exist"),
    (["--tolerance=-1"], "--tolerance: must be >= 0"),
    (["extra"], "unexpected arguments: extra"),
])
def test_binary_bad_input_is_one_line_exit_2(experiment_dir, tmp_path, args, message):
    result = _binary(f"--experiment_dir={experiment_dir}", f"--export_dir={tmp_path / 'out'}", *args)
    assert result.returncode == 2
    assert message in _error_line(result)
    assert not (tmp_path / "out").exists()


def test_binary_refuses_non_empty_folder_and_corrupt_checkpoint(experiment_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("")
    result = _binary(f"--experiment_dir={experiment_dir}", f"--export_dir={out}", "--round=1")
    assert result.returncode == 2
    assert "--export_dir: " in _error_line(result) and _leftovers(out) == ["x"]
    copy = tmp_path / "copy"
    shutil.copytree(experiment_dir, copy)
    for index in results.checkpoint_dir(results.round_dir(copy, 2)).glob("*.index"):
        index.write_bytes(b"not a checkpoint")
    result = _binary(f"--experiment_dir={copy}", f"--export_dir={tmp_path / 'new'}", "--round=2")
    assert result.returncode == 2
    assert f"--experiment_dir: {results.round_dir(copy, 2)}/ckpt/ckpt-" in _error_line(result)
    assert (" is damaged (OpError: file is too short to be an sstable); delete "
            f"{results.round_dir(copy, 2)} and rerun the experiment") in _error_line(result)
    assert not (tmp_path / "new").exists() and _leftovers(tmp_path) == ["copy", "out"]
