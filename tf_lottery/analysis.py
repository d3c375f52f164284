"""Studies of trained tickets: linear mode connectivity, rewind-point search, mask overlap.

Linear mode connectivity (Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode
Connectivity and the Lottery Ticket Hypothesis"): two copies of a subnetwork
are trained from the same starting weights with two data orders, giving
effective weights theta_A and theta_B (weight * mask). Along the straight line
theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B, alpha in [0, 1], every
variable that sets what the network computes is interpolated: trainable
weights and normalisation statistics alike; pruned positions stay zero. Then

  instability        = max_alpha E(alpha) - (E(0) + E(1)) / 2
                       (E = test error at the evaluated points; the paper's
                       error barrier height; 0 means linearly connected)
  l2_distance        = ||theta_A - theta_B||_2
  relative_distance  = l2_distance / ((||theta_A||_2 + ||theta_B||_2) / 2)

where the norms run over all trainable effective weights (kernels times masks,
biases, normalisation scales and offsets), not the normalisation statistics.

The arithmetic is in pure functions over {name: array} dicts and an evaluate
callable; the functions after them train and evaluate Keras models.
"""

import dataclasses
import math
import pathlib
import shlex

import numpy as np

from tf_lottery import atomic
from tf_lottery import results
from tf_lottery.config import ConfigError, ExperimentConfig


def interpolate(weights_a, weights_b, alpha):
    """{key: (1 - alpha) * a + alpha * b} of two weight dicts with the same keys and shapes."""
    _check_same_layout(weights_a, weights_b)
    return {k: ((1.0 - alpha) * np.asarray(weights_a[k], np.float64)
                + alpha * np.asarray(weights_b[k], np.float64)).astype(np.asarray(weights_a[k]).dtype)
            for k in weights_a}


def _check_same_layout(a, b):
    if set(a) != set(b):
        raise ValueError(f"weight sets differ in keys: {', '.join(sorted(set(a) ^ set(b)))}")
    for k in a:
        if np.shape(a[k]) != np.shape(b[k]):
            raise ValueError(f"'{k}' has shape {np.shape(a[k])} in one set "
                             f"and {np.shape(b[k])} in the other")


def interpolation_path(weights_a, weights_b, evaluate, points=30):
    """[{'alpha', 'error'}] at `points` evenly spaced alphas from 0 (a) to 1 (b).

    The error at alpha is evaluate((1 - alpha) * a + alpha * b).
    """
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    return [{"alpha": float(alpha), "error": float(evaluate(interpolate(weights_a, weights_b, alpha)))}
            for alpha in np.linspace(0.0, 1.0, points)]


def instability(errors):
    """Max error along the path minus the mean error of its two end points (errors in path order)."""
    errors = [float(e) for e in errors]
    return max(errors) - (errors[0] + errors[-1]) / 2


def l2_norm(weights, keys=None):
    """The L2 norm of all arrays of `weights` (of `keys` only, if given) taken as one vector."""
    keys = sorted(weights) if keys is None else sorted(keys)
    return math.sqrt(sum(float(np.sum(np.square(np.asarray(weights[k], np.float64)))) for k in keys))


def l2_distance(weights_a, weights_b, keys=None):
    """||a - b||_2 over the arrays named by `keys` (all by default)."""
    _check_same_layout(weights_a, weights_b)
    keys = sorted(weights_a) if keys is None else keys
    return l2_norm({k: np.asarray(weights_a[k], np.float64) - np.asarray(weights_b[k], np.float64)
                    for k in keys})


def relative_distance(weights_a, weights_b, keys=None):
    """||a - b|| divided by the mean of ||a|| and ||b|| (0 when both are zero)."""
    scale = (l2_norm(weights_a, keys) + l2_norm(weights_b, keys)) / 2
    distance = l2_distance(weights_a, weights_b, keys)
    return distance / scale if scale else 0.0


def linear_mode_connectivity(weights_a, weights_b, evaluate, points=30, distance_keys=None):
    """The path's errors, instability and distances of two trained weight sets (see the module doc)."""
    path = interpolation_path(weights_a, weights_b, evaluate, points)
    errors = [p["error"] for p in path]
    return {
        "path": path,
        "end_errors": [errors[0], errors[-1]],
        "max_error": max(errors),
        "instability": instability(errors),
        "l2_distance": l2_distance(weights_a, weights_b, distance_keys),
        "relative_distance": relative_distance(weights_a, weights_b, distance_keys),
    }


def earliest_stable(rows, threshold):
    """The smallest 'iteration' of the rows whose instability is below `threshold`, or None."""
    stable = [row["iteration"] for row in rows if row["instability"] < threshold]
    return min(stable) if stable else None


def mask_overlap(mask_a, mask_b):
    """Jaccard overlap of the kept weights (1s) of two masks, per tensor and over all of them.

    Each entry holds the counts of ones in a and b, their intersection and
    union, `jaccard` = intersection / union (1 when both are empty) and
    `chance`: the overlap two independent random masks with the same counts
    would have (ratio of the expected intersection and union).
    """
    _check_same_layout(mask_a, mask_b)
    layers = {k: _overlap(np.asarray(mask_a[k]) != 0, np.asarray(mask_b[k]) != 0)
              for k in sorted(mask_a)}
    total = {f: sum(layer[f] for layer in layers.values())
             for f in ("size", "ones_a", "ones_b", "intersection", "union")}
    return {"layers": layers, "overall": {**total, **_ratios(**total)}}


def _overlap(a, b):
    counts = {"size": int(a.size), "ones_a": int(a.sum()), "ones_b": int(b.sum()),
              "intersection": int(np.sum(a & b)), "union": int(np.sum(a | b))}
    return {**counts, **_ratios(**counts)}


def _ratios(size, ones_a, ones_b, intersection, union):
    expected_shared = ones_a * ones_b / size if size else 0.0
    expected_union = ones_a + ones_b - expected_shared
    return {"jaccard": intersection / union if union else 1.0,
            "chance": expected_shared / expected_union if expected_union else 1.0}


def format_overlap(overlap, name_a="a", name_b="b"):
    """A plain-text table of mask_overlap()."""
    lines = [f"mask a: {name_a}", f"mask b: {name_b}",
             f"{'weight':<28} {'ones a':>10} {'ones b':>10} {'shared':>10} {'jaccard':>8} {'chance':>8}"]
    rows = list(overlap["layers"].items()) + [("overall", overlap["overall"])]
    for key, o in rows:
        lines.append(f"{key:<28} {o['ones_a']:>10,} {o['ones_b']:>10,} {o['intersection']:>10,} "
                     f"{o['jaccard']:>8.4f} {o['chance']:>8.4f}")
    return "\n".join(lines)


def read_mask(path, field):
    """{key: 0/1 array} from an .npz mask file; ConfigError naming `field` if it cannot be used."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(field, f"{path} does not exist")
    try:
        masks = atomic.read_npz(path)
    except (OSError, ValueError) as error:
        raise ConfigError(field, f"{path}: not a readable .npz file ({error})") from None
    for key, mask in masks.items():
        if not np.all((mask == 0) | (mask == 1)):
            raise ConfigError(field, f"{path}: '{key}' holds values other than 0 and 1")
    return masks


def round_mask_path(experiment_dir, round_index):
    """The mask.npz of a finished round; ConfigError if the round is not finished."""
    path = results.round_dir(experiment_dir, round_index) / "mask.npz"
    if not path.is_file():
        raise ConfigError("round", f"{path.parent} is not a finished round of {experiment_dir}")
    return path


def overlap_sources(mask_a=None, mask_b=None, experiment_dirs=(), round_index=None, round_b=None):
    """The two mask files to compare: --mask_a/--mask_b, or round(s) of one or two experiment folders."""
    if mask_a or mask_b:
        if not (mask_a and mask_b) or experiment_dirs:
            raise ConfigError("mask_a", "give both --mask_a and --mask_b, and no --experiment_dir")
        return pathlib.Path(mask_a), pathlib.Path(mask_b)
    if round_index is None:
        raise ConfigError("round", "is required with --experiment_dir (or give --mask_a and --mask_b)")
    round_b = round_index if round_b is None else round_b
    if len(experiment_dirs) == 2 or (len(experiment_dirs) == 1 and round_b != round_index):
        return (round_mask_path(experiment_dirs[0], round_index),
                round_mask_path(experiment_dirs[-1], round_b))
    raise ConfigError("experiment_dir", "give two folders (and --round), or one folder with "
                      "--round and a different --round_b, or --mask_a and --mask_b")


def overlap(mask_a=None, mask_b=None, experiment_dirs=(), round_index=None, round_b=None):
    """Reads the two masks named as in overlap_sources and returns (path_a, path_b, mask_overlap)."""
    path_a, path_b = overlap_sources(mask_a, mask_b, experiment_dirs, round_index, round_b)
    a, b = read_mask(path_a, "mask_a"), read_mask(path_b, "mask_b")
    try:
        return path_a, path_b, mask_overlap(a, b)
    except ValueError as error:
        raise ConfigError("mask_b", f"{path_b} does not match {path_a}: {error}") from None


def int_list(values, field, count=None):
    """Integers >= 0 from a list of strings (a comma-separated flag); ConfigError naming `field`."""
    given = ",".join(map(str, values))
    try:
        numbers = [int(str(v).strip()) for v in values]
    except ValueError:
        raise ConfigError(field, f"must be comma-separated integers, got {given}") from None
    if not numbers or any(n < 0 for n in numbers):
        raise ConfigError(field, f"must be integers >= 0, got {given}")
    if count is not None and len(numbers) != count:
        raise ConfigError(field, f"must be {count} integers, got {given}")
    return numbers


def lmc_options(data_seeds, points):
    """The two data seeds as ints, checked with the number of points; ConfigError naming the flag."""
    seeds = int_list(data_seeds, "data_seed", count=2)
    if seeds[0] == seeds[1]:
        raise ConfigError("data_seed", f"must be two different seeds, got {seeds[0]} twice")
    if points < 3:
        raise ConfigError("points", f"must be >= 3 (the two end points and one between), got {points}")
    return seeds


def _check_round(prepared, round_index):
    if round_index is None:
        raise ConfigError("round", "is required")
    summary = results.read_summary(prepared.directory)
    records = {r["round"]: r for r in summary["rounds"]}
    if round_index not in records:
        raise ConfigError("round", f"must be a finished round of {prepared.directory} "
                          f"({', '.join(map(str, sorted(records))) or 'none yet'}), got {round_index}")
    if records[round_index].get("failed"):
        raise ConfigError("round", f"round {round_index} of {prepared.directory} failed; pick another")
    return records[round_index]


def reset_point_name(config):
    """'theta_0', or 'theta_k' for a rewind experiment."""
    return "theta_0" if config.reset == "init" else f"theta_{config.rewind_step}"


def lottery_command(config, experiment_dir, **overrides):
    """The binaries.lottery command line that reruns `config` with `overrides` next to `experiment_dir`.

    Every field that differs from ExperimentConfig's default becomes a flag;
    the new folder goes beside the old one (--root_dir, auto-named).
    """
    values = dataclasses.replace(config, **overrides).to_dict()
    defaults = ExperimentConfig().to_dict()
    args = ["python", "-m", "binaries.lottery"]
    for name, value in values.items():
        if name in ("experiment_dir", "root_dir") or value == defaults[name] or value is None:
            continue
        if isinstance(value, bool):
            args.append(f"--{name}" if value else f"--no{name}")
        elif name == "block_shape":
            args.append(f"--{name}={'x'.join(map(str, value))}")
        elif isinstance(value, list):
            args.append(f"--{name}={','.join(map(str, value))}")
        else:
            args.append(f"--{name}={value}")
    args.append(f"--root_dir={pathlib.Path(experiment_dir).parent}")
    return shlex.join(args)


def format_lmc(record):
    """A plain-text report of one lmc() record: the path, the instability and the distances."""
    lines = [f"round {record['round']} ({100 * record['remaining_fraction']:.2f}% remaining), "
             f"trained from {record['start']} with data seeds {record['data_seeds'][0]} and "
             f"{record['data_seeds'][1]}, {len(record['path'])} points",
             f"{'alpha':>7}  {'test error':>10}"]
    lines += [f"{p['alpha']:>7.3f}  {p['error']:>10.4f}" for p in record["path"]]
    lines += [f"instability (max error on the path - mean end-point error): {record['instability']:.4f}",
              f"end-point errors: {record['end_errors'][0]:.4f}, {record['end_errors'][1]:.4f}; "
              f"max error: {record['max_error']:.4f}",
              f"L2 distance: {record['l2_distance']:.4f} "
              f"(relative to the mean weight norm: {record['relative_distance']:.4f})"]
    return "\n".join(lines)


def format_rewind_search(search):
    """A plain-text table of a rewind_search() result, its verdict and the IMP command."""
    lines = [f"round {search['round']} mask ({100 * search['remaining_fraction']:.2f}% remaining), "
             f"data seeds {search['data_seeds'][0]} and {search['data_seeds'][1]}, "
             f"{search['points']} points, threshold {search['threshold']}",
             f"{'rewind it':>9}  {'instability':>11}  {'error A':>8}  {'error B':>8}  "
             f"{'max error':>9}  {'L2 dist':>8}  {'rel dist':>8}"]
    for row in search["candidates"]:
        lines.append(f"{row['iteration']:>9}  {row['instability']:>11.4f}  "
                     f"{row['end_errors'][0]:>8.4f}  {row['end_errors'][1]:>8.4f}  "
                     f"{row['max_error']:>9.4f}  "
                     f"{row['l2_distance']:>8.3f}  {row['relative_distance']:>8.4f}")
    k = search["earliest_stable"]
    if k is None:
        lines.append(f"no candidate is stable (instability < {search['threshold']}); "
                     "try later rewind points")
    else:
        lines.append(f"earliest stable rewind point (instability < {search['threshold']}): "
                     f"iteration {k}")
        lines.append(f"run IMP with it: {search['command']}" if search["command"] else
                     "the experiment already resets to theta_0, which is stable: no rewinding needed")
    return "\n".join(lines)


# TensorFlow is imported in the functions below, once the cheap checks have passed.

def _variables(model):
    """{path: (variable, mask or None)}: every variable that sets what the network computes."""
    from tf_lottery import model_ops
    found = {}
    for wrapper in model_ops.wrappers(model):
        masks = {id(w): m for _, w, m in wrapper.masked_weights}
        for weight in wrapper.layer.weights:
            found[weight.path] = (weight, masks.get(id(weight)))
    for path, variable in model_ops.unwrapped_variables(model).items():
        found[path] = (variable, None)
    return found


def get_state(model, effective=True):
    """{path: numpy array} of what sets the network's function; masked weights times masks by default."""
    import keras
    state = {}
    for path, (variable, mask) in _variables(model).items():
        if effective and mask is not None:
            variable = variable * keras.ops.cast(mask, variable.dtype)
        state[path] = keras.ops.convert_to_numpy(variable)
    return state


def set_state(model, state):
    """Assigns a get_state() dict to the model's variables (masks are untouched)."""
    variables = _variables(model)
    missing = sorted(set(variables) - set(state))
    if missing:
        raise ValueError(f"state has no value for {', '.join(missing)}")
    for path, (variable, _) in variables.items():
        variable.assign(state[path])


def trainable_keys(model):
    """The get_state() keys of trainable variables (what the distances measure)."""
    return [path for path, (v, _) in _variables(model).items() if v.trainable]


def stability(model, splits, training_config, start, data_seeds, points=30, log_name="copy"):
    """Trains two copies of `model` from the state `start` with two data orders; walks the line between.

    The model keeps its masks; a fresh optimizer is used per copy. Returns
    linear_mode_connectivity() of the two trained effective weight sets, with
    test error as the error.
    """
    from tf_lottery import training
    trained, trainer = [], None
    for seed in data_seeds:
        set_state(model, start)
        trainer = training.Trainer(model, splits, dataclasses.replace(training_config, data_seed=seed))
        trainer.train(name=f"{log_name} with data seed {seed}")
        trained.append(get_state(model))

    def test_error(state):
        set_state(model, state)
        return 1.0 - trainer.evaluate()["test_accuracy"]

    return linear_mode_connectivity(trained[0], trained[1], test_error, points,
                                    distance_keys=trainable_keys(model))


def analysis_dir(experiment_dir):
    """Where analyses of an experiment write their files."""
    return pathlib.Path(experiment_dir) / "analysis"


def lmc_path(experiment_dir, round_index):
    """The JSON file lmc() writes."""
    return analysis_dir(experiment_dir) / f"lmc_round_{round_index:02d}.json"


def rewind_search_path(experiment_dir, round_index):
    """The JSON file rewind_search() writes."""
    return analysis_dir(experiment_dir) / f"rewind_search_round_{round_index:02d}.json"


def lmc(prepared, round_index, data_seeds=("1", "2"), points=30):
    """Linear mode connectivity of round `round_index`'s subnetwork trained from its reset point.

    The round's masks, weights reset to the experiment's reset point (theta_0,
    or theta_k when rewinding, normalisation statistics included), two copies
    trained with data seeds `data_seeds`; the record (see the module doc) is
    also written to analysis/lmc_round_XX.json.
    """
    seeds = lmc_options(data_seeds, points)
    record = _check_round(prepared, round_index)
    from tf_lottery import experiment
    from tf_lottery import imp
    model = experiment.restore_round(prepared, round_index)
    imp.ResetPoint(model, prepared.directory).restore()
    result = stability(model, prepared.splits, prepared.config.training(), get_state(model), seeds,
                       points, log_name=f"round {round_index}")
    result = {"round": round_index, "remaining_fraction": record["remaining_fraction"],
              "start": reset_point_name(prepared.config), "data_seeds": seeds, **result}
    atomic.write_json(lmc_path(prepared.directory, round_index), result)
    return result


def initial_model(prepared):
    """The experiment's wrapped model with round 0's masks and its weights at theta_0.

    theta_0 comes from the experiment's own reset point when it resets to
    theta_0; a rewind experiment's reset point is theta_k, so its theta_0 is
    rebuilt from the seeded initialiser.
    """
    from tf_lottery import experiment
    from tf_lottery import imp
    from tf_lottery import model_ops
    from tf_lottery import models
    config, splits = prepared.config, prepared.splits
    model = experiment.restore_round(prepared, 0)
    if config.reset == "init":
        imp.ResetPoint(model, prepared.directory).restore()
        return model
    options = {"hidden": config.hidden} if config.model == "lenet" else {}
    fresh = model_ops.wrap(models.build(config.model, input_shape=splits.input_shape,
                                        num_classes=splits.num_classes, seed=config.seed, **options),
                           exclude=config.exclude)
    set_state(model, get_state(fresh, effective=False))
    return model


def rewind_points(prepared, iterations):
    """(model, {k: state}) of the dense network at iteration k of a fresh round 0, cached on disk.

    The states are kept in analysis/rewind_points/iteration_KKKKKK.npz.

    Missing iterations are captured in one run of the experiment's training
    from theta_0, stopped at the largest missing k (the data order and the
    learning-rate schedule depend only on the iteration, so this is the start
    of the full run).
    """
    from tf_lottery import training
    cache = analysis_dir(prepared.directory) / "rewind_points"
    paths = {k: cache / f"iteration_{k:06d}.npz" for k in iterations}
    missing = sorted(k for k, path in paths.items() if not path.is_file())
    model = initial_model(prepared)
    if missing:
        def capture(k):
            atomic.write_npz(paths[k], get_state(model, effective=False))

        config = dataclasses.replace(prepared.config.training(), train_steps=max(missing))
        if config.train_steps == 0:
            capture(0)
        else:
            training.Trainer(model, prepared.splits, config).train(
                hooks={k: capture for k in missing}, name="round 0 for rewind points")
    return model, {k: atomic.read_npz(path) for k, path in paths.items()}


def _rewind_command(prepared, best):
    """The lottery command that resets to the stable point `best`; None if there is none or no change."""
    if best is None or (best == 0 and prepared.config.reset == "init"):
        return None
    if best == 0:
        return lottery_command(prepared.config, prepared.directory, reset="init", rewind_step=0)
    return lottery_command(prepared.config, prepared.directory, reset="rewind", rewind_step=best)


def rewind_search(prepared, round_index, candidates, threshold=0.02, data_seeds=("1", "2"), points=30):
    """Instability of round `round_index`'s mask rewound to each candidate iteration, earliest stable.

    For each k: the round's masks on the weights of iteration k of round 0
    (see rewind_points), two copies trained with `data_seeds`, and the line
    between them. Writes analysis/rewind_search_round_XX.json and returns it,
    with the lottery command that runs IMP rewinding to the earliest stable k.
    """
    seeds = lmc_options(data_seeds, points)
    iterations = sorted(set(int_list(candidates, "candidates")))
    steps = prepared.config.train_steps
    if iterations[-1] > steps:
        raise ConfigError("candidates",
                          f"must be iterations in [0, train_steps={steps}], got {iterations[-1]}")
    if not threshold > 0:
        raise ConfigError("threshold", f"must be > 0, got {threshold}")
    record = _check_round(prepared, round_index)
    masks = read_mask(round_mask_path(prepared.directory, round_index), "round")
    from tf_lottery import model_ops
    model, states = rewind_points(prepared, iterations)
    model_ops.set_masks(model, masks)
    rows = []
    for k in iterations:
        result = stability(model, prepared.splits, prepared.config.training(), states[k], seeds, points,
                           log_name=f"rewind to {k}")
        rows.append({"iteration": k, **result})
    best = earliest_stable(rows, threshold)
    search = {"round": round_index, "remaining_fraction": record["remaining_fraction"],
              "threshold": threshold, "data_seeds": seeds, "points": points, "candidates": rows,
              "earliest_stable": best, "command": _rewind_command(prepared, best)}
    atomic.write_json(rewind_search_path(prepared.directory, round_index), search)
    return search
