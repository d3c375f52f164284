"""PruneDuringFit and RewindSnapshot: pruning in model.fit on TF-MOT schedules, the rewind point, the docs."""

import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tf_lottery as tfl
from tf_lottery import ConfigError, PruneDuringFit, RewindSnapshot
from tf_lottery.callbacks import PruningUpdate
from tf_lottery.pruning import prune, prune_count

DOC = pathlib.Path(__file__).parent.parent / "docs" / "keras_fit.md"
schedules = tfmot.sparsity.keras


def _data(n, features=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    return x, np.argmax(x[:, :4], axis=1).astype("int64")


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                             keras.layers.Dense(12, activation="relu", name="fc2"),
                             keras.layers.Dense(4, name="out")])


def _convnet(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6, 6, 2)),
                             keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
                             keras.layers.Flatten(), keras.layers.Dense(4, name="out")])


def _compile(model, optimizer=None, steps_per_execution=1):
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps_per_execution)
    return model


class Recorder(keras.callbacks.Callback):
    """Listed before PruneDuringFit: the state at each batch boundary, before the masks change."""

    def __init__(self):
        super().__init__()
        self.states = {}

    def on_train_batch_begin(self, batch, logs=None):
        iteration = int(self.model.optimizer.iterations.numpy())
        self.states[iteration] = (tfl.effective_weights(self.model), tfl.get_masks(self.model),
                                  tfl.raw_weights(self.model))


def _kept(size, sparsity):
    return size - prune_count(size, sparsity)


def test_polynomial_decay_reaches_final_sparsity_with_exact_nested_masks():
    model = _compile(tfl.wrap(_mlp()), keras.optimizers.SGD(0.05))
    schedule = schedules.PolynomialDecay(0.0, 0.75, begin_step=2, end_step=22, frequency=4)
    recorder, callback = Recorder(), PruneDuringFit(schedule)
    history = model.fit(*_data(480), batch_size=16, epochs=1, shuffle=False, verbose=0,
                        callbacks=[recorder, callback])

    assert [u.step for u in callback.updates] == [2, 6, 10, 14, 18, 22]
    assert [u.iteration for u in callback.updates] == [1, 5, 9, 13, 17, 21]
    final = float(schedule(22)[1])
    masks = tfl.get_masks(model)
    for key, mask in masks.items():
        assert mask.sum() == _kept(mask.size, final), key
    # The last update is pruning.prune with the schedule's density, by hand.
    weights, before, _ = recorder.states[21]
    by_hand = prune(weights, before, densities={k: 1.0 - final for k in before})
    for key in masks:
        np.testing.assert_array_equal(masks[key], by_hand[key].numpy())
    # Nested: a mask never gains a one.
    sequence = [recorder.states[i][1] for i in sorted(recorder.states)] + [masks]
    for earlier, later in zip(sequence, sequence[1:]):
        assert all(np.all(later[k] <= earlier[k]) for k in masks)
    # Plain SGD: pruned raw weights got zero gradient inside the compiled step, so they never moved.
    raw_after_last_update, raw = recorder.states[22][2], tfl.raw_weights(model)
    for key in masks:
        pruned = masks[key] == 0
        np.testing.assert_array_equal(raw[key][pruned], raw_after_last_update[key][pruned])
    # Effective weights are exactly zero there; the stripped model has them as zeros and agrees.
    effective = tfl.effective_weights(model)
    ticket = tfl.strip(model)
    x, _ = _data(32, seed=1)
    np.testing.assert_allclose(ticket.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    for key in masks:
        assert np.all(effective[key][masks[key] == 0] == 0)
        kernel = ticket.get_layer(key.split("/")[0]).kernel.numpy()
        np.testing.assert_array_equal(kernel, effective[key])
    total = sum(m.size for m in masks.values())
    assert history.history["sparsity"][-1] == pytest.approx(1 - sum(m.sum() for m in masks.values()) / total)


def test_constant_sparsity_with_steps_per_execution_and_rewind_granularity():
    model = _compile(tfl.wrap(_convnet()), steps_per_execution=4)
    callback = PruneDuringFit(schedules.ConstantSparsity(0.5, begin_step=3, frequency=100))
    rewind = RewindSnapshot(6)
    x = np.random.default_rng(0).normal(size=(160, 6, 6, 2)).astype("float32")
    y = np.argmax(x[:, 0, 0, :], axis=1)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback, rewind])

    # Callbacks run every 4 steps: step 3 (after 2 done) is applied at the boundary after 4.
    assert callback.updates == [PruningUpdate(4, 3, pytest.approx(0.5))]
    for key, mask in tfl.get_masks(model).items():
        assert mask.sum() == _kept(mask.size, 0.5), key
    assert rewind.taken_at == 8


def test_neuron_structure_prunes_whole_hidden_units_and_the_output_layer_by_weight():
    model = _compile(tfl.wrap(_mlp()))
    schedule = schedules.PolynomialDecay(0.0, 0.5, begin_step=1, end_step=9, frequency=4)
    callback = PruneDuringFit(schedule, tfl.PruningConfig(structure="neuron", structure_norm="l2"))
    model.fit(*_data(192), batch_size=16, epochs=1, verbose=0, callbacks=[callback])

    assert [u.step for u in callback.updates] == [1, 5, 9]
    masks = tfl.get_masks(model)
    for key, units in (("fc1/kernel", 16), ("fc2/kernel", 12)):
        mask = masks[key]
        np.testing.assert_array_equal(mask.min(axis=0), mask.max(axis=0))  # whole columns
        assert mask.max(axis=0).sum() == _kept(units, 0.5)
    out = masks["out/kernel"]
    assert out.sum() == _kept(out.size, 0.5) and not np.array_equal(out.min(axis=0), out.max(axis=0))


def test_block_structure_global_scope_and_dense_layers():
    model = _compile(tfl.wrap(_mlp()))
    recorder = Recorder()
    callback = PruneDuringFit(schedules.ConstantSparsity(0.6, begin_step=1, frequency=100),
                              scope="global", structure="block", block_shape=(1, 4), dense_layers="out")
    model.fit(*_data(64), batch_size=16, epochs=1, verbose=0, callbacks=[recorder, callback])

    masks = tfl.get_masks(model)
    assert np.all(masks["out/kernel"] == 1)
    blocks = {k: masks[k].reshape(masks[k].shape[0], -1, 4) for k in ("fc1/kernel", "fc2/kernel")}
    for block in blocks.values():
        np.testing.assert_array_equal(block.min(axis=2), block.max(axis=2))
    alive = sum(int(b.max(axis=2).sum()) for b in blocks.values())
    assert alive == _kept(12 * 4 + 16 * 3, 0.6)  # one count over the pool of both kernels
    weights, before, _ = recorder.states[0]
    by_hand = prune(weights, before, densities={"fc1/kernel": 0.4, "fc2/kernel": 0.4}, scope="global",
                    structure="block", block_shape=(1, 4))
    for key in masks:
        np.testing.assert_array_equal(masks[key], by_hand[key].numpy())
    assert callback.sparsity == pytest.approx(
        1 - (masks["fc1/kernel"].sum() + masks["fc2/kernel"].sum()) / (12 * 16 + 16 * 12))


class MaskLog(keras.callbacks.Callback):
    """The masks at each batch boundary and when training ends (after the callbacks listed before it)."""

    def __init__(self):
        super().__init__()
        self.steps = {}
        self.final = None

    def on_train_batch_begin(self, batch, logs=None):
        self.steps[int(self.model.optimizer.iterations.numpy())] = tfl.get_masks(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.steps[f"raw after epoch {epoch}"] = tfl.raw_weights(self.model)

    def on_train_end(self, logs=None):
        self.final = tfl.get_masks(self.model)


class Interrupt(keras.callbacks.Callback):
    """Stops a fit with an error when the step counter reaches `step`."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise RuntimeError("interrupted")


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)


def test_early_stopping_that_restores_its_best_epoch_keeps_the_masks(caplog):
    # Epoch 0 is the best by a score that only gets worse, and it is dense: pruning starts at step 6.
    x, y = _data(80)  # 5 steps an epoch
    score = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(score=-epoch))
    stop = keras.callbacks.EarlyStopping(monitor="score", mode="max", patience=2, restore_best_weights=True)
    callback, log = PruneDuringFit(schedules.ConstantSparsity(0.95, begin_step=6, frequency=100)), MaskLog()
    model = _compile(tfl.wrap(_mlp()))
    with caplog.at_level("WARNING"):
        model.fit(x, y, batch_size=16, epochs=10, shuffle=False, verbose=0,
                  callbacks=[log, score, stop, callback])

    assert stop.stopped_epoch == 2 and stop.best_epoch == 0
    assert all(mask.all() for mask in log.steps[5].values())  # the best epoch's masks: dense
    masks = tfl.get_masks(model)
    assert _equal(masks, log.final)  # the masks of the end of training, on the best epoch's weights
    for key, mask in masks.items():
        assert mask.sum() == _kept(mask.size, 0.95), key
    assert _equal(tfl.raw_weights(model), log.steps["raw after epoch 0"])
    total = sum(mask.size for mask in masks.values())
    assert callback.sparsity == pytest.approx(1 - sum(mask.sum() for mask in masks.values()) / total)
    assert any("PruneDuringFit: at step 15 a callback restored masks of sparsity 0" in r.getMessage()
               and "applied again" in r.getMessage() for r in caplog.records)


def test_early_stopping_that_restores_weights_after_prune_during_fit_is_refused():
    schedule = schedules.ConstantSparsity(0.5, begin_step=1, frequency=100)
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    model = _compile(tfl.wrap(_mlp()))
    with pytest.raises(ValueError) as error:
        model.fit(*_data(32), batch_size=16, verbose=0, callbacks=[PruneDuringFit(schedule), stop])
    assert str(error.value) == (
        "PruneDuringFit: list it after EarlyStopping(restore_best_weights=True) in callbacks: that "
        "callback restores the best epoch's weights, masks included, when training ends, after "
        "PruneDuringFit's last look at them; listed after it, PruneDuringFit applies its masks to the "
        "restored weights again")
    assert int(model.optimizer.iterations.numpy()) == 0  # refused before training
    keep = keras.callbacks.EarlyStopping(monitor="loss", patience=1)  # restores nothing: any order
    model.fit(*_data(32), batch_size=16, verbose=0, callbacks=[PruneDuringFit(schedule), keep])


@pytest.mark.parametrize("backup_first", [True, False])
def test_a_fit_resumed_by_backup_and_restore_has_the_masks_of_an_uninterrupted_one(tmp_path, backup_first):
    x, y = _data(80)  # 5 steps an epoch, a backup after each
    schedule = schedules.PolynomialDecay(0.0, 0.9, begin_step=1, end_step=28, frequency=3)

    def fit(model, callback, backup_dir, *more):
        backup, log = keras.callbacks.BackupAndRestore(str(backup_dir)), MaskLog()
        first = [backup, callback] if backup_first else [callback, backup]
        model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0, callbacks=[*first, log, *more])
        return log

    reference = PruneDuringFit(schedule)
    whole = fit(_compile(tfl.wrap(_mlp())), reference, tmp_path / "whole")
    model, callback = _compile(tfl.wrap(_mlp())), PruneDuringFit(schedule)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model, callback, tmp_path / "resumed", Interrupt(17))
    resumed = fit(model, callback, tmp_path / "resumed")  # from the backup after epoch 3: step 16 on

    assert min(k for k in resumed.steps if isinstance(k, int)) == 15
    for iteration, masks in resumed.steps.items():
        assert _equal(masks, whole.steps[iteration]), iteration
    assert callback.updates == reference.updates
    assert [u.step for u in callback.updates] == list(range(1, 29, 3))
    assert callback.sparsity == reference.sparsity
    assert _equal(tfl.get_masks(model), whole.final)


def test_rewind_snapshot_is_the_weights_after_k_steps():
    base = _mlp(seed=3)
    x, y = _data(192)
    trained, reference = _compile(tfl.wrap(base)), _compile(tfl.wrap(base))
    rewind = RewindSnapshot(5)
    trained.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[rewind])
    reference.fit(x[:5 * 16], y[:5 * 16], batch_size=16, epochs=1, shuffle=False, verbose=0)

    assert rewind.taken_at == 5
    expected = [w.numpy() for w in reference.trainable_weights]
    snapshots = [s.numpy() for wrapper in tfl.wrappers(trained) for _, s in wrapper.snapshots]
    for got, want in zip(snapshots, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(trained.trainable_weights[0].numpy(), expected[0])
    tfl.reset(trained)
    for got, want in zip(trained.trainable_weights, expected, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    with pytest.raises(ValueError, match="past step 5"):  # 12 steps done: theta_5 is gone
        trained.fit(x, y, batch_size=16, verbose=0, callbacks=[RewindSnapshot(5)])

    # k = 0: the weights at the start of training, not the snapshot wrap() took.
    model = _compile(tfl.wrap(_mlp()))
    for weight in model.trainable_weights:
        weight.assign(weight.numpy() * 2)
    start = [w.numpy() for w in model.trainable_weights]
    at_zero = RewindSnapshot(0)
    model.fit(x[:32], y[:32], batch_size=16, verbose=0, callbacks=[at_zero])
    assert at_zero.taken_at == 0
    at_zero.rewind()
    for got, want in zip(model.trainable_weights, start, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)


def test_errors():
    schedule = schedules.ConstantSparsity(0.5, begin_step=0)
    plain = _compile(_mlp())
    with pytest.raises(ValueError, match=r"tfl\.wrap"):
        plain.fit(*_data(16), batch_size=16, verbose=0, callbacks=[PruneDuringFit(schedule)])
    with pytest.raises(ValueError, match=r"tfl\.wrap"):
        RewindSnapshot(3).set_model(plain)
    with pytest.raises(ConfigError) as error:
        PruneDuringFit(schedule, structure="neurons")
    assert error.value.field == "structure"
    for kwargs, field in [(dict(scope="global", structure="neuron"), "scope"),
                          (dict(block_shape="1x0"), "block_shape"),
                          (dict(criterion="largest"), "criterion"),
                          (dict(config=tfl.PruningConfig(output_fraction=0.1)), "output_fraction")]:
        with pytest.raises(ConfigError) as error:
            PruneDuringFit(schedule, **kwargs)
        assert error.value.field == field
    with pytest.raises(ConfigError, match="PruningSchedule") as error:
        PruneDuringFit(0.5)
    assert error.value.field == "schedule"
    with pytest.raises(ValueError, match="'nope'"):
        PruneDuringFit(schedule, dense_layers=["nope"]).set_model(tfl.wrap(_mlp()))
    with pytest.raises(ConfigError) as error:
        RewindSnapshot(-1)
    assert error.value.field == "step"


def test_docs_example_runs_as_written(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2
    sizes = "BATCH, EPOCHS = 60, 4"
    assert sizes in blocks[0]
    blocks[0] = blocks[0].replace(sizes, "BATCH, EPOCHS = 120, 2")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name} block {i}", "exec"), namespace)
    assert tfl.sparsity_report(namespace["model"])["remaining_fraction"] == pytest.approx(0.1, abs=1e-3)
    assert (tmp_path / "ticket.keras").is_file() and (tmp_path / "ticket_savedmodel").is_dir()
