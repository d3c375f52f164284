"""Iterative magnitude pruning: the IMP branch of the round loop (train, prune, reset or rewind)."""

import contextlib
import pathlib

import keras
from absl import logging

from tf_lottery import model_ops
from tf_lottery import pruning
from tf_lottery import results
from tf_lottery import rounds as round_loop
from tf_lottery import schedules
from tf_lottery.config import RESETS, LotteryConfig, PruningConfig, TrainingConfig
from tf_lottery.data import structure
from tf_lottery.data import user as user_data
from tf_lottery.data import user_checks
from tf_lottery.objective import Objective
from tf_lottery.results import checkpoints
from tf_lottery.results import launches
from tf_lottery.results import library
from tf_lottery.results import lock


KEEP_TRAINED = ("lr_rewind", "finetune")  # resets that keep the trained weights


def _last_good_round(records, before):
    good = [rec["round"] for rec in records if rec["round"] < before and not rec.get("failed")]
    if not good:
        raise results.RoundFailed(f"round {before}: every earlier round failed; nothing to prune from")
    return good[-1]


def prune_masks(context, weights, masks, round_index):
    """The masks of round `round_index`: the round's amounts (schedule) removed from `masks` by `weights`."""
    config = context.pruning_config
    measure, amounts = schedules.round_amounts(
        config, context.rounds, round_index, context.keys, context.output_key, context.conv_keys,
        shapes={k: w.shape for k, w in weights.items()})
    new_masks = pruning.prune(
        weights, masks, **{measure: amounts}, scope=config.scope, criterion=config.criterion,
        structure=context.structures(), n_of_m=config.n_of_m, seed=config.seed + round_index,
        **config.structure_options())
    return {k: v.numpy() for k, v in new_masks.items()}


class ImpBranch(round_loop.Branch):
    """Round 0 trains as given; round r prunes round r-1's survivors by magnitude and resets them.

    With reset 'lr_rewind' or 'finetune' the survivors keep their trained
    values and round r trains train_steps - rewind_step iterations: with the
    learning-rate schedule replayed from iteration rewind_step (Renda et al.
    2020), or at the schedule's final rate.
    """

    def __init__(self, context, reset="init", rewind_step=0):
        super().__init__(context)
        self.reset = reset
        self.rewind_step = rewind_step

    def hooks(self, round_index):
        if round_index == 0 and self.reset == "rewind" and self.rewind_step > 0:
            return {self.rewind_step: self.context.reset_point.capture}
        return {}

    def train_options(self, round_index):
        if round_index == 0 or self.reset not in KEEP_TRAINED:
            return {}
        steps = self.context.training_config.train_steps
        return {"steps": steps - self.rewind_step,
                "lr_offset": self.rewind_step if self.reset == "lr_rewind" else steps}

    def start(self, round_index, records):
        context = self.context
        if round_index == 0:
            context.reset_point.capture(0)
            return
        source = _last_good_round(records, round_index)
        checkpoints.restore_model(context.model, results.round_dir(context.experiment_dir, source))
        if source != round_index - 1:
            model_ops.set_masks(context.model, results.round_masks(context.experiment_dir, round_index - 1))
        model_ops.set_masks(context.model, prune_masks(
            context, model_ops.effective_weights(context.model), model_ops.get_masks(context.model),
            round_index))
        if self.reset not in KEEP_TRAINED:
            context.reset_point.restore()


def run_rounds(model, train_data, validation_data=None, test_data=None, *, rounds, experiment_dir,
               training_config=None, pruning_config=None, reset="init", rewind_step=0,
               monitor="val_loss", callbacks=(), verbose=0, on_nan="stop", on_round_start=None,
               strategy=None, context=None):
    """Runs IMP on a wrapped model and returns the list of round records.

    Round 0 trains the dense network (its masks as given). Round r > 0 prunes
    the weights that survived round r-1, by their trained values, resets the
    survivors to the snapshot (theta_0, or theta_k with reset='rewind', captured
    at iteration `rewind_step` of round 0) and trains with a fresh optimizer.

    Data: `train_data` is a data.Splits, a tf.data.Dataset of (inputs, labels)
    batches or a NumPy (x, y) pair; `validation_data` and `test_data` are of
    the same kind (or None). With a compiled model, each round trains with a
    fresh copy of the model's optimizer, its loss and its metrics; otherwise
    with the optimizer of `training_config` and sparse cross-entropy on logits.
    `monitor` (default val_loss, the paper's) picks each round's early-stop
    record. Keras `callbacks` see each evaluation as an epoch end.

    The folder: `experiment_dir` gets config.json (the settings and
    fingerprints of the architecture and the data), the rounds and
    summary.json, like the binaries' folders, so binaries.export and
    binaries.analyze plots read it. Finished rounds are not retrained, an
    unfinished round continues from its latest checkpoint, and when nothing
    is left to train the last finished round is restored into `model`.
    Different settings, architecture or data in the same folder are refused.
    Everything is checked before anything is trained or written.

    A non-finite training loss fails the round: it is recorded in summary.json
    with `failed: true` and the error; on_nan='stop' then raises RoundFailed
    (a rerun tries the round again), on_nan='skip_round' moves on, and the
    next round prunes the failed round's masks by the weights of the last
    round that trained. With a tf.distribute `strategy`, the model must have
    been built in its scope; masks are chosen once, on the host, and assigned
    to every replica. `on_round_start(r, model)`, if given, is called when
    round r begins afresh, after pruning and reset. `context` (from
    rounds.make_context; the binaries pass one) replaces the data, settings
    and folder checks.

    The folder's lock (results.lock) is held from before the first write to
    the end: a folder that another run holds is refused with FolderLocked.
    """
    with contextlib.ExitStack() as held:
        if context is None:
            context = _library_context(
                model, train_data, validation_data, test_data, rounds=rounds,
                experiment_dir=experiment_dir, training_config=training_config,
                pruning_config=pruning_config, reset=reset, rewind_step=rewind_step, monitor=monitor,
                callbacks=callbacks, verbose=verbose, on_nan=on_nan, strategy=strategy, held=held)
        elif reset not in RESETS:
            raise ValueError(f"unknown reset '{reset}'; choose one of {', '.join(RESETS)}")
        held.enter_context(lock.hold(context.experiment_dir))
        branch = ImpBranch(context, reset, rewind_step)
        records = round_loop.run_branch(branch, on_round_start)
        if not branch.trained:
            _restore_last_round(context, records)
        return records


def _library_context(model, train_data, validation_data, test_data, *, rounds, experiment_dir,
                     training_config, pruning_config, reset, rewind_step, monitor, callbacks,
                     verbose, on_nan, strategy, held):
    """Checks every argument, takes the folder's lock into `held` (an ExitStack), checks the folder
    and writes config.json: the Python path's context."""
    if experiment_dir is None:
        raise ValueError("experiment_dir is required: each round's mask, curve, checkpoints and "
                         "record go there")
    experiment_dir = pathlib.Path(experiment_dir)
    training_config, pruning_config = _checked_settings(model, training_config, pruning_config, rounds,
                                                        callbacks)
    splits = user_data.as_splits(train_data, validation_data, test_data, structure.model_inputs(model))
    lottery = LotteryConfig(rounds=rounds, reset=reset, rewind_step=rewind_step)
    objective = Objective.from_compiled(model, monitor)
    user_checks.check(model, splits, objective, training_config, inside_splits=splits is train_data)
    training_config = _in_iterations(training_config, splits)
    _check_against_data(splits, training_config, lottery, objective)
    described = library.describe(model, splits, user_data.fingerprint(splits), training_config,
                                 pruning_config, lottery, objective)
    held.enter_context(lock.hold(experiment_dir))
    folder = library.check_folder(experiment_dir, described, (training_config, pruning_config), model)
    context = round_loop.make_context(
        model, splits, rounds=rounds, training_config=training_config, pruning_config=pruning_config,
        experiment_dir=experiment_dir, on_nan=on_nan, strategy=strategy, objective=objective,
        callbacks=callbacks, verbose=verbose)
    launches.check_numerics(experiment_dir)  # a resume on another machine warns, as the binaries do
    library.write(experiment_dir, described, model, splits, folder)
    launches.record(experiment_dir)
    return context


def _checked_settings(model, training_config, pruning_config, rounds, callbacks):
    """The settings (defaults for None), checked against their types and the model's layers."""
    training_config = TrainingConfig() if training_config is None else training_config
    pruning_config = PruningConfig() if pruning_config is None else pruning_config
    if not isinstance(training_config, TrainingConfig):
        raise TypeError(f"training_config must be a tf_lottery.TrainingConfig, got "
                        f"{type(training_config).__name__}")
    if not isinstance(pruning_config, PruningConfig):
        raise TypeError(f"pruning_config must be a tf_lottery.PruningConfig, got "
                        f"{type(pruning_config).__name__}")
    if isinstance(rounds, bool) or not isinstance(rounds, int):
        raise TypeError(f"rounds must be an int, got {rounds!r}")
    if not model_ops.masked_weights(model):
        raise ValueError(f"model '{model.name}' has no LotteryWrapper; call tf_lottery.wrap first")
    model_ops.check_layer_names(model, pruning_config.dense_layers, "pruning_config.dense_layers")
    if not all(isinstance(c, keras.callbacks.Callback) for c in callbacks):
        raise TypeError("callbacks must be keras.callbacks.Callback objects")
    return training_config, pruning_config


def _check_against_data(splits, training_config, lottery, objective):
    """What only the data and the compiled model can say: the monitor, batch size, rewind step."""
    if lottery.rewind_step > training_config.train_steps:
        raise ValueError(f"rewind_step must be in [0, train_steps={training_config.train_steps}], "
                         f"got {lottery.rewind_step}")
    monitored = "validation" if objective.monitor.startswith("val_") else "test"
    if not _has_split(splits, monitored):
        raise ValueError(f"monitor={objective.monitor!r} needs {monitored}_data")
    if not splits.streamed and splits.train_size < training_config.batch_size:
        raise ValueError(f"training_config.batch_size={training_config.batch_size} exceeds the "
                         f"{splits.train_size} training examples")
    _check_optimizer_settings(objective, training_config)


# TrainingConfig's optimizer settings, which a compiled model's own optimizer replaces.
_OPTIMIZER_SETTINGS = ("optimizer", "learning_rate", "momentum", "nesterov", "lr_milestones",
                       "lr_gamma", "warmup_steps")


def _check_optimizer_settings(objective, training_config):
    if objective.optimizer is None:
        return
    default = TrainingConfig()
    set_here = [name for name in _OPTIMIZER_SETTINGS
                if getattr(training_config, name) != getattr(default, name)]
    if set_here:
        raise ValueError(f"training_config sets {', '.join(set_here)}, but the model is compiled and "
                         "trains with its own optimizer; set them in compile() or drop them")


def _has_split(splits, split):
    if splits.streamed:
        return splits.eval_batches(split, 1) is not None
    return len(splits.val_y if split == "validation" else splits.test_y) > 0


def _in_iterations(training_config, splits):
    """The training config with step counts given in epochs ('2ep') turned into iterations."""
    steps = (training_config.train_steps, training_config.warmup_steps, *training_config.lr_milestones)
    if all(isinstance(v, int) for v in steps):
        return training_config
    size = splits.train_size
    if not size:
        raise ValueError("training_config gives steps in epochs, but the size of train_data is unknown "
                         "(a pipeline without a known cardinality and fixed batch): give iterations")
    per_epoch = -(-size // training_config.batch_size)
    return training_config.in_iterations(
        lambda value: round(float(value[:-2]) * per_epoch) if isinstance(value, str) else value)


def _restore_last_round(context, records):
    """Puts the last finished round's trained weights and masks back into the model (a rerun)."""
    good = [rec["round"] for rec in records if not rec.get("failed")]
    if not good:
        return
    directory = results.round_dir(context.experiment_dir, good[-1])
    checkpoints.restore_model(context.model, directory)
    logging.info("every round was finished in %s; the model now holds round %d's trained ticket",
                 context.experiment_dir, good[-1])
