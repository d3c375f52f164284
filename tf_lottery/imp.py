"""The IMP driver: rounds of train, prune, reset (or rewind), resumable from its results folder."""

import pathlib

import keras
import tensorflow as tf
from absl import logging

from tf_lottery import atomic
from tf_lottery import model_ops
from tf_lottery import pruning
from tf_lottery import results
from tf_lottery import training
from tf_lottery.config import RESETS



def _restore_model(model, directory):
    """Loads the model variables of the latest checkpoint in `directory/ckpt`."""
    path = tf.train.latest_checkpoint(str(pathlib.Path(directory) / "ckpt"))
    if path is None:
        raise FileNotFoundError(f"{directory}: no checkpoint to continue from")
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()


class _ResetPoint:
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


def _round_record(round_index, model, result):
    report = model_ops.sparsity_report(model)
    return {
        "round": round_index,
        "remaining_fraction": report["remaining_fraction"],
        "remaining": report["remaining"],
        "size": report["size"],
        "layers": report["layers"],
        **result.summary(),
    }


def run_rounds(model, splits, *, rounds, training_config, pruning_config,
               experiment_dir, reset="init", rewind_step=0, on_round_start=None):
    """Runs IMP on a wrapped model and returns the list of round records.

    Round 0 trains the dense network (its masks as given). Round r > 0 prunes
    the weights that survived round r-1, by their trained values, resets the
    survivors to the snapshot (theta_0, or theta_k with reset='rewind', captured
    at iteration `rewind_step` of round 0) and trains with a fresh optimizer.
    Finished rounds found in `experiment_dir` are not retrained; an unfinished
    round continues from its latest checkpoint. `on_round_start(r, model)`, if
    given, is called when round r begins afresh, after pruning and reset.
    """
    if reset not in RESETS:
        raise ValueError(f"unknown reset '{reset}'; choose one of {', '.join(RESETS)}")
    experiment_dir = pathlib.Path(experiment_dir)
    keys = [key for key, _, _ in model_ops.masked_weights(model)]
    if not keys:
        raise ValueError(f"model '{model.name}' has no LotteryWrapper; call tf_lottery.wrap first")
    fractions = pruning_config.fractions(keys, model_ops.output_key(model))
    reset_point = _ResetPoint(model, experiment_dir)
    trainer = training.Trainer(model, splits, training_config)
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
            _restore_model(model, results.round_dir(experiment_dir, r - 1))
            new_masks = pruning.prune(
                model_ops.get_weights(model), model_ops.get_masks(model), fractions,
                scope=pruning_config.scope, criterion=pruning_config.criterion,
                seed=pruning_config.seed + r)
            model_ops.set_masks(model, {k: v.numpy() for k, v in new_masks.items()})
            reset_point.restore()
        if on_round_start and not started:
            on_round_start(r, model)
        result = trainer.train(directory=directory, hooks=hooks, name=f"round {r}")
        record = _round_record(r, model, result)
        atomic.write_npz(directory / "mask.npz", model_ops.get_masks(model))
        atomic.write_json(directory / "curve.json", result.curve)
        atomic.write_json(metrics_path, record)
        records.append(record)
        results.write_summary(experiment_dir, records)
        logging.info("round %d: %.2f%% remaining, early-stop iteration %d, test accuracy %.4f",
                     r, 100 * record["remaining_fraction"], record["early_stop_iteration"],
                     record["early_stop_test_accuracy"])
    results.write_summary(experiment_dir, records)
    return records
