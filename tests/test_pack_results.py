"""tools/pack_results.py: a finished experiment packed small for the repository and unpacked again."""

import json
import pathlib
import sys

import numpy as np

import tf_lottery as tfl
from tf_lottery import atomic, imp, plots, results, training

from conftest import tiny_model, tiny_training

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
import pack_results  # noqa: E402


def test_pack_then_unpack_gives_back_every_mask_curve_and_record(splits, tmp_path):
    training.configure_runtime(0)
    model = tfl.wrap(tiny_model())
    imp.run_rounds(model, splits, rounds=2, experiment_dir=tmp_path / "exp",
                   training_config=tiny_training(train_steps=20), pruning_config=tfl.PruningConfig())
    pack_results.pack(tmp_path / "exp", tmp_path / "pack")
    assert not list((tmp_path / "pack").rglob("ckpt"))
    pack_results.unpack(tmp_path / "pack", tmp_path / "back")
    assert results.read_summary(tmp_path / "back") == results.read_summary(tmp_path / "exp")
    for r in range(3):
        original, back = (results.round_dir(tmp_path / d, r) for d in ("exp", "back"))
        assert json.loads(results.curve_path(back).read_text()) == json.loads(
            results.curve_path(original).read_text())
        masks = atomic.read_npz(results.mask_path(original))
        restored = atomic.read_npz(results.mask_path(back))
        assert sorted(masks) == sorted(restored)
        for key in masks:
            np.testing.assert_array_equal(masks[key], restored[key])
    assert plots.load_runs([tmp_path / "back"])[0].summary["rounds"][2]["round"] == 2
