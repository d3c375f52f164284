"""The IMP driver: rounds of train, prune, reset (or rewind), resumable from its results folder."""

import pathlib

import keras
import tensorflow as tf
from absl import logging

from tf_lottery import atomic
from tf_lottery import model_ops
from tf_lottery import pruning
from tf_lottery import results
from tf_lottery import schedules
from tf_lottery import tensorboard
from tf_lottery import training
from tf_lottery.config import ON_NAN, RESETS



def restore_model(model, directory):
    """Loads the model variables of the latest checkpoint in `directory/ckpt`."""
    path = tf.train.latest_checkpoint(str(pathlib.Path(directory) / "ckpt"))
    if path is None:
        raise FileNotFoundError(f"{directory}: no checkpoint to continue from")
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()


class ResetPoint:
    """Snapshots (in the wrappers) plus the unwrapped layers' weights, saved beside the rounds."""

    def __init__(self, model, experiment_dir):
        self.model = model
        self.path = pathlib.Path(experiment_dir) / "reset_point.npz"
        self.variables = model_ops.unwrapped_variables(model)

    def capture(self, iteration=0):
        model_ops.snapshot(self.model)
        atomic.write_npz(self.path, {k: keras.ops.convert_to_numpy(v)
                                     for k, v in self.variables.items()})
        logging.info("reset point captured at iteration %d", iteration)

    def restore(self):
        model_ops.reset(self.model)
        if self.variables:
            values = atomic.read_npz(self.path)
            for key, variable in self.variables.items():
                variable.assign(values[key])


def _sparsity_record(round_index, model):
    report = model_ops.sparsity_report(model)
    return {
        "round": round_index,
        "remaining_fraction": report["remaining_fraction"],
        "remaining": report["remaining"],
        "size": report["size"],
        "layers": report["layers"],
    }


def train_round(trainer, model, directory, round_index, *, name, hooks=None, on_nan="stop",
                on_stop=None):
    """Trains one round in `directory`, writes its mask, curve and metrics, and returns its record.

    The record holds the round's sparsity and the trainer's summary. A
    non-finite loss gives a record with `failed: true`: with on_nan='stop',
    `on_stop(record)` is called and RoundFailed raised; with 'skip_round' the
    failed record is written as the round's metrics and returned.
    """
    metrics_path = pathlib.Path(directory) / "metrics.json"
    try:
        result = trainer.train(directory=directory, hooks=hooks, name=name)
    except FloatingPointError as error:
        record = {**_sparsity_record(round_index, model), "failed": True, "error": str(error)}
        if on_nan == "stop":
            if on_stop:
                on_stop(record)
            raise results.RoundFailed(str(error)) from None
        logging.error("%s; skipping to the next round", error)
        atomic.write_npz(pathlib.Path(directory) / "mask.npz", model_ops.get_masks(model))
        atomic.write_json(metrics_path, record)
        return record
    record = {**_sparsity_record(round_index, model), **result.summary()}
    atomic.write_npz(pathlib.Path(directory) / "mask.npz", model_ops.get_masks(model))
    atomic.write_json(pathlib.Path(directory) / "curve.json", result.curve)
    atomic.write_json(metrics_path, record)
    return record


def _last_good_round(records, before):
    good = [rec["round"] for rec in records if rec["round"] < before and not rec.get("failed")]
    if not good:
        raise results.RoundFailed(f"round {before}: every earlier round failed; nothing to prune from")
    return good[-1]


def run_rounds(model, splits, *, rounds, training_config, pruning_config,
               experiment_dir, reset="init", rewind_step=0, on_nan="stop", on_round_start=None,
               strategy=None):
    """Runs IMP on a wrapped model and returns the list of round records.

    Round 0 trains the dense network (its masks as given). Round r > 0 prunes
    the weights that survived round r-1, by their trained values, resets the
    survivors to the snapshot (theta_0, or theta_k with reset='rewind', captured
    at iteration `rewind_step` of round 0) and trains with a fresh optimizer.
    Finished rounds found in `experiment_dir` are not retrained; an unfinished
    round continues from its latest checkpoint. `on_round_start(r, model)`, if
    given, is called when round r begins afresh, after pruning and reset.

    A non-finite training loss fails the round: it is recorded in summary.json
    with `failed: true` and the error; on_nan='stop' then raises RoundFailed
    (a rerun tries the round again), on_nan='skip_round' moves on, and the
    next round prunes the failed round's masks by the weights of the last
    round that trained. With a tf.distribute `strategy`, the model must have
    been built in its scope; masks are chosen once, on the host, and assigned
    to every replica.
    """
    if reset not in RESETS:
        raise ValueError(f"unknown reset '{reset}'; choose one of {', '.join(RESETS)}")
    if on_nan not in ON_NAN:
        raise ValueError(f"unknown on_nan '{on_nan}'; choose one of {', '.join(ON_NAN)}")
    experiment_dir = pathlib.Path(experiment_dir)
    keys = [key for key, _, _ in model_ops.masked_weights(model)]
    if not keys:
        raise ValueError(f"model '{model.name}' has no LotteryWrapper; call tf_lottery.wrap first")
    output_key = model_ops.output_key(model)
    conv_keys = [key for key, weight, _ in model_ops.masked_weights(model) if len(weight.shape) > 2]
    structures = pruning_config.structures(keys, output_key)
    reset_point = ResetPoint(model, experiment_dir)
    trainer = training.Trainer(model, splits, training_config, strategy)
    records = []
    for r in range(rounds + 1):
        directory = results.round_dir(experiment_dir, r)
        metrics_path = directory / "metrics.json"
        if metrics_path.exists():
            records.append(atomic.read_json(metrics_path))
            continue
        hooks = {}
        started = tf.train.latest_checkpoint(str(directory / "ckpt")) is not None
        if r == 0 and not started:
            reset_point.capture(0)
        if r == 0 and reset == "rewind" and rewind_step > 0:
            hooks[rewind_step] = reset_point.capture
        if r > 0 and not started:
            source = _last_good_round(records, r)
            restore_model(model, results.round_dir(experiment_dir, source))
            if source != r - 1:
                model_ops.set_masks(
                    model, atomic.read_npz(results.round_dir(experiment_dir, r - 1) / "mask.npz"))
            kind, amounts = schedules.round_amounts(
                pruning_config, rounds, r, keys, output_key, conv_keys)
            new_masks = pruning.prune(
                model_ops.get_weights(model), model_ops.get_masks(model), **{kind: amounts},
                scope=pruning_config.scope, criterion=pruning_config.criterion,
                structure=structures, structure_norm=pruning_config.structure_norm,
                block_shape=pruning_config.block_shape, block_pooling=pruning_config.block_pooling,
                n_of_m=pruning_config.n_of_m, seed=pruning_config.seed + r)
            model_ops.set_masks(model, {k: v.numpy() for k, v in new_masks.items()})
            reset_point.restore()
        if on_round_start and not started:
            on_round_start(r, model)
        record = train_round(trainer, model, directory, r, name=f"round {r}", hooks=hooks,
                             on_nan=on_nan,
                             on_stop=lambda rec: results.update_summary(experiment_dir, records + [rec]))
        records.append(record)
        results.update_summary(experiment_dir, records)
        if not record.get("failed"):
            tensorboard.log_round(experiment_dir, r, training_config)
            logging.info("round %d: %.2f%% remaining, early-stop iteration %d, test accuracy %.4f",
                         r, 100 * record["remaining_fraction"], record["early_stop_iteration"],
                         record["early_stop_test_accuracy"])
    results.update_summary(experiment_dir, records)
    return records
