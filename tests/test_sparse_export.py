"""export --sparse: the compressed ticket file, sparse-encoded TFLite files, int8 zeros, the fast path."""

import json
import pathlib
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

import tf_lottery as tfl
from tf_lottery import experiment, export
from tf_lottery.config import ConfigError, ExperimentConfig
from tf_lottery.export import compressed, fast_path, sparse_tflite, tflite, tflite_graph
from tf_lottery.export.request import ExportError

REPO = pathlib.Path(__file__).resolve().parents[1]
PATHS = {"csr", "dense", "dense-builtin", "sparse-encoded", "removed"}


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory):
    """A finished IMP run of a small LeNet on the bundled MNIST subset: round 1 keeps 10% of the weights."""
    directory = tmp_path_factory.mktemp("exp") / "lenet"
    config = ExperimentConfig.from_flat(
        dataset="mnist_small", validation_size=500, hidden=(32, 16), rounds=1, train_steps=60,
        learning_rate=3e-3, eval_every=60, checkpoint_every=60, eval_batch_size=1000,
        prune_fraction=0.9, experiment_dir=str(directory))
    experiment.run_imp(experiment.prepare(config))
    return directory


@pytest.fixture(scope="module")
def exported(experiment_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "sparse"
    return out, export.export(experiment_dir, out, round=1, formats=["tflite"], sparse=True)


def _lenet_ticket(density_step=28):
    """LeNet-300-100 wrapped, every `density_step`-th weight of each kernel kept (a known mask)."""
    wrapped = tfl.wrap(tfl.models.build("lenet", (28, 28, 1), 10, hidden=(300, 100), seed=0))
    masks = {}
    for key, mask in tfl.get_masks(wrapped).items():
        known = np.zeros(mask.size, np.float32)
        known[::density_step] = 1
        masks[key] = known.reshape(mask.shape)
    tfl.set_masks(wrapped, masks)
    return wrapped, masks


def test_compressed_ticket_restores_the_exact_ticket_and_is_small(tmp_path):
    wrapped, masks = _lenet_ticket()
    stripped = tfl.strip(wrapped)
    sizes = compressed.save_ticket(wrapped, tmp_path / "t.npz")
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == 8400 + 1072 + 36  # ceil(size / 28) per kernel, of 266,200 weights
    assert sizes["uncompressed"]["values"] == 4 * kept
    assert sizes["uncompressed"]["masks"] == kept  # gaps of 27: one byte per survivor
    assert sizes["uncompressed"]["weights"] == 4 * (300 + 100 + 10)  # the biases
    dense_bytes = 4 * stripped.count_params()
    assert dense_bytes / sizes["bytes"] >= 15
    restored = tfl.load_ticket(tmp_path / "t.npz")
    assert not tfl.wrappers(restored)
    for a, b in zip(restored.weights, stripped.weights):
        assert a.path == b.path and np.array_equal(np.asarray(a), np.asarray(b))
    rewrapped = tfl.load_ticket(tmp_path / "t.npz", wrapped=True)
    assert {k: v.tolist() for k, v in tfl.get_masks(rewrapped).items()} == {
        k: v.tolist() for k, v in masks.items()}
    ticket = compressed.read_ticket(tmp_path / "t.npz")
    assert ticket.precision == "float32" and [e["encoding"] for e in ticket.header["weights"][::2]] == \
        ["gaps"] * 3
    int8 = compressed.save_ticket(wrapped, tmp_path / "t8.npz", precision="int8")
    assert dense_bytes / int8["bytes"] >= 40
    rounded = tfl.load_ticket(tmp_path / "t8.npz").get_layer("fc1").kernel.numpy()
    assert np.all(rounded[masks["fc1/kernel"] == 0] == 0)
    assert np.abs(rounded - stripped.get_layer("fc1").kernel.numpy()).max() <= \
        np.abs(stripped.get_layer("fc1").kernel.numpy()).max() / 254 + 1e-7


def test_half_dense_masks_are_stored_as_bits(tmp_path):
    wrapped = tfl.wrap(tfl.models.build("lenet", (4, 4, 1), 3, hidden=(8,), seed=0))
    masks = {k: (np.arange(m.size).reshape(m.shape) % 2).astype(np.float32) for k, m in tfl.get_masks(wrapped).items()}
    tfl.set_masks(wrapped, masks)
    sizes = compressed.save_ticket(wrapped, tmp_path / "t.npz")
    assert sizes["uncompressed"]["masks"] == 16 * 8 // 8 + 8 * 3 // 8
    restored = compressed.read_ticket(tmp_path / "t.npz")
    assert all(np.array_equal(restored.masks[k], masks[k]) for k in masks)


def _damage(path, tmp_path, edit):
    with zipfile.ZipFile(path) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    edit(members)
    damaged = tmp_path / "damaged.npz"
    with zipfile.ZipFile(damaged, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)
    return damaged


def _header_edit(change):
    def edit(members):
        header = np.load(__import__("io").BytesIO(members["header.npy"]))
        value = json.loads(header.tobytes())
        change(value)
        buffer = __import__("io").BytesIO()
        np.save(buffer, np.frombuffer(json.dumps(value).encode(), np.uint8))
        members["header.npy"] = buffer.getvalue()
    return edit


@pytest.mark.parametrize("damage, message", [
    (lambda path, tmp: tmp / "missing.npz", r"missing.npz: cannot read \(No such file or directory\)"),
    (lambda path, tmp: (tmp / "x.npz").write_bytes(path.read_bytes()[:300]) and tmp / "x.npz",
     r"x.npz: not a readable ticket file \(BadZipFile"),
    (lambda path, tmp: _damage(path, tmp, lambda m: m.pop("values_0.npy")),
     r"damaged.npz: member values_0.npy is missing; the file is damaged"),
    (lambda path, tmp: _damage(path, tmp, _header_edit(lambda h: h.update(format="other"))),
     r"damaged.npz: not a tf_lottery ticket file"),
    (lambda path, tmp: _damage(path, tmp, _header_edit(lambda h: h.update(version=7))),
     r"damaged.npz: ticket format version 7; this tf_lottery reads version 1"),
    (lambda path, tmp: _damage(path, tmp, _header_edit(lambda h: h["weights"][0].update(shape=[1 << 20, 1 << 20]))),
     r"damaged.npz: the header declares more than the 1073741824 weights a ticket file may hold"),
    (lambda path, tmp: _damage(path, tmp, _header_edit(lambda h: h["weights"][0].update(shape=[-3]))),
     r"damaged.npz: the header is damaged \(a weight without a valid shape\)"),
    (lambda path, tmp: _damage(path, tmp, _header_edit(lambda h: h["weights"][0].update(count=8000))),
     r"damaged.npz: mask of 'fc1/kernel' codes 8400 survivors, the header says 8000"),
    (lambda path, tmp: _damage(path, tmp, _header_edit(lambda h: h["weights"][0].update(count=9))),
     r"damaged.npz: member mask_0.npy says 8528 bytes, more than the 5028 it can hold"),
    (lambda path, tmp: _damage(path, tmp, lambda m: m.update({"values_0.npy": m["values_2.npy"]})),
     r"damaged.npz: member values_0.npy is float32\[1072\], expected float32\[8400\]"),
    (lambda path, tmp: _damage(path, tmp, lambda m: m.update({"header.npy": m["weight_1.npy"]})),
     r"damaged.npz: member header.npy is float32\[300\], expected uint8\[n\]"),
])
def test_damaged_ticket_files_are_one_line_errors(tmp_path, damage, message):
    wrapped, _ = _lenet_ticket()
    good = tmp_path / "good.npz"
    compressed.save_ticket(wrapped, good)
    with pytest.raises(compressed.TicketError, match=message) as caught:
        compressed.load_ticket(damage(good, tmp_path))
    assert len(str(caught.value).splitlines()) == 1


def test_ticket_arguments_are_checked(tmp_path):
    wrapped, masks = _lenet_ticket()
    with pytest.raises(compressed.TicketError, match="precision must be one of float32, float16, int8"):
        compressed.save_ticket(wrapped, tmp_path / "t.npz", precision="int4")
    with pytest.raises(compressed.TicketError, match="has no LotteryWrapper: pass its masks too"):
        compressed.save_ticket(tfl.models.build("lenet", (28, 28, 1), 10, hidden=(300, 100)), tmp_path / "t.npz")
    plain = tfl.models.build("lenet", (28, 28, 1), 10, hidden=(300, 100))
    with pytest.raises(compressed.TicketError, match="weight 'fc1/kernel' is nonzero where its mask is 0"):
        compressed.save_ticket(plain, tmp_path / "t.npz", masks=masks)
    assert not (tmp_path / "t.npz").exists()


def _small_saved_model(tmp_path, density=0.1):
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(24, activation="relu", name="a"),
                              keras.layers.Dense(8, name="b")])
    rng = np.random.default_rng(0)
    masks = {}
    for layer in model.layers:
        masks[f"{layer.name}/kernel"] = (rng.random(layer.kernel.shape) < density).astype(np.float32)
        layer.kernel.assign(layer.kernel.numpy() * masks[f"{layer.name}/kernel"])
        layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    return model, masks, tmp_path / "sm"


def test_int8_files_keep_every_pruned_weight_exactly_zero(tmp_path):
    model, masks, saved = _small_saved_model(tmp_path, density=0.4)
    x = np.random.default_rng(1).normal(size=(64, 20)).astype(np.float32)
    files = {sparse: sparse_tflite.convert(saved, "int8", sparse=sparse, calibration=x) for sparse in (False, True)}
    kernels = {}
    for sparse, content in files.items():
        interpreter = sparse_tflite.interpreter(content)
        checked = sparse_tflite.check_kernels("int8", interpreter, masks)
        assert all(v["dtype"] == "int8" and v["pruned_weights_zero"] for v in checked.values())
        assert all(v["sparse_encoded"] == sparse for v in checked.values())
        kernels[sparse] = sorted(value.tobytes() for _, value in sparse_tflite.constants(interpreter)
                                 if value.dtype == np.int8 and value.ndim == 2)
    assert len(kernels[True]) == 2 and kernels[True] == kernels[False]  # CSR decoded = the dense file's
    wrong = {k: 1 - v for k, v in masks.items()}
    with pytest.raises(ExportError, match="int8: kernel 'a/kernel' has nonzero weights where its mask is 0"):
        sparse_tflite.check_kernels("int8", sparse_tflite.interpreter(files[True]), wrong)


def test_csr_layers_give_the_same_outputs_with_and_without_xnnpack(tmp_path):
    model, masks, saved = _small_saved_model(tmp_path)
    dense = tflite.convert(saved, quantize=False)
    kernels = {layer.name: layer.kernel.numpy() for layer in model.layers}
    content = tflite_graph.builtin_layers(dense, {name: (kernel, "csr") for name, kernel in kernels.items()})
    x = np.random.default_rng(2).normal(size=(32, 20)).astype(np.float32)
    expected = np.asarray(model(x))
    for delegates in (True, False):
        interpreter = sparse_tflite.interpreter(content, delegates=delegates)
        np.testing.assert_allclose(tflite.outputs(interpreter, x, 16), expected, atol=1e-5)
        ops = [op["op_name"] for op in interpreter._get_ops_details()]  # pylint: disable=protected-access
        assert ops[:4] == ["CAST", "FULLY_CONNECTED", "CAST", "FULLY_CONNECTED"]
        checked = sparse_tflite.check_kernels("fast", interpreter, masks)
        assert all(v["sparse_encoded"] for v in checked.values())
    buffers = [0 if b.data is None else len(b.data) for b in
               flatbuffer_utils.convert_bytearray_to_object(bytearray(content)).buffers]
    assert 4 * 20 * 24 not in buffers and 4 * 24 * 8 not in buffers  # the dense copies are gone
    with pytest.raises(ValueError, match="no FULLY_CONNECTED layer of the file holds the kernel of c"):
        tflite_graph.builtin_layers(dense, {"c": (np.ones((3, 3), np.float32), "csr")})


def test_float16_block_sparse_weights_get_the_densify_the_converter_forgets(tmp_path):
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(8, name="a")])
    kernel = np.zeros((32, 8), np.float32)
    kernel[:4] = np.random.default_rng(0).normal(size=(4, 8))  # 1x4 blocks: the converter keeps them sparse
    model.layers[0].kernel.assign(kernel)
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    x = np.random.default_rng(1).normal(size=(16, 32)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"), signature_keys=["serve"])
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY, tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    raw = converter.convert()
    broken = tflite.outputs(sparse_tflite.interpreter(raw, delegates=False), x, 16)
    assert not np.allclose(broken, np.asarray(model(x)), atol=1e-2)  # TensorFlow 2.21's float16 files
    repaired = sparse_tflite.convert(tmp_path / "sm", "float16", sparse=True)
    for delegates in (True, False):
        interpreter = sparse_tflite.interpreter(repaired, delegates=delegates)
        np.testing.assert_allclose(tflite.outputs(interpreter, x, 16), np.asarray(model(x)), atol=1e-2)
        ops = [op["op_name"] for op in interpreter._get_ops_details()]  # pylint: disable=protected-access
        assert ops[:2] == ["DENSIFY", "DEQUANTIZE"]


def test_n_of_m_pattern_is_recognised():
    mask = np.zeros((8, 3), np.float32)
    mask[[0, 1, 4, 6], :] = 1
    assert fast_path.pattern(mask) == "2:4"
    sparse = (np.random.default_rng(0).random((784, 300)) < 0.036).astype(np.float32)
    assert fast_path.pattern(sparse) is None  # at most 3 of 4 somewhere, but few groups keep 3
    assert fast_path.pattern(np.ones((8, 3), np.float32)) is None


def test_export_sparse_writes_checked_files(experiment_dir, exported):
    out, report = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "export_report.json", "model_fast.tflite", "model_float.tflite", "model_int8.tflite",
        "model_sparse.tflite", "model_sparse_float16.tflite", "model_sparse_int8.tflite",
        "ticket.npz", "ticket_int8.npz"]
    assert json.loads((out / "export_report.json").read_text()) == json.loads(json.dumps(report))
    formats, accuracy = report["formats"], report["reference_test_accuracy"]
    assert formats["tflite_sparse"]["max_abs_diff"] <= 1e-4
    assert formats["tflite_sparse"]["bytes"] < formats["tflite_float"]["bytes"] / 4
    assert 100 * (accuracy - formats["tflite_sparse_float16"]["test_accuracy"]) <= 0.1
    assert 100 * (accuracy - formats["tflite_sparse_int8"]["test_accuracy"]) <= 0.3
    assert formats["tflite_fast"]["max_abs_diff"] <= 2e-4
    assert formats["tflite_fast"]["max_abs_diff_without_xnnpack"] <= 2e-4
    masks = tfl.results.round_masks(experiment_dir, 1)
    for name in ("tflite_sparse", "tflite_sparse_float16", "tflite_sparse_int8"):
        assert set(formats[name]["kernels"]) == set(masks)
        assert all(k["pruned_weights_zero"] for k in formats[name]["kernels"].values())
    assert {k["dtype"] for k in formats["tflite_sparse_int8"]["kernels"].values()} == {"int8"}
    assert formats["ticket"]["bit_identical"] and formats["ticket"]["max_abs_diff"] == 0
    assert formats["ticket"]["bytes"] == (out / "ticket.npz").stat().st_size
    assert formats["ticket_int8"]["bytes"] < formats["ticket"]["bytes"]
    ticket = tfl.load_ticket(out / "ticket.npz", wrapped=True)
    assert all(np.array_equal(tfl.get_masks(ticket)[k], masks[k]) for k in masks)
    fast = report["sparse"]["fast_path"]
    assert fast["chosen"] in {"dense", "sparse_encoded"} | {
        f"{prefix}{kind}" for prefix in ("", "shrunk ") for kind in ("per-layer", "all csr", "all dense-builtin")
    } | {"shrunk"}
    assert fast["x_dense"]["dense"] == 1 and fast["speedup_vs_dense"] == fast["x_dense"][fast["chosen"]]
    assert fast["chosen"] == "dense" or fast["speedup_vs_dense"] >= 1 / (1 - fast_path.MARGIN) - 1e-9
    assert set(fast["layers"]) == set(masks)
    for key, layer in fast["layers"].items():
        assert layer["layer"] == key.split("/")[0] and layer["path"] in PATHS and layer["reason"]
        assert layer["type"] == "Dense" and layer["density"] == pytest.approx(masks[key].mean())


def test_sparse_batch_is_checked(experiment_dir, tmp_path):
    for value in (0, -1, "x", 2.5, 5000):
        with pytest.raises(ConfigError, match=re.escape("sparse_batch: must be a whole number from 1 to 4096")):
            export.prepare(experiment_dir, tmp_path / "out", sparse=True, sparse_batch=value)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_binary_exports_sparse(experiment_dir, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "binaries.export", f"--experiment_dir={experiment_dir}",
                             f"--export_dir={out}", "--round=1", "--format=keras", "--sparse"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "export_report.json").read_text())
    lines = result.stdout.splitlines()
    assert lines[-1] == f"exported: {out}"
    assert any(line.startswith("smaller than the dense float32 TFLite file") and "ticket " in line for line in lines)
    chosen = report["sparse"]["fast_path"]["chosen"]
    assert any(line.startswith(f"model_fast.tflite: {chosen}, ") for line in lines)
    for key, layer in report["sparse"]["fast_path"]["layers"].items():
        assert f"  {key}: {layer['path']}: {layer['reason']}" in lines
    bad = subprocess.run([sys.executable, "-m", "binaries.export", f"--experiment_dir={experiment_dir}",
                          f"--export_dir={tmp_path / 'bad'}", "--sparse", "--sparse_batch=0"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert [line for line in bad.stderr.splitlines() if line.startswith("export: error:")] == [
        "export: error: --sparse_batch: must be a whole number from 1 to 4096, got 0"]
