"""ExperimentConfig: validation names the field, the hash ignores non-result fields, folders refuse mixing."""

import pytest

from tf_lottery import experiment
from tf_lottery.config import ConfigError, ExperimentConfig


@pytest.mark.parametrize("field, value", [
    ("model", "alexnet"), ("dataset", "imagenet9"), ("hidden", (300, 0)), ("validation_size", -1),
    ("rounds", -1), ("prune_fraction", 0.0), ("prune_fraction", 1.0), ("output_prune_fraction", 1.0),
    ("prune_scope", "row"), ("prune_criterion", "size"), ("reset", "restart"),
    ("train_steps", 0), ("batch_size", 0), ("optimizer", "rmsprop"), ("learning_rate", 0.0),
    ("momentum", 1.0), ("lr_milestones", (30, 10)), ("lr_gamma", 0.0), ("eval_every", 0),
    ("eval_batch_size", 0), ("checkpoint_every", 0), ("steps_per_call", 0), ("seed", -1),
    ("data_seed", -2),
])
def test_bad_values_name_their_field(field, value):
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.from_flat(**{field: value})
    assert error.value.field == field
    assert repr(value) in str(error.value)


def test_rewind_step_checks():
    with pytest.raises(ConfigError, match="rewind_step: must be in \\[0, train_steps=100\\]"):
        ExperimentConfig.from_flat(reset="rewind", rewind_step=101, train_steps=100)
    with pytest.raises(ConfigError, match="rewind_step: is only used with --reset=rewind"):
        ExperimentConfig.from_flat(reset="init", rewind_step=5)
    assert ExperimentConfig.from_flat(reset="rewind", rewind_step=100, train_steps=100).lottery.rewind_step == 100


def test_output_rate_defaults_to_half():
    assert ExperimentConfig.from_flat(prune_fraction=0.2).pruning.output_rate == 0.1
    assert ExperimentConfig.from_flat(output_prune_fraction=0.0).pruning.output_rate == 0.0


def test_hash_ignores_fields_that_do_not_change_results():
    base = ExperimentConfig()
    same = base.replace(root_dir="elsewhere", eval_batch_size=100, steps_per_call=7,
                               checkpoint_every=10, data_dir="/data")
    assert same.config_hash() == base.config_hash()
    assert base.replace(seed=1).config_hash() != base.config_hash()
    assert base.name() == f"imp_lenet_mnist_init_{base.config_hash()}"
    assert base.replace(reset="rewind", rewind_step=500).name().startswith(
        "imp_lenet_mnist_rewind500_")


def test_dict_round_trip_and_unknown_keys():
    config = ExperimentConfig.from_flat(hidden=(10, 5), lr_milestones=(3,), train_steps=10)
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="colour: unknown setting"):
        ExperimentConfig.from_dict({"colour": "red"})


def test_folder_with_other_config_is_refused(tmp_path):
    from tf_lottery import atomic
    config = ExperimentConfig.from_flat(experiment_dir=str(tmp_path / "exp"), train_steps=100)
    atomic.write_json(tmp_path / "exp" / "config.json",
                      config.replace(seed=3, learning_rate=0.1).to_dict())
    with pytest.raises(ConfigError, match="differs in learning_rate, seed"):
        experiment.check_directory(config, "imp")
    fine = config.replace(eval_batch_size=7, seed=3, learning_rate=0.1)
    assert experiment.check_directory(fine, "imp") == tmp_path / "exp"


def test_non_empty_folder_without_config_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty and has no config.json"):
        experiment.check_directory(ExperimentConfig.from_flat(experiment_dir=str(tmp_path)), "imp")


def test_config_and_data_checks_do_not_import_tensorflow():
    import subprocess
    import sys
    code = ("import sys; from tf_lottery import config, data, experiment, results; from binaries import experiment_flags; "
            "config.ExperimentConfig(); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_model_choices_are_the_registered_zoo():
    from tf_lottery import models
    assert models.REGISTRY.names() == ("lenet", "conv2", "conv4", "conv6", "vgg16", "vgg19", "resnet20",
                                       "resnet56", "resnet18", "resnet50")
    with pytest.raises(ConfigError, match="model: must be one of lenet, conv2"):
        ExperimentConfig.from_flat(model="alexnet")


def test_steps_in_epochs_become_iterations():
    config = ExperimentConfig.from_flat(train_steps="160ep", lr_milestones=("80ep", "120ep"), rewind_step="2ep",
                              reset="rewind", batch_size=128, warmup_steps="500it")
    resolved = config.in_iterations(45000)          # ceil(45000 / 128) = 352 iterations per epoch
    assert (resolved.training.train_steps, resolved.training.lr_milestones,
            resolved.lottery.rewind_step, resolved.training.warmup_steps) == (56320, (28160, 42240), 704, 500)
    explicit = ExperimentConfig.from_flat(train_steps=56320, lr_milestones=(28160, 42240), rewind_step=704,
                                reset="rewind", batch_size=128, warmup_steps=500)
    assert resolved.config_hash() == explicit.config_hash()
    with pytest.raises(ConfigError, match="train_steps: must be iterations .* or epochs .*'ten'"):
        ExperimentConfig.from_flat(train_steps="ten")
    with pytest.raises(ConfigError, match="rewind_step: must be in \\[0, train_steps=100\\]"):
        ExperimentConfig.from_flat(train_steps="1ep", reset="rewind", rewind_step="2ep", batch_size=50).in_iterations(5000)
