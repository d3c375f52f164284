"""Settings declared once: flags, config, command line and docs all come from the same fields."""

import dataclasses
import pathlib
import shlex
import subprocess
import sys

import pytest
from absl import flags

import tf_lottery as tfl
from tf_lottery import config, settings
from tf_lottery import flags as setting_flags
from tf_lottery.config import ExperimentConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


def _parse(args):
    values = flags.FlagValues()
    setting_flags.define_experiment_flags(values)
    values(["prog", *args])
    return setting_flags.config_from_flags(values)


def test_every_field_is_one_flag_with_help():
    names = [settings.flag_name(f) for cls in config.GROUPS.values() for f in settings.flag_fields(cls)]
    assert len(names) == len(set(names)) == 70
    assert set(names) == set(ExperimentConfig().flat())
    for cls in config.GROUPS.values():
        for field in settings.flag_fields(cls):
            assert field.metadata["help"], field.name


def test_the_command_line_reruns_the_same_config():
    original = ExperimentConfig.from_flat(
        model="conv2", dataset="cifar10", hidden=(10, 5), prune_fraction=0.3, exclude=("fc1", "output"),
        block_shape=(2, 2), structure="block", lr_milestones=("80ep", 1000), reset="rewind",
        rewind_step="2ep", nesterov=True, deterministic=False, jit_compile=False, data_seed=3,
        controls=("one_shot",), train_steps="160ep")
    args = shlex.split(setting_flags.command_line(original))[3:]
    assert args[:2] == ["--dataset=cifar10", "--model=conv2"]
    assert "--nodeterministic" in args and "--block_shape=2x2" in args
    assert _parse(args) == original


def test_command_line_overrides_go_through_the_checks():
    base = ExperimentConfig.from_flat(rounds=3)
    assert "--seed=4" in setting_flags.command_line(base, seed=4)
    with pytest.raises(tfl.ConfigError, match="seed: must be >= 0"):
        setting_flags.command_line(base, seed=-4)


def test_flag_reference_in_the_docs_is_current():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import flags_doc
    finally:
        sys.path.pop(0)
    assert (REPO / "docs" / "flags.md").read_text() == flags_doc.text(), \
        "docs/flags.md is stale: run python tools/flags_doc.py"


@pytest.mark.parametrize("group, values, flag", [
    (tfl.TrainingConfig, {"batch_size": 0}, "batch_size"),
    (tfl.TrainingConfig, {"train_steps": "ten"}, "train_steps"),
    (tfl.TrainingConfig, {"optimizer": "rmsprop"}, "optimizer"),
    (tfl.PruningConfig, {"fraction": 1.5}, "prune_fraction"),
    (tfl.PruningConfig, {"fraction": -0.2}, "prune_fraction"),
    (tfl.PruningConfig, {"scope": "globall"}, "prune_scope"),
    (tfl.PruningConfig, {"structure": "neurons"}, "structure"),
    (tfl.PruningConfig, {"n_of_m": (4, 2)}, "n_of_m"),
    (tfl.LotteryConfig, {"rounds": -1}, "rounds"),
    (tfl.DataConfig, {"dataset": "mnist9"}, "dataset"),
    (tfl.ModelConfig, {"name": "alexnet"}, "model"),
])
def test_python_settings_are_checked_like_flags(group, values, flag):
    with pytest.raises(tfl.ConfigError) as error:
        group(**values)
    assert error.value.field == flag


def test_python_settings_take_a_tfmot_schedule():
    import tensorflow_model_optimization as tfmot
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=1)
    assert tfl.PruningConfig(schedule=schedule).schedule is schedule


def test_groups_are_frozen_and_flat_names_map_onto_them():
    experiment_config = ExperimentConfig.from_flat(prune_fraction=0.3, exclude=("fc1",), model="conv2")
    assert experiment_config.pruning.fraction == 0.3
    assert experiment_config.pruning.dense_layers == ("fc1",)
    assert experiment_config.model.name == "conv2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        experiment_config.pruning.fraction = 0.5
    with pytest.raises(tfl.ConfigError, match="prune_fractions: unknown setting"):
        ExperimentConfig.from_flat(prune_fractions=0.3)


def test_helpfull_lists_the_registered_entries():
    out = subprocess.run([sys.executable, "-m", "binaries.lottery", "--helpfull"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    for entry in ("n_of_m:", "random_reinit:", "fashion_mnist:", "resnet50:", "polynomial:", "global:"):
        assert entry in out.stdout, entry
