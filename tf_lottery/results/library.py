"""The results folder of an experiment run from Python (`imp.run_rounds`): its config and what export rebuilds.

  config.json       {"program": "library", the settings (flat names), fingerprints of the
                    model's architecture and of the data, the compiled objective}
  model.keras       the wrapped model as round 0 starts (architecture, theta_0, masks)
  test_sample.npz   up to 1,000 test examples as the model takes them (x, y), for export's checks

A rerun with other settings, another architecture or other data is refused,
naming what differs; more rounds extend a finished experiment.
"""

import hashlib
import json

import numpy as np
from absl import logging

from tf_lottery import atomic
from tf_lottery import results
from tf_lottery import settings

PROGRAM = "library"
MODEL = "model.keras"
TEST_SAMPLE = "test_sample.npz"
_SAMPLE_SIZE = 1000
# Settings that never change results, and the round count (more rounds extend an experiment).
_IGNORED = {"rounds"}


def is_library_experiment(saved):
    """Whether a config.json dict was written by imp.run_rounds from Python."""
    return saved.get("program") == PROGRAM


def model_path(experiment_dir):
    return results.config_path(experiment_dir).parent / MODEL


def test_sample_path(experiment_dir):
    return results.config_path(experiment_dir).parent / TEST_SAMPLE


def model_fingerprint(model):
    """A short hash of the architecture: each layer's class and weight shapes, in order (names do not count)."""
    digest = hashlib.sha256()
    for layer in model._flatten_layers(include_self=False):
        digest.update(type(layer).__name__.encode())
        for weight in layer.weights:
            digest.update(str(tuple(weight.shape)).encode())
    return digest.hexdigest()[:16]


def _schedule_text(schedule):
    if isinstance(schedule, str):
        return schedule
    return {"class": type(schedule).__name__, "config": schedule.get_config()}


def describe(model, splits, data_fingerprint, training_config, pruning_config, lottery, objective):
    """The config.json dict of a library experiment.

    With a compiled model the optimizer entries name the compiled optimizer;
    with a tf.data pipeline the batch size is the pipeline's.
    """
    training_values = training_config.flat()
    if objective.optimizer is not None:
        optimizer = objective.optimizer if isinstance(objective.optimizer, dict) else {}
        training_values.update(
            optimizer=f"{optimizer.get('class_name', objective.optimizer)} (compiled)",
            learning_rate=optimizer.get("config", {}).get("learning_rate"))
    if getattr(splits, "variable_batches", False):
        training_values["batch_size"] = "as the pipeline batches"
    pruning_values = {**pruning_config.flat(), "schedule": _schedule_text(pruning_config.schedule)}
    return {"program": PROGRAM, "model": model.name, "dataset": splits.name,
            "model_fingerprint": model_fingerprint(model), "data_fingerprint": data_fingerprint,
            **training_values, **pruning_values, **lottery.flat(), "objective": objective.describe()}


def _result_keys(config_dicts):
    ignored = set(_IGNORED)
    for group in config_dicts:
        ignored |= {settings.flag_name(f) for f in settings.flag_fields(type(group))
                    if not f.metadata["result"]}
    return ignored


def check_folder(experiment_dir, described, groups):
    """Refuses a folder holding another experiment (ValueError naming the differing settings); writes nothing."""
    config_path = results.config_path(experiment_dir)
    if not config_path.exists():
        if experiment_dir.exists() and results.holds_results(experiment_dir):
            raise ValueError(f"experiment_dir {experiment_dir} exists, is not empty and has no config.json")
        return
    saved = results.read_config(experiment_dir)
    if not is_library_experiment(saved):
        raise ValueError(f"experiment_dir {experiment_dir} holds an experiment of binaries.lottery; "
                         "use another folder")
    ignored = _result_keys(groups)
    normal = json.loads(json.dumps(described))
    differing = sorted(k for k in set(normal) | set(saved)
                       if k not in ignored and normal.get(k) != saved.get(k))
    if differing:
        raise ValueError(f"experiment_dir {experiment_dir} holds a run_rounds experiment with other "
                         f"settings (differs in {', '.join(differing)}); use another folder")


def write(experiment_dir, described, model, splits):
    """config.json, then (once) the model file and the test sample export needs."""
    atomic.write_json(results.config_path(experiment_dir), described)
    path = model_path(experiment_dir)
    if not path.exists():
        try:
            model.save(path)
        except Exception as error:  # noqa: BLE001 (Keras raises many kinds for unsavable models)
            logging.warning("cannot save %s (%s); binaries.export will not be able to rebuild this "
                            "model", path, str(error).splitlines()[0])
    sample = test_sample_path(experiment_dir)
    if not sample.exists() and getattr(splits, "test_arrays", None) is not None:
        x, y = splits.test_arrays(_SAMPLE_SIZE)
        if len(y):
            atomic.write_npz(sample, {"x": np.asarray(x, np.float32), "y": np.asarray(y)})


def read_test_sample(experiment_dir):
    """(x, y) of the test sample, or ConfigError naming the folder if there is none."""
    path = test_sample_path(experiment_dir)
    if not path.is_file():
        raise settings.ConfigError("experiment_dir", f"{path} does not exist: the experiment had no "
                                                     "test data to check an export on")
    remedy = "delete it and rerun imp.run_rounds with the same arguments: it is written again"
    sample = results.read_arrays(path, remedy)
    if set(sample) != {"x", "y"} or len(sample["x"]) != len(sample["y"]):
        raise results.DamagedFile(path, "not one array x and one array y of the same length", remedy)
    return sample["x"], sample["y"]
