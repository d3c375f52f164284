"""Runs an ExperimentConfig: checks its folder and data, then builds the model and calls IMP or training.

`prepare` does every check that can fail on bad input without importing
TensorFlow; `run_imp` and `run_training` do the work.
"""

import dataclasses
import pathlib

import numpy as np

from tf_lottery import atomic
from tf_lottery import data
from tf_lottery import results
from tf_lottery.config import ConfigError, ExperimentConfig


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A validated config with its experiment folder (not yet written), data and initial masks."""
    config: ExperimentConfig
    kind: str
    directory: pathlib.Path
    splits: data.Splits
    initial_mask: dict | None = None


def _differing_fields(config, saved):
    current = config.result_fields()
    try:
        previous = ExperimentConfig.from_dict(saved).result_fields()
    except (ConfigError, TypeError):
        return ["config.json (unreadable)"]
    return sorted(k for k in current if current[k] != previous.get(k))


def check_directory(config, kind):
    """Returns the experiment folder; refuses one whose config.json differs in a result field."""
    directory = config.directory(kind)
    config_path = directory / "config.json"
    if config_path.exists():
        differing = _differing_fields(config, atomic.read_json(config_path))
        if differing:
            raise ConfigError(
                "experiment_dir",
                f"{directory} holds an experiment with a different config "
                f"(differs in {', '.join(differing)}); use another folder")
    elif directory.exists() and any(directory.iterdir()):
        raise ConfigError("experiment_dir", f"{directory} exists, is not empty and has no config.json")
    return directory


def read_mask_file(path):
    """{key: 0/1 float32 array} from an .npz mask file (e.g. a round's mask.npz)."""
    try:
        masks = atomic.read_npz(path)
    except (OSError, ValueError) as error:
        raise ConfigError("initial_mask", f"{path}: not a readable .npz file ({error})") from None
    for key, mask in masks.items():
        if not np.all((mask == 0) | (mask == 1)):
            raise ConfigError("initial_mask", f"{path}: '{key}' holds values other than 0 and 1")
    return {key: mask.astype(np.float32) for key, mask in masks.items()}


def prepare(config, kind="imp"):
    """Checks the data, the folder and the mask file; raises ConfigError or DataError, writes nothing.

    Step counts given in epochs are turned into iterations once the size of
    the training split is known, so '160ep' and its iteration count name the
    same experiment.
    """
    initial_mask = read_mask_file(config.initial_mask) if config.initial_mask else None
    splits = data.load(config.dataset, data_dir=config.data_dir,
                       validation_size=config.validation_size, seed=config.seed,
                       image_size=config.image_size)
    config = config.in_iterations(splits.train_size)
    directory = check_directory(config, kind)
    return Prepared(config, kind, directory, splits, initial_mask)


def prepare_replicates(config, kind="imp"):
    """prepare() for each replicate: seeds seed, seed+1, ..., one folder each."""
    if config.replicates == 1:
        return [prepare(config, kind)]
    configs = []
    for i in range(config.replicates):
        seed = config.seed + i
        directory = (str(pathlib.Path(config.experiment_dir) / f"seed_{seed}")
                     if config.experiment_dir else None)
        configs.append(dataclasses.replace(config, seed=seed, replicates=1, experiment_dir=directory))
    return [prepare(c, kind) for c in configs]


def saved_config(experiment_dir, **overrides):
    """The ExperimentConfig in `experiment_dir/config.json`, with `overrides` applied."""
    if not experiment_dir:
        raise ConfigError("experiment_dir", "is required")
    config_path = pathlib.Path(experiment_dir) / "config.json"
    if not config_path.is_file():
        raise ConfigError("experiment_dir", f"{config_path} does not exist; is it an experiment folder?")
    try:
        config = ExperimentConfig.from_dict(atomic.read_json(config_path))
    except (TypeError, ValueError) as error:
        raise ConfigError("experiment_dir", f"{config_path} is not a tf_lottery config ({error})") from None
    return dataclasses.replace(config, experiment_dir=str(experiment_dir), **overrides)


def prepare_branch(experiment_dir, controls, data_dir=None):
    """prepare() for training `controls` in an existing IMP experiment folder."""
    config = saved_config(experiment_dir, controls=tuple(controls),
                          **({"data_dir": data_dir} if data_dir else {}))
    if not config.controls:
        raise ConfigError("controls", "name at least one control")
    return prepare(config, "imp")


def load_experiment(experiment_dir, data_dir=None):
    """prepare() for reading an existing experiment folder (its data loaded, nothing written)."""
    return prepare(saved_config(experiment_dir, **({"data_dir": data_dir} if data_dir else {})), "imp")


# TensorFlow is imported in the functions below, once the cheap checks have passed.

def _runtime(prepared):
    """Seeds, determinism, dtype policy and strategy; returns (strategy, this worker's folder)."""
    from tf_lottery import distribute
    from tf_lottery import training
    config = prepared.config
    training.configure_runtime(config.seed, config.deterministic)
    distribute.set_precision(config.precision)
    strategy = distribute.make_strategy(config.strategy, config.tpu)
    return strategy, distribute.worker_directory(prepared.directory, strategy)


def _model_builder(prepared, strategy):
    from tf_lottery import models
    config, splits = prepared.config, prepared.splits

    def build(seed):
        with strategy.scope():
            return models.build(config.model, input_shape=splits.input_shape,
                                num_classes=splits.num_classes, seed=seed, **_model_options(config))
    return build


def _model_options(config):
    return {"hidden": config.hidden} if config.model == "lenet" else {}


def _wrapped_model(prepared, strategy):
    from tf_lottery import model_ops
    config = prepared.config
    try:
        with strategy.scope():
            wrapped = model_ops.wrap(_model_builder(prepared, strategy)(config.seed),
                                     exclude=config.exclude)
    except ValueError as error:
        raise ConfigError("exclude", str(error)) from None
    if prepared.initial_mask is not None:
        try:
            model_ops.set_masks(wrapped, prepared.initial_mask)
        except ValueError as error:
            raise ConfigError("initial_mask", f"{config.initial_mask}: {error}") from None
    return wrapped


def run_imp(prepared):
    """Runs (or resumes) IMP, then the configured controls; returns the summary dict."""
    from absl import logging
    from tf_lottery import imp
    config = prepared.config
    strategy, directory = _runtime(prepared)
    wrapped = _wrapped_model(prepared, strategy)
    atomic.write_json(directory / "config.json", config.to_dict())
    logging.info("experiment folder: %s", directory)
    imp.run_rounds(
        wrapped, prepared.splits, rounds=config.rounds, training_config=config.training(),
        pruning_config=config.pruning(), experiment_dir=directory, reset=config.reset,
        rewind_step=config.rewind_step, on_nan=config.on_nan, strategy=strategy)
    if config.controls:
        _controls(prepared, wrapped, strategy, directory)
    return results.read_summary(directory)


def run_controls(prepared):
    """Trains the configured controls in a finished IMP folder; returns the summary dict."""
    strategy, directory = _runtime(prepared)
    _controls(prepared, _wrapped_model(prepared, strategy), strategy, directory)
    return results.read_summary(directory)


def _controls(prepared, wrapped, strategy, directory):
    from tf_lottery import controls
    config = prepared.config
    atomic.write_json(directory / "config.json", config.to_dict())
    controls.run_controls(
        wrapped, prepared.splits, names=config.controls, rounds=config.rounds,
        training_config=config.training(), pruning_config=config.pruning(),
        experiment_dir=directory, build_model=_model_builder(prepared, strategy),
        on_nan=config.on_nan, strategy=strategy)


def run_training(prepared):
    """Trains the dense, unwrapped model of a prepared config once; returns its record."""
    from tf_lottery import training
    strategy, directory = _runtime(prepared)
    model = _model_builder(prepared, strategy)(prepared.config.seed)
    atomic.write_json(directory / "config.json", prepared.config.to_dict())
    metrics_path = directory / "metrics.json"
    if metrics_path.exists():
        return atomic.read_json(metrics_path)
    trainer = training.Trainer(model, prepared.splits, prepared.config.training(), strategy)
    try:
        result = trainer.train(directory=directory)
    except FloatingPointError as error:
        raise results.RoundFailed(str(error)) from None
    record = {"round": 0, "remaining_fraction": 1.0, **result.summary()}
    atomic.write_json(directory / "curve.json", result.curve)
    atomic.write_json(metrics_path, record)
    return record


def describe_model(config):
    """The model's prunable weights, one line each, with totals (what --model_summary prints)."""
    from tf_lottery import model_ops
    from tf_lottery import models
    input_shape, num_classes = data.SHAPES[config.dataset]
    if config.dataset == data.IMAGENET:
        input_shape = (config.image_size, config.image_size, 3)
    model = models.build(config.model, input_shape=input_shape, num_classes=num_classes,
                         seed=config.seed, **_model_options(config))
    wrapped = model_ops.wrap(model, exclude=config.exclude)
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
    from tf_lottery import imp
    base = results.control_dir(prepared.directory, control) if control else prepared.directory
    directory = results.round_dir(base, round_index)
    if not (directory / "metrics.json").is_file():
        raise ConfigError("round", f"{directory} is not a finished round")
    model = _wrapped_model(prepared, _runtime(prepared)[0])
    imp.restore_model(model, directory)
    return model
