"""The IMP driver: exact per-layer sparsity, nested masks, reset and rewind, resume, folder contents."""

import json

import numpy as np
import tensorflow as tf
import pytest

import tf_lottery as tfl
from tf_lottery import atomic, imp, pruning, results, training
from tf_lottery.results import checkpoints

from conftest import killed_after_save, tiny_model, tiny_training

PRUNING = tfl.PruningConfig(fraction=0.2, output_fraction=0.1)
SIZES = {"fc1/kernel": 64 * 16, "fc2/kernel": 16 * 8, "output/kernel": 8 * 4}


def _run(directory, splits, rounds=3, training_config=None, pruning_config=PRUNING, **kwargs):
    training.configure_runtime(0)
    return imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=rounds,
                          training_config=training_config or tiny_training(train_steps=20),
                          pruning_config=pruning_config, experiment_dir=directory, **kwargs)


def _comparable(records):
    return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in records]


def test_layerwise_remaining_counts_and_nested_masks(splits, tmp_path):
    records = _run(tmp_path, splits, rounds=3)
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    expected = dict(SIZES)
    previous = None
    for r, record in enumerate(records):
        masks = atomic.read_npz(tmp_path / f"round_{r:02d}" / "mask.npz")
        assert sorted(masks) == sorted(SIZES)
        for key, mask in masks.items():
            assert int(mask.sum()) == expected[key] == record["layers"][key]["remaining"]
            assert record["layers"][key]["size"] == SIZES[key]
            if previous is not None:
                assert np.all(mask <= previous[key])
        assert record["remaining"] == sum(expected.values())
        assert record["remaining_fraction"] == pytest.approx(sum(expected.values()) / sum(SIZES.values()))
        for key in expected:
            rate = 0.1 if key == "output/kernel" else 0.2
            expected[key] -= pruning.prune_count(expected[key], rate)
        previous = masks
    assert records[3]["layers"]["fc1/kernel"]["remaining"] == 524  # 1024 - 205 = 819, - 164 = 655, - 131 = 524
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert _comparable(summary["rounds"]) == _comparable(records)
    for field in ("early_stop_iteration", "early_stop_test_accuracy", "final_test_accuracy",
                  "train_steps", "wall_seconds"):
        assert field in records[-1]


def test_global_scope_prunes_one_pool(splits, tmp_path):
    config = tfl.PruningConfig(fraction=0.5, output_fraction=0.0, scope="global")
    records = _run(tmp_path, splits, rounds=1, pruning_config=config)
    layers = records[1]["layers"]
    assert layers["fc1/kernel"]["remaining"] + layers["fc2/kernel"]["remaining"] == (1024 + 128) // 2
    assert layers["output/kernel"]["remaining"] == 32
    assert layers["fc1/kernel"]["remaining"] != 512  # one threshold, not 50% per tensor


def test_reset_init_restores_theta0_on_survivors(splits, tmp_path):
    training.configure_runtime(0)
    model = tfl.wrap(tiny_model())
    theta0 = [w.numpy().copy() for w in model.trainable_weights]
    starts = {}

    def record(r, m):
        starts[r] = [w.numpy().copy() for w in m.trainable_weights]

    imp.run_rounds(model, splits, rounds=2, training_config=tiny_training(train_steps=20),
                   pruning_config=PRUNING, experiment_dir=tmp_path, on_round_start=record)
    assert sorted(starts) == [0, 1, 2]
    for r in (0, 1, 2):
        for a, b in zip(theta0, starts[r]):
            np.testing.assert_array_equal(a, b)  # kernels and biases alike


def test_rewind_restores_the_weights_of_iteration_k(splits, tmp_path):
    k = 10
    config = tiny_training(train_steps=20)
    training.configure_runtime(0)
    reference = tfl.wrap(tiny_model())
    tfl.Trainer(reference, splits, tiny_training(train_steps=k, eval_every=k)).train()
    theta_k = [w.numpy().copy() for w in reference.trainable_weights]
    starts = {}
    records = _run(tmp_path, splits, rounds=1, training_config=config, reset="rewind",
                   rewind_step=k, on_round_start=lambda r, m: starts.setdefault(
                       r, [w.numpy().copy() for w in m.trainable_weights]))
    assert len(records) == 2
    for a, b in zip(theta_k, starts[1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    theta0 = [w.numpy() for w in tfl.wrap(tiny_model()).trainable_weights]
    assert not np.allclose(theta0[0], starts[1][0])


def test_resume_after_kill_mid_round_matches_uninterrupted_run(splits, tmp_path, monkeypatch):
    config = tiny_training(train_steps=30, checkpoint_every=10)
    expected = _run(tmp_path / "straight", splits, rounds=2, training_config=config)

    # Killed in round 1, right after its checkpoint at iteration 20 (the fifth save).
    killed_after_save(monkeypatch, 5,
                      lambda: _run(tmp_path / "killed", splits, rounds=2, training_config=config))
    assert (tmp_path / "killed" / "round_00" / "metrics.json").exists()
    assert not (tmp_path / "killed" / "round_01" / "metrics.json").exists()
    resumed = _run(tmp_path / "killed", splits, rounds=2, training_config=config)
    assert _comparable(resumed) == _comparable(expected)
    for r in range(3):
        a = atomic.read_npz(tmp_path / "straight" / f"round_{r:02d}" / "mask.npz")
        b = atomic.read_npz(tmp_path / "killed" / f"round_{r:02d}" / "mask.npz")
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_finished_rounds_are_not_retrained(splits, tmp_path, monkeypatch):
    first = _run(tmp_path, splits, rounds=1)

    def no_training(self, *args, **kwargs):
        raise AssertionError("a finished round was trained again")

    monkeypatch.setattr(training.Trainer, "train", no_training)
    assert _run(tmp_path, splits, rounds=1) == first


def test_more_rounds_extend_a_finished_experiment(splits, tmp_path):
    first = _run(tmp_path, splits, rounds=1)
    extended = _run(tmp_path, splits, rounds=2)
    assert extended[:2] == first and len(extended) == 3


def test_format_table_lists_every_round(splits, tmp_path):
    table = results.format_table(_run(tmp_path, splits, rounds=1))
    lines = table.splitlines()
    assert "remaining %" in lines[0] and "early-stop it" in lines[0]
    assert lines[1].split()[:2] == ["0", "100.00"]
    assert lines[2].split()[0] == "1"


@pytest.mark.parametrize("reset, offset", [("lr_rewind", 10), ("finetune", 40)])
def test_lr_rewind_and_finetune_keep_trained_weights_and_shift_the_schedule(splits, tmp_path, reset,
                                                                            offset):
    config = tiny_training(train_steps=40, lr_milestones=(20,), lr_gamma=0.1, eval_every=10)
    training.configure_runtime(0)
    model = tfl.wrap(tiny_model())
    starts, rates = {}, {}
    original = training.Trainer.train

    def record_rates(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        schedule = self.optimizer.learning_rate  # the schedule at the run's last iteration
        rates[len(rates)] = (int(self.optimizer.iterations.numpy()), float(schedule))
        return result

    training.Trainer.train = record_rates
    try:
        records = imp.run_rounds(
            model, splits, rounds=1, training_config=config, pruning_config=PRUNING, reset=reset,
            rewind_step=10, experiment_dir=tmp_path,
            on_round_start=lambda r, m: starts.setdefault(r, (tfl.raw_weights(m), tfl.get_masks(m))))
    finally:
        training.Trainer.train = original
    assert [r["train_steps"] for r in records] == [40, 30]
    weights, masks = starts[1]  # round 1 starts from round 0's trained weights, pruned
    restored = tfl.wrap(tiny_model())
    checkpoints.restore_model(restored, results.round_dir(tmp_path, 0))
    for key, value in tfl.raw_weights(restored).items():
        np.testing.assert_array_equal(weights[key], value)
        assert masks[key].sum() < masks[key].size
    # The schedule replays from `offset`: after round 1's 30 iterations it is at 30 + offset.
    schedule = training.WarmupPiecewise(config.learning_rate, 0, (20,), 0.1)
    assert rates[1][0] == 30
    assert rates[1][1] == pytest.approx(float(schedule(30 + offset)))
    assert rates[0][1] == pytest.approx(float(schedule(40)))
    expected = [float(schedule(i + offset)) for i in range(30)]
    shifted = training.WarmupPiecewise(config.learning_rate, 0, (20,), 0.1)
    shifted.offset = tf.constant(offset, tf.int64)
    assert [float(shifted(i)) for i in range(30)] == pytest.approx(expected)


def test_lr_rewind_needs_a_step_before_the_end():
    with pytest.raises(tfl.ConfigError, match="rewind_step: must be below train_steps=100 with --reset=finetune"):
        tfl.ExperimentConfig.from_flat(train_steps=100, reset="finetune", rewind_step=100)
    assert tfl.ExperimentConfig.from_flat(reset="lr_rewind", rewind_step=500).name().startswith(
        "imp_lenet_mnist_lr_rewind500_")
