"""The flags of the lottery and train binaries: one per setting, generated from tf_lottery.config."""

from absl import flags

from binaries import cli
from tf_lottery import experiment
from tf_lottery import flags as setting_flags

setting_flags.define_experiment_flags()
flags.DEFINE_bool("model_summary", False, "Print the model's prunable weights and counts, then stop.")

FLAGS = flags.FLAGS


def config():
    """The flags' config, checked; bad input exits with status 2."""
    with cli.usage_errors():
        return setting_flags.config_from_flags()


def prepare(program):
    """The prepared replicates of the flags' config; bad input exits with status 2 before TF loads."""
    with cli.usage_errors():
        return experiment.prepare_replicates(setting_flags.config_from_flags(), program)
