"""Trainer: masked training keeps pruned weights at zero, resumes exactly, fuses steps exactly."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import input_pipeline, results, training

from conftest import tiny_model, tiny_training


def _pruned_model(seed=0):
    wrapped = tfl.wrap(tiny_model(seed))
    rng = np.random.default_rng(seed)
    masks = {k: (rng.random(v.shape) < 0.4).astype("float32") for k, v in tfl.get_masks(wrapped).items()}
    tfl.set_masks(wrapped, masks)
    return wrapped, masks


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def test_pruned_weights_stay_exactly_zero_and_untouched(splits):
    model, masks = _pruned_model()
    raw_before = tfl.raw_weights(model)
    result = tfl.Trainer(model, splits, tiny_training()).train()
    raw_after = tfl.raw_weights(model)
    effective = tfl.effective_weights(model)
    for key, mask in masks.items():
        assert np.all(effective[key][mask == 0] == 0)
        np.testing.assert_array_equal(raw_after[key][mask == 0], raw_before[key][mask == 0])
        assert not np.array_equal(raw_after[key][mask == 1], raw_before[key][mask == 1])
        np.testing.assert_array_equal(tfl.get_masks(model)[key], mask)
    assert [r["iteration"] for r in result.curve] == [0, 10, 20, 30, 40]
    assert result.curve[-1]["test_accuracy"] > 0.5  # learnable synthetic task, 4 classes


def test_early_stop_is_the_minimum_validation_loss():
    curve = [{"iteration": 0, "val_loss": 2.0, "val_accuracy": 0.1, "test_accuracy": 0.1},
             {"iteration": 100, "val_loss": 0.5, "val_accuracy": 0.8, "test_accuracy": 0.75},
             {"iteration": 200, "val_loss": 0.7, "val_accuracy": 0.9, "test_accuracy": 0.85}]
    summary = training.TrainResult(curve=curve, train_steps=200, wall_seconds=1.0).summary()
    assert summary["early_stop_iteration"] == 100
    assert summary["early_stop_test_accuracy"] == 0.75
    assert summary["final_test_accuracy"] == 0.85


def test_fused_steps_match_single_steps(splits):
    results = []
    for steps_per_call in (1, 7, 40):
        model, _ = _pruned_model()
        curve = tfl.Trainer(model, splits, tiny_training(steps_per_call=steps_per_call)).train().curve
        results.append((_weights(model), curve))
    for weights, curve in results[1:]:
        for a, b in zip(results[0][0], weights):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert [r["iteration"] for r in curve] == [r["iteration"] for r in results[0][1]]


def test_the_fused_chunk_trains_bit_for_bit_like_the_step_loop(splits):
    runs = []
    for fused in (True, False):
        model, _ = _pruned_model()
        trainer = tfl.Trainer(model, splits, tiny_training(jit_compile=True, steps_per_call=7))
        assert trainer.fused
        trainer.fused = fused
        curve = trainer.train().curve
        runs.append((_weights(model), curve))
    (fused_weights, fused_curve), (loop_weights, loop_curve) = runs
    for a, b in zip(fused_weights, loop_weights):
        np.testing.assert_array_equal(a, b)
    assert fused_curve == loop_curve


def test_the_fused_chunk_is_off_without_xla_or_under_a_strategy(splits):
    assert not tfl.Trainer(_pruned_model()[0], splits, tiny_training(jit_compile=False)).fused
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # one replica, still a strategy
    with strategy.scope():
        model, _ = _pruned_model()
    trainer = tfl.Trainer(model, splits, tiny_training(jit_compile=True, train_steps=20), strategy)
    assert not trainer.fused
    assert [r["iteration"] for r in trainer.train().curve] == [0, 10, 20]


def test_trainers_on_the_same_splits_share_one_copy_of_the_data(splits):
    first = tfl.Trainer(_pruned_model()[0], splits, tiny_training())
    second = tfl.Trainer(_pruned_model(1)[0], splits, tiny_training(data_seed=5))
    for a, b in ((first._train_source, second._train_source), (first._test, second._test)):
        assert a.images is b.images and a.labels is b.labels


def test_one_call_evaluation_equals_batch_by_batch(splits):
    model, _ = _pruned_model()
    trainer = tfl.Trainer(model, splits, tiny_training(eval_batch_size=23))  # a partial last batch
    trainer.train()
    together = trainer.evaluate()
    apart = {**trainer._evaluate_split(trainer._val, "val"), **trainer._evaluate_split(trainer._test, "test")}
    assert together == apart and together["test_accuracy"] > 0.5


class _Kill(Exception):
    pass


def test_resume_after_interruption_gives_identical_results(splits, tmp_path):
    straight, _ = _pruned_model()
    expected = tfl.Trainer(straight, splits, tiny_training()).train(directory=tmp_path / "a")

    def kill(step):
        raise _Kill(step)

    interrupted, _ = _pruned_model()
    with pytest.raises(_Kill):
        tfl.Trainer(interrupted, splits, tiny_training()).train(
            directory=tmp_path / "b", hooks={30: kill})
    records = json.loads((tmp_path / "b" / "progress.json").read_text())["records"]
    assert [r["iteration"] for r in records] == [20]
    resumed, _ = _pruned_model(seed=5)  # different weights: everything must come from the checkpoint
    result = tfl.Trainer(resumed, splits, tiny_training()).train(directory=tmp_path / "b")
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    strip = lambda curve: [{k: v for k, v in r.items()} for r in curve]
    assert strip(result.curve) == strip(expected.curve)


def _indices(stream, n):
    return np.concatenate(list(stream.take(n).as_numpy_iterator())), None


def test_batches_resumes_and_covers_each_epoch():
    source = input_pipeline.ArraySource(np.zeros((50, 2, 2, 1), np.uint8), np.arange(50))
    full, _ = _indices(source.batches(7, seed=3), 20)
    tail, _ = _indices(source.batches(7, seed=3, start_step=9), 11)
    np.testing.assert_array_equal(full[9 * 7:], tail)
    np.testing.assert_array_equal(np.sort(full[:50]), np.arange(50))
    np.testing.assert_array_equal(np.sort(full[50:100]), np.arange(50))
    assert not np.array_equal(full[:50], full[50:100])
    other, _ = _indices(source.batches(7, seed=4), 7)
    assert not np.array_equal(other, full[:49])


def test_a_chunks_order_is_its_batches_one_after_another_across_epochs():
    source = input_pipeline.ArraySource(np.zeros((50, 2, 2, 1), np.uint8), np.arange(50))
    full, _ = _indices(source.batches(7, seed=3), 20)
    order = source.order(7, seed=3, start_step=5, steps=9, length=12).numpy()
    np.testing.assert_array_equal(order[:9 * 7], full[5 * 7:14 * 7])  # crosses epochs 0-1 and 1-2
    np.testing.assert_array_equal(order[9 * 7:], np.zeros(3 * 7))
    np.testing.assert_array_equal(source.order(7, seed=3, start_step=13, steps=2, length=2).numpy(),
                                  full[13 * 7:15 * 7])


def test_augmentation_crops_and_flips_per_image_and_per_step():
    image = np.arange(8 * 8, dtype=np.uint8).reshape(1, 8, 8, 1).repeat(64, axis=0)
    source = input_pipeline.ArraySource(image, np.zeros(64, np.int64), augment=True, seed=1)
    a, _ = source.prepare(np.arange(64), 5)
    b, _ = source.prepare(np.arange(64), 5)
    c, _ = source.prepare(np.arange(64), 6)
    a, b, c = a.numpy(), b.numpy(), c.numpy()
    np.testing.assert_array_equal(a, b)                   # same step, same draw
    assert not np.array_equal(a, c)                       # another step, another draw
    assert len({x.tobytes() for x in a}) > 10             # each image its own crop and flip
    original = image[0, :, :, 0] / 255.0
    for x in a[:, :, :, 0]:
        nonzero = x[x != 0]
        # every visible pixel comes from the image, shifted by at most 4 and maybe mirrored
        assert set(np.round(nonzero * 255).astype(int)) <= set(range(64))
    assert a.shape == (64, 8, 8, 1)
    assert np.isclose(original.sum(), a[0].sum()) or a[0].sum() < original.sum()


def test_warmup_and_weight_decay(splits):
    schedule = training.WarmupPiecewise(0.1, warmup_steps=10, milestones=(20,), gamma=0.5)
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 4, 9, 20, 21)],
                               [0.01, 0.05, 0.1, 0.1, 0.05], rtol=1e-6)
    model, masks = _pruned_model()
    raw_before = tfl.raw_weights(model)
    tfl.Trainer(model, splits, tiny_training(weight_decay=0.1, optimizer="sgd")).train()
    raw_after = tfl.raw_weights(model)
    for key, mask in masks.items():
        np.testing.assert_array_equal(raw_after[key][mask == 0], raw_before[key][mask == 0])


def test_sgd_with_milestones_drops_the_learning_rate():
    config = tiny_training(optimizer="sgd", learning_rate=0.1, lr_milestones=(10, 20), lr_gamma=0.5)
    optimizer = training.make_optimizer(config)
    schedule = optimizer._learning_rate
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 10, 11, 21)], [0.1, 0.1, 0.05, 0.025])
    assert optimizer.momentum == 0.9


def test_nan_loss_stops_with_an_error_naming_the_iteration(splits):
    model = tiny_model()
    with pytest.raises(FloatingPointError, match="r: training loss is (nan|inf) in iterations 1-10"):
        tfl.Trainer(model, splits, tiny_training(learning_rate=1e30, optimizer="sgd")).train(name="r")


def _corrupt_latest_checkpoint(directory):
    latest = tf.train.latest_checkpoint(str(directory / "ckpt"))
    for data_file in directory.joinpath("ckpt").glob(latest.rsplit("/", 1)[1] + ".data-*"):
        data_file.write_bytes(data_file.read_bytes()[:20])
    return latest


def test_corrupt_checkpoint_falls_back_to_the_previous_one(splits, tmp_path, caplog):
    straight, _ = _pruned_model()
    expected = tfl.Trainer(straight, splits, tiny_training()).train(directory=tmp_path / "a")

    def kill(step):
        raise _Kill(step)

    model, _ = _pruned_model()
    with pytest.raises(_Kill):
        tfl.Trainer(model, splits, tiny_training(checkpoint_every=10)).train(
            directory=tmp_path / "b", hooks={35: kill})
    corrupt = _corrupt_latest_checkpoint(tmp_path / "b")
    assert corrupt.endswith("ckpt-30")
    resumed, _ = _pruned_model(seed=5)
    with caplog.at_level("WARNING"):
        result = tfl.Trainer(resumed, splits, tiny_training(checkpoint_every=10)).train(
            directory=tmp_path / "b")
    assert any(corrupt in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    assert result.curve == expected.curve


def test_no_readable_checkpoint_is_a_clear_error(splits, tmp_path):
    model, _ = _pruned_model()
    tfl.Trainer(model, splits, tiny_training(train_steps=20)).train(directory=tmp_path)
    for data_file in tmp_path.joinpath("ckpt").glob("*.data-*"):
        data_file.write_bytes(b"")
    with pytest.raises(results.DamagedFile, match="ckpt is damaged .no readable checkpoint among .*ckpt-20.; "
                                                  "delete .* and rerun"):
        tfl.Trainer(model, splits, tiny_training(train_steps=20)).train(directory=tmp_path)


def test_repeated_kills_between_progress_and_checkpoint_still_resume(splits, tmp_path, monkeypatch):
    straight, _ = _pruned_model()
    expected = tfl.Trainer(straight, splits, tiny_training(checkpoint_every=10)).train(
        directory=tmp_path / "a")
    original = tf.train.CheckpointManager.save

    def lost_save(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 30:
            raise _Kill()  # killed after progress.json was written, before the checkpoint
        return original(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", lost_save)
    for _ in range(3):
        model, _ = _pruned_model()
        with pytest.raises(_Kill):
            tfl.Trainer(model, splits, tiny_training(checkpoint_every=10)).train(directory=tmp_path / "b")
    monkeypatch.undo()
    resumed, _ = _pruned_model(seed=5)
    result = tfl.Trainer(resumed, splits, tiny_training(checkpoint_every=10)).train(directory=tmp_path / "b")
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    assert result.curve == expected.curve


def _conv_model():
    return tfl.models.build("conv2", input_shape=(8, 8, 1), num_classes=4, seed=0)


def test_xla_by_default_except_convolutional_networks_on_cpu():
    strategy = tf.distribute.get_strategy()
    assert training.use_xla(None, tiny_model(), strategy)
    assert not training.use_xla(None, tfl.wrap(_conv_model()), strategy)
    assert training.use_xla(True, _conv_model(), strategy)
    assert not training.use_xla(False, tiny_model(), strategy)


def test_a_step_xla_cannot_compile_deterministically_falls_back_and_trains(splits, caplog):
    training.configure_runtime(0, deterministic=True)  # max-pool gradients: no deterministic XLA kernel
    model = tfl.wrap(_conv_model())
    trainer = tfl.Trainer(model, splits, tiny_training(jit_compile=True, train_steps=10, eval_every=10))
    with caplog.at_level("WARNING"):
        result = trainer.train()
    assert "XLA cannot compile this training step" in caplog.text and not trainer._jit
    assert [r["iteration"] for r in result.curve] == [0, 10]
    assert np.isfinite(result.curve[-1]["test_loss"])
