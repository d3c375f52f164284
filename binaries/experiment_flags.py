"""The flags shared by the lottery and train binaries, and their one-step conversion to a config."""

import pathlib
import sys

from absl import flags

from tf_lottery import experiment
from tf_lottery.config import ConfigError, ExperimentConfig
from tf_lottery.data import DataError

_DEFAULTS = ExperimentConfig()

# Data and model.
flags.DEFINE_string("model", _DEFAULTS.model, "Model builder: lenet.")
flags.DEFINE_list("hidden", [str(w) for w in _DEFAULTS.hidden], "LeNet hidden widths, e.g. 300,100.")
flags.DEFINE_string("dataset", _DEFAULTS.dataset, "mnist, fashion_mnist or mnist_small (bundled).")
flags.DEFINE_string("data_dir", None, "Folder with the original IDX files, or a prepared TFDS data dir.")
flags.DEFINE_integer("validation_size", _DEFAULTS.validation_size,
                     "Training examples held out for validation (early stopping).")
# Pruning and reset.
flags.DEFINE_integer("rounds", _DEFAULTS.rounds, "Pruning rounds after the dense round 0.")
flags.DEFINE_float("prune_fraction", _DEFAULTS.prune_fraction,
                   "Fraction of the remaining weights pruned per round.")
flags.DEFINE_float("output_prune_fraction", None,
                   "Rate for the output layer (default: prune_fraction / 2).")
flags.DEFINE_string("prune_scope", _DEFAULTS.prune_scope, "layer (per tensor) or global.")
flags.DEFINE_string("prune_criterion", _DEFAULTS.prune_criterion, "magnitude or random.")
flags.DEFINE_list("exclude", [], "Layer names never wrapped or pruned.")
flags.DEFINE_string("reset", _DEFAULTS.reset, "init (theta_0) or rewind (theta_k).")
flags.DEFINE_integer("rewind_step", _DEFAULTS.rewind_step, "k for --reset=rewind.")
# Training.
flags.DEFINE_integer("train_steps", _DEFAULTS.train_steps, "Training iterations per round.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Training batch size.")
flags.DEFINE_string("optimizer", _DEFAULTS.optimizer, "adam or sgd.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Initial learning rate.")
flags.DEFINE_float("momentum", _DEFAULTS.momentum, "SGD momentum.")
flags.DEFINE_bool("nesterov", _DEFAULTS.nesterov, "Nesterov momentum for SGD.")
flags.DEFINE_list("lr_milestones", [], "Iterations at which the learning rate drops.")
flags.DEFINE_float("lr_gamma", _DEFAULTS.lr_gamma, "Learning-rate factor at each milestone.")
flags.DEFINE_integer("eval_every", _DEFAULTS.eval_every, "Evaluate every this many iterations.")
flags.DEFINE_integer("eval_batch_size", _DEFAULTS.eval_batch_size, "Evaluation batch size.")
flags.DEFINE_integer("checkpoint_every", _DEFAULTS.checkpoint_every,
                     "Checkpoint every this many iterations.")
flags.DEFINE_integer("steps_per_call", _DEFAULTS.steps_per_call,
                     "Training steps run inside one tf.function call.")
flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "Compile the training step with XLA.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of initialisation, hold-out and pruning.")
flags.DEFINE_integer("data_seed", None, "Seed of the training data order (default: --seed).")
flags.DEFINE_bool("deterministic", _DEFAULTS.deterministic, "Deterministic TensorFlow ops.")
# Where results go.
flags.DEFINE_string("root_dir", _DEFAULTS.root_dir, "Parent folder of auto-named experiment folders.")
flags.DEFINE_string("experiment_dir", None, "Explicit experiment folder (overrides --root_dir).")

FLAGS = flags.FLAGS


def _ints(name):
    try:
        return tuple(int(v) for v in FLAGS[name].value)
    except ValueError:
        raise ConfigError(name, f"must be a comma-separated list of integers, got {FLAGS[name].value}")


def config_from_flags():
    """The ExperimentConfig that the parsed flags describe (validated)."""
    values = {name: FLAGS[name].value for name in ExperimentConfig.__dataclass_fields__}
    values.update(hidden=_ints("hidden"), lr_milestones=_ints("lr_milestones"),
                  exclude=tuple(FLAGS.exclude))
    return ExperimentConfig(**values)


def fail(message):
    """Prints a one-line error and exits with status 2 (usage error)."""
    print(f"{pathlib.Path(sys.argv[0]).stem}: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv):
    """absl flags parser that turns a bad flag into a one-line error and exit status 2."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(str(error).splitlines()[0])


def prepare(kind):
    """Config from the flags, folder and data checked; bad input exits with status 2 before TF loads."""
    try:
        return experiment.prepare(config_from_flags(), kind)
    except ConfigError as error:
        fail(f"--{error.field}: {error.message}")
    except DataError as error:
        fail(str(error))
