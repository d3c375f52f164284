"""The results folder of an experiment run from Python (`imp.run_rounds`): its config and what export rebuilds.

  config.json       {"program": "library", the settings (flat names), fingerprints of the
                    model's architecture and of the data, how the data's inputs are scaled for
                    the model (input_normalization), the compiled objective, the model's name
                    and its masked weights' keys as the folder's first run named them}
  model.keras       the wrapped model as round 0 starts (architecture, theta_0, masks)
  test_sample.npz   up to 1,000 test examples as the model takes them, for export's checks: the
                    labels y and the inputs x (one input), x0, x1, ... (a list) or x/<name>

A rerun with other settings, another architecture or other data is refused,
naming what differs; more rounds extend a finished experiment. Names Keras
makes up (model and layer names) do not count: a model built again in the
same process gets the folder's layer names back. A folder with no finished
round takes anything: its unfinished start is discarded.
"""

import dataclasses
import hashlib
import json
import shutil

import numpy as np
from absl import logging
from etils import epy

from tf_lottery import atomic
from tf_lottery import results
from tf_lottery import settings
from tf_lottery.data import structure

with epy.lazy_imports():
    from tf_lottery import model_ops

PROGRAM = "library"
MODEL = "model.keras"
TEST_SAMPLE = "test_sample.npz"
_SAMPLE_SIZE = 1000
# Settings that never change results, the round count (more rounds extend an experiment), names and
# the input scaling (the data fingerprint covers it; folders written before it was recorded resume).
_IGNORED = {"rounds", "model", "weight_keys", "input_normalization"}
_UNRECORDED = {"normalization": "as in training (not recorded in config.json: run_rounds wrote this folder "
                                "before it recorded the scaling)", "mean": None, "std": None}
# What a run writes before its first round finishes (discarded when a corrected run replaces it).
_STARTED = (MODEL, TEST_SAMPLE, results.RESET_POINT, results.SUMMARY)


def is_library_experiment(saved):
    """Whether a config.json dict was written by imp.run_rounds from Python."""
    return saved.get("program") == PROGRAM


def model_path(experiment_dir):
    return results.config_path(experiment_dir).parent / MODEL


def test_sample_path(experiment_dir):
    return results.config_path(experiment_dir).parent / TEST_SAMPLE


def _layers(model):
    return list(model._flatten_layers(include_self=False))


def _shapes_digest(model):
    digest = hashlib.sha256()
    for layer in _layers(model):
        digest.update(type(layer).__name__.encode())
        for weight in layer.weights:
            digest.update(str(tuple(weight.shape)).encode())
    return digest


def _anonymous(value, positions):
    """A config with every layer or model name replaced by the layer's position (Keras numbers names
    per process: dense, dense_1, ...)."""
    if isinstance(value, dict):
        return {k: _anonymous(v, positions) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_anonymous(v, positions) for v in value]
    if isinstance(value, str) and value in positions:
        return f"#{positions[value]}"
    return value


def model_fingerprint(model):
    """A short hash of the architecture: each layer's class and weight shapes, in order, and the model's
    config (layers, their settings and connections) with the names Keras makes up left out."""
    names = [model.name] + [layer.name for layer in _layers(model)]
    positions = {name: i for i, name in reversed(list(enumerate(names)))}
    try:
        config = model.get_config()
    except NotImplementedError:  # a subclassed model: its layers' own configs
        config = [layer.get_config() for layer in _layers(model)]
    digest = _shapes_digest(model)
    digest.update(json.dumps(_anonymous(config, positions), sort_keys=True, default=repr).encode())
    return digest.hexdigest()[:16]


def _old_model_fingerprint(model):
    """The fingerprint folders written before issue 27 hold: layer classes and weight shapes only."""
    return _shapes_digest(model).hexdigest()[:16]


def weight_keys(model):
    """The keys of the model's masked weights, in order ('layer/attribute')."""
    return [key for key, _, _ in model_ops.masked_weights(model)]


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
    normalization = {key: np.asarray(value).tolist() if key in ("mean", "std") else value
                     for key, value in splits.normalization.items()}
    return {"program": PROGRAM, "model": model.name, "dataset": splits.name,
            "model_fingerprint": model_fingerprint(model), "data_fingerprint": data_fingerprint,
            "input_normalization": normalization, **training_values, **pruning_values, **lottery.flat(),
            "objective": objective.describe(), "weight_keys": weight_keys(model)}


def _result_keys(config_dicts):
    ignored = set(_IGNORED)
    for group in config_dicts:
        ignored |= {settings.flag_name(f) for f in settings.flag_fields(type(group))
                    if not f.metadata["result"]}
    return ignored


@dataclasses.dataclass(frozen=True)
class Folder:
    """What check_folder found: the folder's config.json if this run continues it (None for a new
    folder), or the settings a new run differs in from one that finished no round (`restart`)."""
    saved: dict | None = None
    restart: tuple = ()


def check_folder(experiment_dir, described, groups, model):
    """Compares the folder's config.json with `described` (what this run is); returns a Folder.

    Refuses a folder holding another experiment (ValueError naming the
    differing settings). A folder of which no round finished takes another
    experiment: `write` discards what its start wrote. Writes nothing.
    """
    config_path = results.config_path(experiment_dir)
    if not config_path.exists():
        if experiment_dir.exists() and results.holds_results(experiment_dir):
            raise ValueError(f"experiment_dir {experiment_dir} exists, is not empty and has no config.json")
        return Folder()
    saved = results.read_config(experiment_dir)
    if not is_library_experiment(saved):
        raise ValueError(f"experiment_dir {experiment_dir} holds an experiment of binaries.lottery; "
                         "use another folder")
    ignored = _result_keys(groups)
    normal = json.loads(json.dumps(described))
    differing = sorted(k for k in set(normal) | set(saved)
                       if k not in ignored and normal.get(k) != saved.get(k))
    if "model_fingerprint" in differing and saved.get("model_fingerprint") == _old_model_fingerprint(model):
        differing.remove("model_fingerprint")  # a folder of the code before architecture configs counted
    if differing and not results.finished_rounds(experiment_dir):
        return Folder(restart=tuple(differing))
    if differing:
        raise ValueError(f"experiment_dir {experiment_dir} holds a run_rounds experiment with other "
                         f"settings (differs in {', '.join(differing)}); use another folder")
    return Folder(saved=saved)


def _discard_start(experiment_dir, differing):
    """Removes what a run that never finished a round wrote, for a run with other settings or data."""
    for name in _STARTED:
        (experiment_dir / name).unlink(missing_ok=True)
    shutil.rmtree(results.round_dir(experiment_dir, 0), ignore_errors=True)
    logging.warning("experiment_dir %s: no round of its run finished; starting afresh with other "
                    "settings (%s)", experiment_dir, ", ".join(differing))


def _finished_keys(experiment_dir):
    """The masked weights' keys of the folder's first finished round (a folder without weight_keys)."""
    finished = results.finished_rounds(experiment_dir)
    if not finished:
        return None
    return list(results.round_masks(experiment_dir, finished[0]))


def _use_folder_names(model, keys, experiment_dir):
    """Renames the model's masked layers to the folder's names (same architecture, names Keras numbered
    anew), so the masks and records of the rounds still to train are keyed as the finished ones."""
    if not keys or keys == weight_keys(model):
        return
    current = [key.rsplit("/", 1) for key in weight_keys(model)]
    saved = [key.rsplit("/", 1) for key in keys]
    pairs = {(old[0], new[0]) for old, new in zip(current, saved)}
    renames = dict(pairs)
    others = {layer.name for layer in _layers(model) if layer.name not in renames}
    if ([key[1] for key in current] != [key[1] for key in saved] or len(pairs) != len(renames)
            or len(set(renames.values())) != len(renames) or others & set(renames.values())):
        logging.warning("experiment_dir %s: its masked weights are %s, the model's %s; the model keeps "
                        "its names", experiment_dir, ", ".join(keys), ", ".join(weight_keys(model)))
        return
    for wrapper in model_ops.wrappers(model):
        if wrapper.layer.name == wrapper.name:
            wrapper.layer.name = renames[wrapper.name]
        wrapper.name = renames[wrapper.name]


def write(experiment_dir, described, model, splits, folder=Folder()):
    """config.json, then (once) the model file and the test sample export needs.

    `folder` (from check_folder): a restart first removes what the folder's
    start wrote; a continued run gives the model's masked layers the
    folder's names back (a model built again in one process, where Keras
    numbers names anew) and keeps the folder's model name in config.json.
    """
    if folder.restart:
        _discard_start(experiment_dir, folder.restart)
    elif folder.saved is not None:
        _use_folder_names(model, folder.saved.get("weight_keys") or _finished_keys(experiment_dir),
                          experiment_dir)
        described = {**described, "model": folder.saved.get("model", described["model"]),
                     "weight_keys": weight_keys(model)}
    atomic.write_json(results.config_path(experiment_dir), described)
    path = model_path(experiment_dir)
    if not path.exists():
        try:
            model.save(path)
        except Exception as error:  # noqa: BLE001 (Keras raises many kinds for unsavable models)
            logging.warning("cannot save %s (%s); binaries.export will not be able to rebuild this "
                            "model", path, str(error).splitlines()[0])
    sample = test_sample_path(experiment_dir)
    arrays = splits.test_arrays(_SAMPLE_SIZE) if not sample.exists() and hasattr(splits, "test_arrays") \
        else None
    if arrays is not None and len(arrays[1]):
        x, y = arrays
        atomic.write_npz(sample, {**structure.sample_arrays(x), "y": np.asarray(y)})


def input_scaling(saved):
    """The export report's {normalization, mean, std}: how the data's stored inputs become the model's,
    as config.json `saved` records it (the test sample is stored already scaled)."""
    recorded = saved.get("input_normalization")
    if not recorded:
        return dict(_UNRECORDED)
    return {"normalization": recorded["formula"], "mean": recorded["mean"], "std": recorded["std"]}


def read_test_sample(experiment_dir):
    """(x, y) of the test sample (x one array, or a list or dict of arrays for several inputs), or
    ConfigError naming the folder if there is none."""
    path = test_sample_path(experiment_dir)
    if not path.is_file():
        raise settings.ConfigError("experiment_dir", f"{path} does not exist: the experiment had no "
                                                     "test data to check an export on")
    remedy = "delete it and rerun imp.run_rounds with the same arguments: it is written again"
    sample = results.read_arrays(path, remedy)
    x = structure.from_sample(sample) if "y" in sample else None
    if x is None or any(len(array) != len(sample["y"]) for array in structure.leaves(x)):
        raise results.DamagedFile(path, "not the inputs x (or x0, x1, ... or x/<name>) and labels y of "
                                        "the same length", remedy)
    return x, sample["y"]
