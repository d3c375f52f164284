"""The inputs of binaries.analyze checked without TensorFlow: the flags each command reads, integer lists,
the LMC and rewind-search options, experiment folders, plotted rounds, taxonomy sizes and the masks to
compare. Every refusal is a ConfigError naming the flag.
"""

import pathlib

from tf_lottery import analysis
from tf_lottery import bounds
from tf_lottery import plots as plots_lib
from tf_lottery import results
from tf_lottery.settings import ConfigError

# The flags each command reads; any other flag of this binary given with it is refused.
COMMAND_FLAGS = {
    "plots": ("experiment_dir", "rounds_to_plot"),
    "lmc": ("experiment_dir", "data_dir", "round", "data_seeds", "points"),
    "rewind_search": ("experiment_dir", "data_dir", "round", "data_seeds", "points", "candidates",
                      "threshold"),
    "overlap": ("experiment_dir", "round", "round_b", "mask_a", "mask_b"),
    "study": ("study_dir", "claims"),
    "taxonomy": ("experiment_dir", "sizes"),
    "stability": ("experiment_dir", "data_dir", "round", "data_seeds", "points", "rewind_steps", "controls",
                  "train_steps", "checkpoint_every", "threshold", "accuracy_tolerance", "distance_tolerance"),
    "stability_report": ("experiment_dir",),
}
MAX_POINTS = 1001  # points on a line: steps of alpha down to 0.001


def check_command_flags(command, given):
    """ConfigError naming the first flag in `given` (the flags set on the command line) that
    `command` does not read."""
    for name in sorted(set(given) - set(COMMAND_FLAGS[command])):
        users = [c for c, names in COMMAND_FLAGS.items() if name in names]
        raise ConfigError(name, f"does not apply to {command} (only to {', '.join(users)})")


def int_list(values, field, count=None, most=None):
    """Integers >= 0 (and <= `most`) from a list of strings (a comma-separated flag); ConfigError naming
    `field`."""
    given = ",".join(map(str, values))
    try:
        numbers = [int(str(v).strip()) for v in values]
    except ValueError:
        raise ConfigError(field, f"must be comma-separated integers, got {given}") from None
    if not numbers or any(n < 0 for n in numbers):
        raise ConfigError(field, f"must be integers >= 0, got {given}")
    if most is not None and max(numbers) > most:
        raise ConfigError(field, f"must be integers up to {most:,}, got {given}")
    if count is not None and len(numbers) != count:
        raise ConfigError(field, f"must be {count} integers, got {given}")
    return numbers


def lmc_options(data_seeds, points):
    """The two data seeds as ints, checked with the number of points; ConfigError naming the flag."""
    seeds = int_list(data_seeds, "data_seeds", count=2, most=bounds.MAX_SEED)
    if seeds[0] == seeds[1]:
        raise ConfigError("data_seeds", f"must be two different seeds, got {seeds[0]} twice")
    if points < 3:
        raise ConfigError("points", f"must be >= 3 (the two end points and one between), got {points}")
    if points > MAX_POINTS:
        raise ConfigError("points", f"must be at most {MAX_POINTS:,} (steps of 0.001 along the line), "
                                    f"got {points}")
    return seeds


def rewind_options(prepared, candidates, threshold):
    """The candidate iterations as ints, inside round 0's training, and the threshold; ConfigError."""
    steps = prepared.config.training.train_steps
    iterations = int_list(candidates, "candidates")
    if max(iterations) > steps:
        raise ConfigError("candidates", f"must be iterations in [0, train_steps={steps}], "
                                        f"got {','.join(map(str, candidates))}")
    if not 0 < threshold <= 1:  # instability is a difference of error rates
        raise ConfigError("threshold", f"must be in (0, 1] (a difference of error rates), got {threshold}")
    return iterations


def experiment_folders(directories):
    """The experiment folders of --experiment_dir (replicates of seed_* folders for theirs), each once."""
    found = plots_lib.experiment_dirs(directories)
    seen = {}
    for directory in found:
        key = pathlib.Path(directory).resolve()
        if key in seen:
            raise ConfigError("experiment_dir", f"{directory} is given twice (as {seen[key]})")
        seen[key] = directory
    return found


def plotted_rounds(directories, rounds):
    """--rounds_to_plot as ints, each a round of every folder's summary (None: the default choice)."""
    if not rounds:
        return None
    numbers = int_list(rounds, "rounds_to_plot")
    for directory in directories:
        have = {r["round"] for r in results.read_summary(directory)["rounds"]}
        missing = [n for n in numbers if n not in have]
        if missing:
            raise ConfigError("rounds_to_plot", f"round {missing[0]} is not a round of {directory} "
                                                f"({', '.join(map(str, sorted(have))) or 'none yet'})")
    return numbers


def taxonomy_sizes(sizes):
    """--sizes as floats, percentages in (0, 100]."""
    try:
        numbers = [float(s) for s in sizes]
    except ValueError:
        raise ConfigError("sizes", f"must be percentages like 21.1,5.5, got {','.join(sizes)}") from None
    if not numbers or not all(0 < s <= 100 for s in numbers):  # NaN fails too
        raise ConfigError("sizes", f"must be percentages in (0, 100], got {','.join(sizes)}")
    return numbers


def _mask_file(path, field):
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(field, f"{path} does not exist")
    return path, results.read_masks(path, field)


def overlap_masks(mask_a=None, mask_b=None, experiment_dirs=(), round_index=None, round_b=None):
    """[(path, masks)] of the two masks to compare: --mask_a/--mask_b, or finished rounds of folders."""
    if mask_a is not None or mask_b is not None:
        if not (mask_a and mask_b) or experiment_dirs:
            raise ConfigError("mask_a", "give both --mask_a and --mask_b, and no --experiment_dir")
        return [_mask_file(mask_a, "mask_a"), _mask_file(mask_b, "mask_b")]
    if round_index is None:
        raise ConfigError("round", "is required with --experiment_dir (or give --mask_a and --mask_b)")
    round_b = round_index if round_b is None else round_b
    if not (len(experiment_dirs) == 2 or (len(experiment_dirs) == 1 and round_b != round_index)):
        raise ConfigError("experiment_dir", "give two folders (and --round), or one folder with "
                          "--round and a different --round_b, or --mask_a and --mask_b")
    rounds = [(experiment_dirs[0], round_index), (experiment_dirs[-1], round_b)]
    return [(results.mask_path(results.round_dir(d, r)), results.round_masks(d, r)) for d, r in rounds]


def mask_overlap(path_a, a, path_b, b):
    """analysis.mask_overlap of two masks; ConfigError naming mask_b if they do not match."""
    try:
        return analysis.mask_overlap(a, b)
    except ValueError as error:
        raise ConfigError("mask_b", f"{path_b} does not match {path_a}: {error}") from None


def overlap(mask_a=None, mask_b=None, experiment_dirs=(), round_index=None, round_b=None):
    """(path_a, path_b, analysis.mask_overlap) of the masks named as in overlap_masks."""
    (path_a, a), (path_b, b) = overlap_masks(mask_a, mask_b, experiment_dirs, round_index, round_b)
    return path_a, path_b, mask_overlap(path_a, a, path_b, b)
