"""The flags shared by the lottery and train binaries, and their one-step conversion to a config."""

from absl import flags

from binaries import cli

from tf_lottery import data
from tf_lottery import experiment
from tf_lottery.config import MODELS, ConfigError, ExperimentConfig

_DEFAULTS = ExperimentConfig()

# Data and model.
flags.DEFINE_string("model", _DEFAULTS.model, f"Model: {', '.join(MODELS)}.")
flags.DEFINE_list("hidden", [str(w) for w in _DEFAULTS.hidden], "LeNet hidden widths, e.g. 300,100.")
flags.DEFINE_string("dataset", _DEFAULTS.dataset,
                    f"{', '.join(data.DATASETS)} (mnist_small is bundled with the package).")
flags.DEFINE_string("data_dir", None, "Folder with the original MNIST IDX files or CIFAR archives, or "
                    "a prepared TFDS data dir (required for imagenet2012).")
flags.DEFINE_integer("validation_size", _DEFAULTS.validation_size,
                     "Training examples held out for validation (early stopping).")
flags.DEFINE_integer("image_size", _DEFAULTS.image_size,
                     "imagenet2012 only: side of the square training and evaluation crops.")
# Pruning and reset.
flags.DEFINE_integer("rounds", _DEFAULTS.rounds, "Pruning rounds after the dense round 0.")
flags.DEFINE_float("prune_fraction", _DEFAULTS.prune_fraction,
                   "Fraction of the remaining weights pruned per round.")
flags.DEFINE_float("output_prune_fraction", None,
                   "Rate for the output layer (default: prune_fraction / 2).")
flags.DEFINE_string("prune_scope", _DEFAULTS.prune_scope, "layer (per tensor) or global.")
flags.DEFINE_string("prune_criterion", _DEFAULTS.prune_criterion, "magnitude or random.")
flags.DEFINE_list("exclude", [], "Layer names never wrapped or pruned.")
flags.DEFINE_list("controls", [], "Controls to train on the same masks after the IMP rounds: "
                  "random_reinit, random_prune, one_shot.")
flags.DEFINE_integer("replicates", 1, "Independent runs with seeds seed, seed+1, ... (one folder each).")
flags.DEFINE_float("conv_prune_fraction", None,
                   "Rate for convolution kernels (default: --prune_fraction).")
flags.DEFINE_string("schedule", _DEFAULTS.schedule,
                    "geometric (IMP: --prune_fraction of what remains per round), or TF-MOT's "
                    "polynomial / constant sparsity with rounds as steps.")
flags.DEFINE_float("final_sparsity", _DEFAULTS.final_sparsity,
                   "Target sparsity of the polynomial and constant schedules.")
flags.DEFINE_float("power", _DEFAULTS.power, "Exponent of the polynomial schedule.")
flags.DEFINE_string("structure", _DEFAULTS.structure,
                    "unstructured, neuron or filter (output units), channel (input channels), "
                    "block (--block_shape) or n_of_m (--n_of_m).")
flags.DEFINE_string("structure_norm", _DEFAULTS.structure_norm,
                    "l1 or l2: the norm that ranks neurons, filters and channels.")
flags.DEFINE_string("block_shape", "x".join(map(str, _DEFAULTS.block_shape)),
                    "Block size over the [fan_in, out] kernel view, e.g. 1x4.")
flags.DEFINE_string("block_pooling", _DEFAULTS.block_pooling, "avg or max magnitude of a block.")
flags.DEFINE_list("n_of_m", [str(v) for v in _DEFAULTS.n_of_m],
                  "N,M: keep N of every M consecutive input weights, e.g. 2,4.")
flags.DEFINE_string("initial_mask", None,
                    "An .npz of 0/1 masks (e.g. a round's mask.npz) that round 0 starts from.")
flags.DEFINE_string("reset", _DEFAULTS.reset, "init (theta_0) or rewind (theta_k).")
flags.DEFINE_string("rewind_step", str(_DEFAULTS.rewind_step),
                    "k for --reset=rewind, in iterations (500) or epochs (2ep).")
# Training.
flags.DEFINE_string("train_steps", str(_DEFAULTS.train_steps),
                    "Training length per round, in iterations (50000) or epochs (160ep).")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Training batch size.")
flags.DEFINE_string("optimizer", _DEFAULTS.optimizer, "adam or sgd.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Initial learning rate.")
flags.DEFINE_float("momentum", _DEFAULTS.momentum, "SGD momentum.")
flags.DEFINE_bool("nesterov", _DEFAULTS.nesterov, "Nesterov momentum for SGD.")
flags.DEFINE_list("lr_milestones", [], "Iterations (or epochs: 80ep) at which the learning rate drops.")
flags.DEFINE_float("lr_gamma", _DEFAULTS.lr_gamma, "Learning-rate factor at each milestone.")
flags.DEFINE_string("warmup_steps", str(_DEFAULTS.warmup_steps),
                    "Linear learning-rate warmup, in iterations or epochs.")
flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay,
                   "L2 weight decay on the effective (masked) weights.")
flags.DEFINE_bool("augment", _DEFAULTS.augment,
                  "Pad by 4, random crop and random horizontal flip (CIFAR).")
flags.DEFINE_integer("eval_every", _DEFAULTS.eval_every, "Evaluate every this many iterations.")
flags.DEFINE_integer("eval_batch_size", _DEFAULTS.eval_batch_size, "Evaluation batch size.")
flags.DEFINE_integer("checkpoint_every", _DEFAULTS.checkpoint_every,
                     "Checkpoint every this many iterations.")
flags.DEFINE_integer("steps_per_call", _DEFAULTS.steps_per_call,
                     "Training steps run inside one tf.function call.")
flags.DEFINE_bool("jit_compile", None,
                  "Compile the training step with XLA (default: yes, except convolutional networks "
                  "on CPU, where TensorFlow's oneDNN kernels are faster; see benchmarks/README.md).")
flags.DEFINE_string("precision", _DEFAULTS.precision,
                    "float32, mixed_float16 (with loss scaling) or mixed_bfloat16.")
flags.DEFINE_string("strategy", _DEFAULTS.strategy,
                    "default, mirrored (all local devices), multi_worker (TF_CONFIG) or tpu.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of initialisation, hold-out and pruning.")
flags.DEFINE_integer("data_seed", None, "Seed of the training data order (default: --seed).")
flags.DEFINE_bool("deterministic", _DEFAULTS.deterministic, "Deterministic TensorFlow ops.")
flags.DEFINE_string("on_nan", _DEFAULTS.on_nan,
                    "On a non-finite loss: stop (exit 1) or skip_round (record it, go on).")
flags.DEFINE_bool("model_summary", False, "Print the model's prunable weights and counts, then stop.")
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
    values = {name: FLAGS[name].value for name in ExperimentConfig.__dataclass_fields__
              if name in FLAGS}
    try:
        block_shape = tuple(int(v) for v in FLAGS.block_shape.lower().split("x"))
    except ValueError:
        raise ConfigError("block_shape", f"must look like 1x4, got {FLAGS.block_shape!r}")
    values.update(hidden=_ints("hidden"), lr_milestones=tuple(FLAGS.lr_milestones),
                  n_of_m=_ints("n_of_m"), block_shape=block_shape, exclude=tuple(FLAGS.exclude),
                  controls=tuple(FLAGS.controls))
    return ExperimentConfig(**values)


def config():
    """The flags' config, validated; bad input exits with status 2."""
    with cli.usage_errors():
        return config_from_flags()


def prepare(kind):
    """The prepared replicates of the flags' config; bad input exits with status 2 before TF loads."""
    with cli.usage_errors():
        return experiment.prepare_replicates(config_from_flags(), kind)
