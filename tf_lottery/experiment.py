"""Runs an ExperimentConfig: checks its folder and data, then builds the model and runs IMP, controls or training.

`prepare` does every check that can fail on bad input without importing
TensorFlow (TensorFlow and the modules that need it load lazily, on first
use by `run_imp`, `run_controls` and `run_training`). Those three hold the
folder's lock (results.lock) from before their first write to their end;
`prepare_replicates` and `prepare_branch`, which prepare such runs, refuse a
folder that another run holds already.
"""

import dataclasses
import math
import pathlib

from absl import logging
from etils import epy

from tf_lottery import bounds
from tf_lottery import data
from tf_lottery import flags as flag_lib
from tf_lottery import results
from tf_lottery import writable
from tf_lottery.config import ExperimentConfig
from tf_lottery.data import user as user_data
from tf_lottery.results import launches
from tf_lottery.results import library
from tf_lottery.results import lock
from tf_lottery.settings import ConfigError
from tf_lottery.study import grid as study_grid

with epy.lazy_imports():
    import keras

    from tf_lottery import controls
    from tf_lottery import distribute
    from tf_lottery import imp
    from tf_lottery import model_ops
    from tf_lottery import models
    from tf_lottery import rounds
    from tf_lottery import training
    from tf_lottery import wrapper
    from tf_lottery.results import checkpoints


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A checked config with its experiment folder (not yet written), data and initial masks.

    For a folder written by imp.run_rounds from Python, `program` is
    'library', `config` is None, `saved` holds its config.json and `splits`
    only its test sample: it can be exported and plotted, not retrained.
    """
    config: ExperimentConfig | None
    program: str
    directory: pathlib.Path
    splits: data.Splits
    initial_mask: dict | None = None
    saved: dict | None = None

    @property
    def model_name(self):
        return self.saved["model"] if self.config is None else self.config.model.name

    @property
    def dataset_name(self):
        return self.saved["dataset"] if self.config is None else self.config.data.dataset

    @property
    def input_scaling(self):
        """{normalization, mean, std}: how the data's stored inputs become the model's (export's report)."""
        if self.program == library.PROGRAM:
            return library.input_scaling(self.saved)
        normalization = self.splits.normalization
        return {"normalization": normalization["formula"], "mean": normalization["mean"],
                "std": normalization["std"]}


def _differing_fields(config, saved):
    current = config.result_fields()
    try:
        previous = ExperimentConfig.from_flat(saved).result_fields()
    except (ConfigError, TypeError):
        return ["config.json (unreadable)"]
    return sorted(k for k in current if current[k] != previous.get(k))


def check_directory(config, program):
    """Returns the experiment folder; refuses one whose config.json differs in a result field, or whose
    control rounds were trained with other settings of their own (controls.check_settings)."""
    directory = config.directory(program)
    if results.config_path(directory).exists():
        saved = results.read_config(directory)
        differing = _differing_fields(config, saved)
        if differing:
            raise ConfigError(
                "experiment_dir",
                f"{directory} holds an experiment with a different config "
                f"(differs in {', '.join(differing)}); use another folder")
        controls.check_settings(directory, config.lottery.controls, config.pruning, saved, every_branch=True)
    elif directory.exists() and results.holds_results(directory):
        raise ConfigError("experiment_dir", f"{directory} exists, is not empty and has no config.json")
    return directory


def prepare(config, program="imp", new_run=True):
    """Checks the data, the folder and the mask file; raises ConfigError or DataError, writes nothing.

    Step counts given in epochs are turned into iterations once the size of
    the training split is known, so '160ep' and its iteration count name the
    same experiment. For a new run (not `new_run=False`: reading a folder
    that exists) the bounds that need the data are checked too
    (bounds.check_data: the batch within the training split, LeNet's size,
    layers and rounds), and the folder must be one it can make and write.
    """
    mask_file = config.lottery.initial_mask
    initial_mask = results.read_masks(mask_file, "initial_mask") if mask_file else None
    splits = data.load(config.data.dataset, data_dir=config.data.data_dir,
                       validation_size=config.data.validation_size, seed=config.run.seed,
                       image_size=config.data.image_size, image_limits=config.data.image_limits())
    splits = data.with_train_size(splits, config.data.train_size, config.run.seed)
    splits = data.with_scaling(splits, config.data.input_scaling)
    if new_run:
        bounds.check_data(config, splits)
    config = config.in_iterations(splits.train_size)
    if new_run:  # a folder it cannot make or write (a file, a path under a file, a read-only place)
        writable.check_folder(config.directory(program), "experiment_dir" if config.run.experiment_dir
                              else "root_dir")
    directory = check_directory(config, program)
    return Prepared(config, program, directory, splits, initial_mask)


def _check_free(prepared):
    """FolderLocked if another run holds the folder (a multi-worker task's folder is known once its
    cluster is, so the run checks it then); a warning, or with --strict_numerics a ConfigError, if
    the folder was last run under another numerics identity (launches.check_numerics)."""
    if prepared.config.run.strategy != "multi_worker":
        lock.check(prepared.directory)
    launches.check_numerics(prepared.directory, prepared.config.run.strict_numerics)
    return prepared


def prepare_replicates(config, program="imp"):
    """prepare() for each replicate: the points of the study over seeds seed, seed+1, ...

    The points come from tf_lottery.study.grid.replicates, the plan that
    `binaries.lottery --replicates=N` runs on Ray: one seed_<seed> folder each,
    in --experiment_dir or in root_dir/<name>_x<N>. A folder that another run
    holds is refused (FolderLocked).
    """
    if config.lottery.replicates == 1:
        return [_check_free(prepare(config, program))]
    return [_check_free(prepare(point.config, program))
            for point in study_grid.replicates(config, program).points]


def _saved_values(experiment_dir):
    if not experiment_dir:
        raise ConfigError("experiment_dir", "is required")
    config_path = results.config_path(experiment_dir)
    if not config_path.is_file():
        raise ConfigError("experiment_dir", f"{config_path} does not exist; is it an experiment folder?")
    try:
        return results.read_config(experiment_dir)
    except OSError as error:
        raise ConfigError("experiment_dir", f"{config_path} is not readable ({error})") from None


def saved_config(experiment_dir, **overrides):
    """The ExperimentConfig in `experiment_dir/config.json`, with flat `overrides` applied."""
    values = _saved_values(experiment_dir)
    config_path = results.config_path(experiment_dir)
    if library.is_library_experiment(values):
        raise ConfigError("experiment_dir", f"{experiment_dir} was written by imp.run_rounds from "
                                            "Python; this needs an experiment of binaries.lottery")
    try:
        config = ExperimentConfig.from_flat(values)
    except (TypeError, ValueError) as error:
        raise ConfigError("experiment_dir", f"{config_path} is not a tf_lottery config ({error})") from None
    return config.replace(experiment_dir=str(experiment_dir), **overrides)


def prepare_branch(experiment_dir, control_names, data_dir=None):
    """prepare() for training controls in an existing IMP experiment folder."""
    config = saved_config(experiment_dir, controls=tuple(control_names),
                          **({"data_dir": data_dir} if data_dir is not None else {}))
    if not config.lottery.controls:
        raise ConfigError("controls", "name at least one control")
    return _check_free(prepare(config, "imp"))


def load_experiment(experiment_dir, data_dir=None, retrainable=False):
    """prepare() for reading an existing experiment folder (its data loaded, nothing written).

    A folder written by imp.run_rounds from Python comes with its test sample
    as the data (Prepared.program 'library'); with `retrainable=True` (the
    analyses that train copies of the zoo model) it is refused.
    """
    values = _saved_values(experiment_dir)
    if library.is_library_experiment(values) and not retrainable:
        splits = user_data.test_only(*library.read_test_sample(experiment_dir))
        return Prepared(None, library.PROGRAM, pathlib.Path(experiment_dir), splits, saved=values)
    return prepare(saved_config(experiment_dir, **({"data_dir": data_dir} if data_dir is not None else {})),
                   "imp", new_run=False)


# The functions below use TensorFlow; it loads on first use.

def _runtime(prepared):
    """Seeds, determinism, dtype policy and strategy; returns (strategy, this worker's folder)."""
    run = prepared.config.run
    training.configure_runtime(run.seed, run.deterministic)
    distribute.set_precision(run.precision)
    strategy = distribute.make_strategy(run.strategy, run.tpu)
    return strategy, distribute.worker_directory(prepared.directory, strategy)


def model_builder(prepared, strategy):
    """seed -> the experiment's fresh, unwrapped zoo model, built in the strategy's scope."""
    model_config, splits = prepared.config.model, prepared.splits

    def build(seed):
        with strategy.scope():
            return models.build(model_config.name, input_shape=splits.input_shape,
                                num_classes=splits.num_classes, seed=seed, **model_config.options())
    return build


def wrapped_model(prepared, strategy):
    """The experiment's model at its seed, wrapped (its dense layers left out), initial masks applied."""
    config = prepared.config
    try:
        with strategy.scope():
            wrapped = model_ops.wrap(model_builder(prepared, strategy)(config.run.seed),
                                     exclude=config.pruning.dense_layers)
    except ValueError as error:
        raise ConfigError("exclude", str(error)) from None
    if prepared.initial_mask is not None:
        try:
            model_ops.set_masks(wrapped, prepared.initial_mask)
        except ValueError as error:
            raise ConfigError("initial_mask", f"{config.lottery.initial_mask}: {error}") from None
    return wrapped


def check_model(config, wrapped):
    """block_shape and rounds against the wrapped model's kernels (bounds.check_kernels); ConfigError."""
    kernels = [(key, math.prod(weight.shape[:-1]), weight.shape[-1])
               for key, weight, _ in model_ops.masked_weights(wrapped)]
    bounds.check_kernels(config, kernels, model_ops.output_key(wrapped), model_ops.conv_keys(wrapped),
                         whose=wrapped.name)


def _context(prepared, strategy, directory):
    """The round loop's context for the experiment: model, Trainer, configs, folder (the model is checked
    against the config before anything is written)."""
    config = prepared.config
    model = wrapped_model(prepared, strategy)
    check_model(config, model)
    context = rounds.make_context(
        model, prepared.splits, rounds=config.lottery.rounds,
        training_config=config.resolved_training(), pruning_config=config.resolved_pruning(),
        experiment_dir=directory, on_nan=config.run.on_nan, strategy=strategy,
        build_model=model_builder(prepared, strategy))
    results.write_config(directory, config, getattr(prepared.splits, "class_names", ()))
    launches.record(directory, flag_lib.command_line(config))
    logging.info("experiment folder: %s", directory)
    return context


def run_imp(prepared):
    """Runs (or resumes) IMP, then the configured controls; returns the summary dict."""
    strategy, directory = _runtime(prepared)
    with lock.hold(directory):
        context = _context(prepared, strategy, directory)
        lottery = prepared.config.lottery
        imp.run_rounds(context.model, prepared.splits, rounds=lottery.rounds,
                       training_config=context.training_config, pruning_config=context.pruning_config,
                       experiment_dir=context.experiment_dir, reset=lottery.reset,
                       rewind_step=lottery.rewind_step, context=context)
        if lottery.controls:
            _run_controls(prepared, context)
        return results.read_summary(context.experiment_dir)


def run_controls(prepared):
    """Trains the configured controls in a finished IMP folder; returns the summary dict."""
    strategy, directory = _runtime(prepared)
    with lock.hold(directory):
        context = _context(prepared, strategy, directory)
        _run_controls(prepared, context)
        return results.read_summary(context.experiment_dir)


def _run_controls(prepared, context):
    controls.run_controls(
        context.model, prepared.splits, names=prepared.config.lottery.controls,
        rounds=context.rounds, training_config=context.training_config,
        pruning_config=context.pruning_config, experiment_dir=context.experiment_dir,
        context=context)


def run_training(prepared):
    """Trains the dense, unwrapped model of a prepared config once; returns its record."""
    strategy, directory = _runtime(prepared)
    model = model_builder(prepared, strategy)(prepared.config.run.seed)
    with lock.hold(directory):
        results.write_config(directory, prepared.config, getattr(prepared.splits, "class_names", ()))
        if results.is_finished(directory):
            return results.read_record(directory)
        launches.record(directory, flag_lib.command_line(prepared.config, program="binaries.train"))
        trainer = training.Trainer(model, prepared.splits, prepared.config.resolved_training(), strategy)
        try:
            result = trainer.train(directory=directory)
        except FloatingPointError as error:
            raise results.RoundFailed(str(error)) from None
        record = {"round": 0, "remaining_fraction": 1.0, **result.summary()}
        results.write_round(directory, None, record, curve=result.curve)
        return record


def describe_model(config):
    """The model's prunable weights, one line each, with totals (what --model_summary prints)."""
    input_shape, num_classes = data.SHAPES[config.data.dataset]
    if config.data.dataset == data.IMAGENET:
        input_shape = (config.data.image_size, config.data.image_size, 3)
    if input_shape is None:  # known once the data is read (an image folder)
        splits = data.load(config.data.dataset, data_dir=config.data.data_dir,
                           validation_size=config.data.validation_size, seed=config.run.seed,
                           image_size=config.data.image_size, image_limits=config.data.image_limits())
        input_shape, num_classes = splits.input_shape, splits.num_classes
    if config.model.name == "lenet":
        bounds.check_lenet(config, input_shape, num_classes)  # before a LeNet too large for memory is built
    model = models.build(config.model.name, input_shape=input_shape, num_classes=num_classes,
                         seed=config.run.seed, **config.model.options())
    wrapped = model_ops.wrap(model, exclude=config.pruning.dense_layers)
    lines = [f"{'weight':<40} {'shape':<22} {'size':>12}"]
    prunable = 0
    for key, weight, _ in model_ops.masked_weights(wrapped):
        size = int(weight.numpy().size)
        prunable += size
        lines.append(f"{key:<40} {str(tuple(weight.shape)):<22} {size:>12,}")
    lines.append(f"{'prunable weights':<63} {prunable:>12,}")
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    lines.append(f"{'trainable parameters':<63} {trainable:>12,}")
    return f"model {model.name}\n" + "\n".join(lines)


def restore_round(prepared, round_index, control=None):
    """The experiment's wrapped model as it was at the end of round `round_index` (of a control).

    Masks, trained weights and snapshots come from the round's last checkpoint;
    raises ConfigError naming the round if it is not finished.
    """
    directory = results.round_dir(prepared.directory, round_index, control)
    if not results.is_finished(directory):
        raise ConfigError("round", f"{directory} is not a finished round")
    if prepared.program == library.PROGRAM:
        model = _saved_model(prepared.directory)
    else:
        model = initial_model(prepared)
    checkpoints.restore_model(model, directory)
    return model


def initial_model(prepared):
    """The experiment's wrapped model as its seed initialises it (theta_0, initial masks), with the runtime
    (seeds, determinism, precision, strategy) configured as for a run: what a folder without checkpoints
    (a packed one) is rebuilt from."""
    return wrapped_model(prepared, _runtime(prepared)[0])


def _saved_model(experiment_dir):
    """The wrapped model a Python run saved as its round 0 started."""
    path = library.model_path(experiment_dir)
    if not path.is_file():
        raise ConfigError("experiment_dir", f"{path} does not exist: the model of this run could not "
                                            "be saved, so it cannot be rebuilt")
    try:
        return keras.models.load_model(
            path, compile=False, custom_objects={"LotteryWrapper": wrapper.LotteryWrapper})
    except (TypeError, ValueError) as error:
        raise ConfigError("experiment_dir", f"cannot load {path}: {str(error).splitlines()[0]}") from None
