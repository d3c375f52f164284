"""The paper's controls, trained on the masks of a finished IMP experiment.

- random_reinit: round r's mask, weights from a fresh draw of the initialiser.
- random_prune: a random mask with round r's per-tensor counts (of units, for
  structured pruning), from the experiment's reset point (theta_0 or theta_k).
- one_shot: pruned in one step from the trained round-0 weights to round r's
  per-tensor sparsity, then reset to the reset point.

Each control's rounds live in `controls/NAME/round_XX` with the same files as
the IMP rounds, and its records go to summary.json under `controls.NAME`;
finished control rounds are not retrained.
"""

import pathlib

import tensorflow as tf
from absl import logging

from tf_lottery import atomic
from tf_lottery import imp
from tf_lottery import model_ops
from tf_lottery import pruning
from tf_lottery import results
from tf_lottery import tensorboard
from tf_lottery import training
from tf_lottery.config import CONTROLS

# Seeds of the controls' random draws, offset from the experiment's seed.
_REINIT_SEED = 10_000
_RANDOM_MASK_SEED = 20_000


def _main_mask(experiment_dir, round_index):
    path = results.round_dir(experiment_dir, round_index) / "mask.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: round {round_index} of the IMP experiment is not finished; "
                                "run its rounds before the controls")
    return atomic.read_npz(path)


def _pruning_options(pruning_config):
    return {"structure_norm": pruning_config.structure_norm,
            "block_shape": pruning_config.block_shape,
            "block_pooling": pruning_config.block_pooling}


def _random_mask(mask, structures, pruning_config, seed):
    return {k: v.numpy() for k, v in pruning.random_like(
        mask, seed=seed, structure=structures, **_pruning_options(pruning_config)).items()}


def _one_shot_mask(model, mask, structures, pruning_config):
    densities = {k: pruning.unit_density(mask[k], structures[k], **_pruning_options(pruning_config))
                 for k in mask}
    ones = {k: tf.ones_like(v) for k, v in model_ops.get_masks(model).items()}
    new = pruning.prune(model_ops.get_weights(model, effective=False), ones, densities=densities,
                        scope=pruning_config.scope, structure=structures,
                        **_pruning_options(pruning_config))
    return {k: v.numpy() for k, v in new.items()}


def run_controls(model, splits, *, names, rounds, training_config, pruning_config, experiment_dir,
                 build_model=None, on_nan="stop", strategy=None):
    """Trains each control in `names` for IMP rounds 1..rounds; returns {name: records}.

    `model` is the wrapped model of the experiment (its variables are
    overwritten); `build_model(seed)` returns a fresh unwrapped model for
    random_reinit.
    """
    unknown = sorted(set(names) - set(CONTROLS))
    if unknown:
        raise ValueError(f"unknown controls {', '.join(unknown)}; choose from {', '.join(CONTROLS)}")
    if "random_reinit" in names and build_model is None:
        raise ValueError("random_reinit needs build_model(seed) to draw fresh weights")
    experiment_dir = pathlib.Path(experiment_dir)
    keys = [key for key, _, _ in model_ops.masked_weights(model)]
    structures = pruning_config.structures(keys, model_ops.output_key(model))
    reset_point = imp.ResetPoint(model, experiment_dir)
    strategy = strategy or tf.distribute.get_strategy()
    trainer = training.Trainer(model, splits, training_config, strategy)
    reinit_model = reinit_trainer = None
    all_records = {}
    for name in names:
        records = []
        for r in range(1, rounds + 1):
            directory = results.round_dir(results.control_dir(experiment_dir, name), r)
            if (directory / "metrics.json").exists():
                records.append(atomic.read_json(directory / "metrics.json"))
                continue
            started = tf.train.latest_checkpoint(str(directory / "ckpt")) is not None
            mask = _main_mask(experiment_dir, r)
            round_model, round_trainer = model, trainer
            if name == "random_reinit":
                with strategy.scope():
                    fresh = build_model(_REINIT_SEED + 100 * pruning_config.seed + r)
                    if reinit_model is None:
                        reinit_model = model_ops.wrap(fresh)
                        # One model and Trainer for all rounds: each round's draw is copied in,
                        # so the compiled step and the in-memory data are not rebuilt per round.
                        reinit_trainer = training.Trainer(reinit_model, splits, training_config, strategy)
                    else:
                        model_ops.copy_weights(fresh, reinit_model)
                round_model, round_trainer = reinit_model, reinit_trainer
                if not started:
                    model_ops.set_masks(round_model, mask)
            elif not started:
                imp.restore_model(model, results.round_dir(experiment_dir, 0))
                if name == "random_prune":
                    seed = _RANDOM_MASK_SEED + 100 * pruning_config.seed + r
                    model_ops.set_masks(model, _random_mask(mask, structures, pruning_config, seed))
                else:
                    model_ops.set_masks(model, _one_shot_mask(model, mask, structures, pruning_config))
                reset_point.restore()
            record = imp.train_round(
                round_trainer, round_model, directory, r, name=f"{name} round {r}",
                on_nan=on_nan, on_stop=lambda rec: results.update_summary(
                    experiment_dir, records + [rec], control=name))
            records.append(record)
            results.update_summary(experiment_dir, records, control=name)
            if not record.get("failed"):
                tensorboard.log_round(experiment_dir, r, training_config, control=name)
                logging.info("%s round %d: %.2f%% remaining, test accuracy %.4f", name, r,
                             100 * record["remaining_fraction"], record["early_stop_test_accuracy"])
        all_records[name] = records
    return all_records
