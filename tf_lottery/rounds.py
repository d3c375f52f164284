"""The one round loop: IMP and every control run their rounds through `run_branch`.

A branch (IMP, or a control from `controls.CONTROLS`) decides how round r
starts: which model and trainer, which masks and which weights. The loop
does the rest the same way for all of them: skip finished rounds, continue a
started round from its checkpoint, train, write the round (metrics last),
update summary.json, log, and handle a non-finite loss.
"""

import dataclasses
import pathlib

from absl import logging
from etils import epy

from tf_lottery import results
from tf_lottery.results import lock

with epy.lazy_imports():  # the control registry imports this module before TensorFlow may load
    import tensorflow as tf

    from tf_lottery import model_ops
    from tf_lottery import tensorboard
    from tf_lottery import training
    from tf_lottery.results import checkpoints

ON_NAN = ("stop", "skip_round")


@dataclasses.dataclass
class Context:
    """What every branch of one experiment shares."""
    model: object                 # the wrapped model (its variables are overwritten)
    trainer: object               # the Trainer of `model`
    splits: object
    training_config: object
    pruning_config: object
    experiment_dir: pathlib.Path
    rounds: int
    reset_point: object           # results.checkpoints.ResetPoint
    strategy: object = None
    build_model: object = None    # seed -> a fresh model, wrapped as the experiment's (controls)
    on_nan: str = "stop"
    objective: object = None      # objective.Objective: loss, optimizer, metrics, monitor
    callbacks: tuple = ()         # Keras callbacks, called at every evaluation of every round
    verbose: int = 0              # 1: a progress bar per round and the round table

    @property
    def keys(self):
        return [key for key, _, _ in model_ops.masked_weights(self.model)]

    @property
    def output_key(self):
        return model_ops.output_key(self.model)

    @property
    def conv_keys(self):
        return model_ops.conv_keys(self.model)

    def structures(self):
        return model_ops.structures(self.model, self.pruning_config)


def make_context(model, splits, *, rounds, training_config, pruning_config, experiment_dir,
                 on_nan="stop", strategy=None, build_model=None, objective=None, callbacks=(),
                 verbose=0):
    """The Context of a wrapped model (its Trainer built once, shared by every branch)."""
    if on_nan not in ON_NAN:
        raise ValueError(f"unknown on_nan '{on_nan}'; choose one of {', '.join(ON_NAN)}")
    if not model_ops.masked_weights(model):
        raise ValueError(f"model '{model.name}' has no LotteryWrapper; call tf_lottery.wrap first")
    experiment_dir = pathlib.Path(experiment_dir)
    strategy = strategy or tf.distribute.get_strategy()
    return Context(
        model=model, trainer=training.Trainer(model, splits, training_config, strategy, objective),
        splits=splits, training_config=training_config, pruning_config=pruning_config,
        experiment_dir=experiment_dir, rounds=rounds,
        reset_point=checkpoints.ResetPoint(model, experiment_dir), strategy=strategy,
        build_model=build_model, on_nan=on_nan, objective=objective, callbacks=tuple(callbacks),
        verbose=verbose)


class Branch:
    """How the rounds of one branch start; subclasses override `start` (and `model_for`, `hooks`).

    `name` is None for IMP (its rounds are at the top of the folder), else
    the control's name (its rounds are in controls/NAME).
    """

    first_round = 0

    def __init__(self, context, name=None):
        self.context = context
        self.name = name
        self.trained = []  # the rounds run_branch trained (not skipped as finished)

    def round_indices(self):
        """The rounds the branch trains, in order."""
        return range(self.first_round, self.context.rounds + 1)

    def model_for(self, round_index):
        """(model, trainer) that train round `round_index`."""
        return self.context.model, self.context.trainer

    def start(self, round_index, records):
        """Sets masks and weights for a round that begins afresh (not for a resumed one)."""
        raise NotImplementedError

    def hooks(self, round_index):
        """{iteration: callable(iteration)} run during the round's training."""
        return {}

    def train_options(self, round_index):
        """Keyword arguments of Trainer.train for the round (its length, the schedule's offset)."""
        return {}

    def log_name(self, round_index):
        return f"round {round_index}" if self.name is None else f"{self.name} round {round_index}"


def _sparsity_record(round_index, model):
    report = model_ops.sparsity_report(model)
    return {"round": round_index, "remaining_fraction": report["remaining_fraction"],
            "remaining": report["remaining"], "size": report["size"], "layers": report["layers"]}


def train_round(trainer, model, directory, round_index, *, name, hooks=None, on_nan="stop",
                on_stop=None, callbacks=(), verbose=0, options=None):
    """Trains one round in `directory`, writes it (metrics last) and returns its record.

    The record holds the round's sparsity and the trainer's summary. A
    non-finite loss gives a record with `failed: true`: with on_nan='stop',
    `on_stop(record)` is called and RoundFailed raised; with 'skip_round' the
    failed record is written as the round's metrics and returned.
    """
    try:
        result = trainer.train(directory=directory, hooks=hooks, name=name, callbacks=callbacks,
                               verbose=verbose, **(options or {}))
    except FloatingPointError as error:
        record = {**_sparsity_record(round_index, model), "failed": True, "error": str(error)}
        if on_nan == "stop":
            if on_stop:
                on_stop(record)
            raise results.RoundFailed(str(error)) from None
        logging.error("%s; skipping to the next round", error)
        results.write_round(directory, model_ops.get_masks(model), record)
        return record
    record = {**_sparsity_record(round_index, model), **result.summary()}
    results.write_round(directory, model_ops.get_masks(model), record, curve=result.curve)
    return record


def run_branch(branch, on_round_start=None):
    """Runs (or resumes) the rounds of `branch` (first_round..rounds by default); returns their records.

    `on_round_start(r, model)`, if given, is called when round r begins afresh,
    after its masks and weights are set. The folder's lock is held throughout
    (results.lock; re-entrant, so a caller may hold it already).
    """
    with lock.hold(branch.context.experiment_dir):
        return _run_branch(branch, on_round_start)


def _run_branch(branch, on_round_start):
    context = branch.context
    records = []
    for r in branch.round_indices():
        directory = results.round_dir(context.experiment_dir, r, branch.name)
        if results.is_finished(directory):
            records.append(results.read_record(directory))
            continue
        model, trainer = branch.model_for(r)
        started = checkpoints.has_checkpoint(directory)
        if not started:
            branch.start(r, records)
            if on_round_start:
                on_round_start(r, model)
        if context.verbose:
            print(f"{branch.log_name(r)}: "
                  f"{100 * model_ops.sparsity_report(model)['remaining_fraction']:.2f}% remaining")
        record = train_round(
            trainer, model, directory, r, name=branch.log_name(r), hooks=branch.hooks(r),
            on_nan=context.on_nan, on_stop=lambda rec: results.update_summary(
                context.experiment_dir, records + [rec], control=branch.name),
            callbacks=context.callbacks, verbose=context.verbose, options=branch.train_options(r))
        records.append(record)
        branch.trained.append(r)
        if context.verbose:
            print(results.format_table([record]))
        results.update_summary(context.experiment_dir, records, control=branch.name)
        if not record.get("failed"):
            tensorboard.log_round(context.experiment_dir, r, context.training_config, control=branch.name)
            accuracy = record["early_stop_test_accuracy"]  # None without test data
            logging.info("%s: %.2f%% remaining, early-stop iteration %d, test accuracy %s",
                         branch.log_name(r), 100 * record["remaining_fraction"],
                         record["early_stop_iteration"], "n/a" if accuracy is None else f"{accuracy:.4f}")
    results.update_summary(context.experiment_dir, records, control=branch.name)
    return records
