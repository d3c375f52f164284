"""Runs an ExperimentConfig: checks its folder and data, then builds the model and calls IMP or training.

`prepare` does every check that can fail on bad input without importing
TensorFlow; `run_imp` and `run_training` do the work.
"""

import dataclasses
import pathlib

from tf_lottery import atomic
from tf_lottery import data
from tf_lottery.config import ConfigError, ExperimentConfig


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A validated config with its experiment folder (not yet written) and its loaded data."""
    config: ExperimentConfig
    kind: str
    directory: pathlib.Path
    splits: data.Splits


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


def prepare(config, kind="imp"):
    """Checks the folder and loads the data; raises ConfigError or DataError, writes nothing."""
    directory = check_directory(config, kind)
    splits = data.load(config.dataset, data_dir=config.data_dir,
                       validation_size=config.validation_size, seed=config.seed)
    return Prepared(config, kind, directory, splits)


# TensorFlow is imported in the functions below, once the cheap checks have passed.

def _build_model(prepared):
    from tf_lottery import models
    from tf_lottery import training
    config = prepared.config
    training.configure_runtime(config.seed, config.deterministic)
    return models.build(config.model, input_shape=prepared.splits.input_shape,
                        num_classes=prepared.splits.num_classes, seed=config.seed,
                        hidden=config.hidden)


def run_imp(prepared):
    """Runs (or resumes) IMP for a prepared config; returns the round records."""
    from absl import logging
    from tf_lottery import imp
    from tf_lottery import model_ops
    config = prepared.config
    wrapped = model_ops.wrap(_build_model(prepared), exclude=config.exclude)
    atomic.write_json(prepared.directory / "config.json", config.to_dict())
    logging.info("experiment folder: %s", prepared.directory)
    return imp.run_rounds(
        wrapped, prepared.splits, rounds=config.rounds, training_config=config.training(),
        pruning_config=config.pruning(), experiment_dir=prepared.directory,
        reset=config.reset, rewind_step=config.rewind_step)


def run_training(prepared):
    """Trains the dense, unwrapped model of a prepared config once; returns its record."""
    from tf_lottery import training
    model = _build_model(prepared)
    atomic.write_json(prepared.directory / "config.json", prepared.config.to_dict())
    metrics_path = prepared.directory / "metrics.json"
    if metrics_path.exists():
        return atomic.read_json(metrics_path)
    result = training.Trainer(model, prepared.splits, prepared.config.training()).train(
        directory=prepared.directory)
    record = {"round": 0, "remaining_fraction": 1.0, **result.summary()}
    atomic.write_json(prepared.directory / "curve.json", result.curve)
    atomic.write_json(metrics_path, record)
    return record
