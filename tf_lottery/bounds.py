"""Upper bounds of the settings, each from what the code does with the value, and the checks that need
more than one setting, the data (the training split's size, the input shape) or the kernels' sizes.

Every check raises ConfigError naming the flag. `check_config` runs on
every ExperimentConfig; `check_data` once the data is read (experiment.prepare
and the study's plan), before anything trains or is written. Nothing here
imports TensorFlow.
"""

import math
import os

from tf_lottery.pruning.masks import prune_count
from tf_lottery.settings import ConfigError

MAX_SEED = 2**32 - 1  # keras.utils.set_random_seed seeds NumPy's legacy generator, which takes 0..2**32-1
MAX_ITERATIONS = 2**24  # the learning-rate schedule compares steps in float32: exact up to 2**24
MAX_ROUNDS = 4095  # controls.draw_seed keeps the round in 12 bits
MAX_SIZE = 2**31 - 1  # TensorFlow's int32 sizes: batch sizes, layer widths, block sides
MAX_WIDTH = 16.0  # --width: 16 times the zoo's widths (a stated cap)
MAX_REPLICATES = 1000  # --replicates: each one is a full experiment folder (a stated cap)
LARGEST_TENSOR = 2**31  # weights of one kernel, for the rounds bound before the kernels are known
# Training keeps about eight float32 copies of every weight: itself, its mask, its gradient, Adam's
# two slots, the reset and rewind points and the checkpoint being written.
BYTES_PER_WEIGHT = 8 * 4


def at_most(limit, unit=""):
    """A setting's check (settings.setting): value <= limit (step counts in epochs are checked once
    they are iterations)."""
    return (lambda v: isinstance(v, str) or v <= limit), f"must be at most {limit:,}{unit}"


def positive(value):
    """A step count (iterations, or epochs like '2.5ep') is > 0."""
    return float(value[:-2]) > 0 if isinstance(value, str) else value > 0


def unit_interval(low_open, high_open=True):
    """A rate's check: inside (0 or [0, 1) or 1]."""
    def inside(v):
        return (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
    return inside


def within(low, high, unit=""):
    """A count's checks: value >= low, then value <= high."""
    return (lambda v: v >= low, f"must be >= {low}"), at_most(high, unit)


def over(low, high, unit=""):
    """A count's checks: value > low, then value <= high."""
    return (lambda v: isinstance(v, str) or v > low, f"must be > {low}"), at_most(high, unit)


def physical_memory():
    """Bytes of memory of this machine (None if the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def pruning_rounds(tensors, limit=MAX_ROUNDS):
    """(R, why): the last round up to `limit` in which geometric pruning still removes a weight while
    leaving every tensor one, and what happens in round R + 1 (None if R == limit).

    `tensors` is [(name, weights, rate)]; each round removes prune_count(remaining, rate) of a tensor.
    """
    remaining = {name: size for name, size, rate in tensors if rate > 0}
    rates = {name: rate for name, _, rate in tensors if rate > 0}
    if not remaining:  # nothing is pruned: no bound here (a model with no prunable layer is refused elsewhere)
        return limit, None
    for round_index in range(1, limit + 1):
        drops = {name: prune_count(n, rates[name]) for name, n in remaining.items()}
        empty = [name for name, n in remaining.items() if n - drops[name] < 1]
        if empty:
            return round_index - 1, f"round {round_index} would leave {empty[0]} without weights"
        if not any(drops.values()):
            kept = ", ".join(f"{name} at {n:,}" for name, n in remaining.items())
            return round_index - 1, f"round {round_index} would remove nothing ({kept} weights)"
        remaining = {name: n - drops[name] for name, n in remaining.items()}
    return limit, None


def _rates(pruning):
    rates = {pruning.fraction, pruning.output_rate}
    if pruning.conv_fraction is not None:
        rates.add(pruning.conv_fraction)
    return sorted(rate for rate in rates if rate > 0)


def _check_rounds(rounds, tensors, kernels):
    last, why = pruning_rounds(tensors)
    if rounds > last:
        raise ConfigError("rounds", f"must be at most {last} with these pruning rates and {kernels}: "
                                    f"{why}, got {rounds}")


def check_config(config):
    """The bounds that need settings of more than one group (any dataset, any model)."""
    run, lottery, training = config.run, config.lottery, config.training
    if isinstance(training.train_steps, int) and isinstance(lottery.rewind_step, int) and not (
            0 <= lottery.rewind_step <= training.train_steps):
        raise ConfigError("rewind_step", f"must be in [0, train_steps={training.train_steps}], "
                                         f"got {lottery.rewind_step!r}")
    if lottery.reset in ("lr_rewind", "finetune") and lottery.rewind_step == training.train_steps:
        raise ConfigError("rewind_step", f"must be below train_steps={training.train_steps} with "
                                         f"--reset={lottery.reset}: rounds train train_steps - "
                                         "rewind_step iterations")
    if run.seed + lottery.replicates - 1 > MAX_SEED:
        raise ConfigError("replicates", f"seeds {run.seed}..{run.seed + lottery.replicates - 1} go past "
                                        f"{MAX_SEED:,}, got {lottery.replicates}")
    if config.pruning.schedule == "geometric":
        tensors = [(f"a tensor pruned at {rate:g}", LARGEST_TENSOR, rate) for rate in _rates(config.pruning)]
        _check_rounds(lottery.rounds, tensors, f"kernels of up to {LARGEST_TENSOR:,} weights")


def _lenet_kernels(config, input_shape, num_classes):
    """[(key, fan_in, units)] of the zoo LeNet's kernels, as models.lenet builds them."""
    model = config.model
    widths = [max(1, int(round(units * model.width))) for units in model.hidden]
    fan_in = math.prod(input_shape)
    kernels = []
    for i, units in enumerate([*widths, num_classes]):
        name = f"fc{i + 1}" if i < len(widths) else "output"
        kernels.append((f"{name}/kernel", fan_in, units))
        fan_in = units
    return kernels


def check_lenet(config, input_shape, num_classes):
    """LeNet's size within this machine's memory, --exclude naming its layers, block_shape and rounds
    against its kernels, for inputs of `input_shape` in `num_classes` classes (before it is built)."""
    kernels = _lenet_kernels(config, input_shape, num_classes)
    layers = [key.split("/")[0] for key, _, _ in kernels]
    unknown = [name for name in config.pruning.dense_layers if name not in layers]
    if unknown:
        raise ConfigError("exclude", f"{unknown[0]} is not a layer of LeNet (its layers: {', '.join(layers)}), "
                                     f"got {','.join(config.pruning.dense_layers)}")
    parameters = sum((fan_in + 1) * units for _, fan_in, units in kernels)
    memory = physical_memory()
    if memory and parameters * BYTES_PER_WEIGHT > memory:
        layers = "-".join(str(n) for n in [kernels[0][1]] + [units for _, _, units in kernels])
        needed = parameters * BYTES_PER_WEIGHT / 1e9
        raise ConfigError("hidden", f"LeNet {layers} has {parameters:,} weights and biases, about "
                                    f"{needed:,.0f} GB to train ({BYTES_PER_WEIGHT} bytes each), more than "
                                    f"this machine's {memory / 1e9:.0f} GB, got {config.model.hidden!r}")
    check_kernels(config, kernels, "output/kernel", whose="this LeNet")


def check_kernels(config, kernels, output_key, conv_keys=(), whose="the model"):
    """block_shape and rounds against the kernels [(key, fan_in, out)] of the model, once they are
    known (a LeNet's from the data; any model's once it is built)."""
    pruning = config.pruning
    pruned = [(fan_in, units) for key, fan_in, units in kernels
              if key.split("/")[0] not in pruning.dense_layers]
    if pruning.structure == "block" and pruned:
        check_blocks(pruning.block_shape, pruned, whose)
    if (pruning.schedule, pruning.scope, pruning.structure) == ("geometric", "layer", "unstructured"):
        rates = pruning.fractions([key for key, _, _ in kernels], output_key, conv_keys)
        tensors = [(key, fan_in * units, rates[key]) for key, fan_in, units in kernels if key in rates]
        _check_rounds(config.lottery.rounds, tensors, f"{whose}'s kernels")


def check_blocks(block_shape, views, whose="the model"):
    """ConfigError naming block_shape if a side of the block is longer than that side of every pruned
    kernel's [fan_in, out] view (`views`): one block would already cover them all."""
    rows, cols = (max(side) for side in zip(*views))
    if block_shape[0] > rows or block_shape[1] > cols:
        raise ConfigError("block_shape", f"{block_shape[0]}x{block_shape[1]} is longer than every kernel "
                                         f"of {whose} in one side (the largest [fan_in, out] views have "
                                         f"{rows:,} rows and {cols:,} columns), got "
                                         f"{block_shape[0]}x{block_shape[1]}")


def check_data(config, splits, held_out=True):
    """The bounds that need the data: the batch within the training split, LeNet's size, layer names
    and rounds. Returns the number of training examples.

    `splits` hold the validation split out (experiment.prepare); with `held_out=False` they hold none
    out (a study checks its points on the data loaded once), and validation_size and train_size are
    checked against them here.
    """
    data_config, batch = config.data, config.training.batch_size
    count, held = splits.train_size, data_config.validation_size
    if not held_out:
        if held >= count:
            raise ConfigError("validation_size", f"must be below the {count:,} training examples of "
                                                 f"'{splits.name}', got {held}")
        count -= held
    wanted = data_config.train_size
    if wanted is not None and wanted < count:
        count = wanted
    elif wanted is not None and wanted > count:
        raise ConfigError("train_size", f"must be at most the {count:,} training examples of "
                                        f"'{splits.name}' left after the validation hold-out, got {wanted}")
    if batch > count:
        if wanted is not None:
            raise ConfigError("train_size", f"must be at least batch_size={batch} (the training batches "
                                            f"are drawn from it), got {wanted}")
        if held and count + held >= batch:
            raise ConfigError("validation_size", f"leaves {count:,} training examples, fewer than "
                                                 f"batch_size={batch}; hold out at most "
                                                 f"{count + held - batch:,}, got {held}")
        raise ConfigError("batch_size", f"must be at most the {count:,} training examples of "
                                        f"'{splits.name}', got {batch}")
    if config.model.name == "lenet":
        check_lenet(config, splits.input_shape, splits.num_classes)
    return count
