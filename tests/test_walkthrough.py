"""docs/walkthrough.md runs as written, cell after cell in one process, on a small folder of images."""

import contextlib
import io
import json
import math
import pathlib
import re

import keras
import numpy as np
import PIL.Image

import tf_lottery as tfl

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "walkthrough.md"
# The one line the test changes: the folder's path.
PLACEHOLDER = re.compile(r'^IMAGES = "[^"\n]*"(  # your folder here: .*)$', re.M)
CLASSES = {"zero": 0, "one": 1, "seven": 7}  # class folder -> MNIST digit
PER_CLASS = 40


def _image_folder(root):
    """40 PNGs of each of three MNIST digits from the bundled subset, one folder per class."""
    splits = tfl.data.load("mnist_small", validation_size=0)
    for name, digit in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(splits.train_y == digit)[:PER_CLASS]):
            PIL.Image.fromarray(splits.train_x[index, :, :, 0]).save(root / name / f"{i:03d}.png")
    return root


def _cells(images):
    text = PAGE.read_text()
    assert len(PLACEHOLDER.findall(text)) == 1, "the walkthrough needs exactly one IMAGES placeholder line"
    text = PLACEHOLDER.sub(lambda match: f"IMAGES = {str(images)!r}{match.group(1)}", text)
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _run(cell, namespace, number):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(cell, f"{PAGE.name}, cell {number}", "exec"), namespace)  # noqa: S102 (the page's code)
    return out.getvalue()


def _expected_remaining(sizes, output_key, fraction, rounds):
    """The remaining fraction after each round by the README's rule: a tensor with n remaining
    weights loses floor(p * n + 0.5); the output layer is pruned at half the rate."""
    left, fractions = dict(sizes), [1.0]
    for _ in range(rounds):
        for key, n in left.items():
            rate = fraction / 2 if key == output_key else fraction
            left[key] = n - math.floor(rate * n + 0.5)
        fractions.append(sum(left.values()) / sum(sizes.values()))
    return fractions


def test_the_walkthrough_runs_as_written(tmp_path, monkeypatch):
    cells = _cells(_image_folder(tmp_path / "images"))
    monkeypatch.chdir(tmp_path)
    namespace, printed = {}, []
    for number, cell in enumerate(cells, 1):
        printed.append(_run(cell, namespace, number))
    text = "".join(printed)

    splits, wrapped, ticket, records = (namespace[k] for k in ("splits", "wrapped", "ticket", "records"))
    assert splits.class_names == tuple(sorted(CLASSES)) and str(splits.class_names) in PAGE.read_text()
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (72, 24, 24)
    assert "train / validation / test: 72 24 24" in text

    # Rounds 0-3, each keeping what the pruning rule says.
    sizes = {key: mask.size for key, mask in tfl.get_masks(wrapped).items()}
    assert sorted(sizes) == ["conv1/kernel", "conv2/kernel", "output/kernel"]
    expected = _expected_remaining(sizes, "output/kernel", 0.5, 3)
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert [r["remaining_fraction"] for r in records] == expected
    summary = json.loads((tmp_path / "experiments/my_cnn/summary.json").read_text())
    assert [r["remaining_fraction"] for r in summary["rounds"]] == expected

    # Running the IMP cell again trains nothing and gives the same records.
    imp_cell = next(i for i, cell in enumerate(cells, 1) if "tfl.imp.run_rounds" in cell)
    _run(cells[imp_cell - 1], namespace, imp_cell)
    assert namespace["records"] == records

    # The stripped ticket: plain layers, exact zeros where pruned, the wrapped model's predictions.
    assert not any(isinstance(layer, tfl.LotteryWrapper) for layer in ticket.layers)
    x_test, _ = splits.test_arrays()
    np.testing.assert_array_equal(ticket.predict(x_test, verbose=0), wrapped.predict(x_test, verbose=0))
    masks = tfl.get_masks(wrapped)
    kernel = ticket.get_layer("conv1").kernel.numpy()
    np.testing.assert_array_equal(kernel == 0, masks["conv1/kernel"] == 0)
    assert "same predictions: True" in text and "zeros in conv1: 0.875" in text
    loaded = keras.models.load_model(tmp_path / "my_cnn_ticket.keras")
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0), ticket.predict(x_test, verbose=0))

    # The export: every format written, read back and checked against the round's model.
    report = json.loads((tmp_path / "exports/my_cnn/export_report.json").read_text())
    assert report == json.loads(json.dumps(namespace["report"]))
    assert sorted(report["formats"]) == ["keras", "saved_model", "tflite_float", "tflite_int8"]
    for name, result in report["formats"].items():
        assert (tmp_path / "exports/my_cnn" / result["path"]).exists(), name
        assert result["argmax_agreement"] == 1.0, name
    assert max(report["formats"][f]["max_abs_diff"] for f in ("keras", "saved_model")) <= 1e-5
    assert f"round {report['round']}: " in text

    # The plots: PNG files in the experiment folder.
    pngs = [plot.png for plot in namespace["plots"]]
    assert tmp_path / "experiments/my_cnn/plots/accuracy_vs_remaining.png" in [tmp_path / p for p in pngs]
    for png in pngs:
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
