"""Linear mode connectivity of trained Keras tickets: the TensorFlow side of the ticket studies.

The state of a wrapped model (every variable that sets what it computes,
masked weights times their masks) as {name: array} dicts for the arithmetic
of `tf_lottery.analysis`; `stability` trains two copies and walks the line
between them; `lmc` and `rewind_search` run it on a round of an experiment
folder and write their records under analysis/ (`results.analyses`).

TensorFlow is imported on first use, so that `lmc` and `rewind_search` check
the round and their arguments (one-line errors) before it loads.
"""

import copy
import dataclasses
import pathlib

import numpy as np
from etils import epy

from tf_lottery import analysis
from tf_lottery import atomic
from tf_lottery import experiment
from tf_lottery import flags
from tf_lottery import results
from tf_lottery.results import analyses
from tf_lottery.results import checkpoints
from tf_lottery.settings import ConfigError

with epy.lazy_imports():
    import keras

    from tf_lottery import model_ops
    from tf_lottery import models
    from tf_lottery import training


def _variables(model):
    """{path: (variable, mask or None)}: every variable that sets what the network computes."""
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
    state = {}
    for path, (variable, mask) in _variables(model).items():
        if effective and mask is not None:
            variable = keras.ops.where(mask > 0, variable, keras.ops.zeros_like(variable))
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
    analysis.linear_mode_connectivity() of the two trained effective weight
    sets, with test error as the error, and under 'copies' each copy's
    early-stop iteration and test accuracy at early stop and at the end.
    """
    trained, trainer, copies = [], None, []
    for seed in data_seeds:
        set_state(model, start)
        trainer = training.Trainer(model, splits, dataclasses.replace(training_config, data_seed=seed))
        summary = trainer.train(name=f"{log_name} with data seed {seed}").summary()
        copies.append({"data_seed": seed, **copy_summary(summary)})
        trained.append(get_state(model))
    return {**line_between(model, trainer, trained[0], trained[1], points), "copies": copies}


def copy_summary(summary):
    """The fields of a trained copy's summary that the analyses record."""
    return {k: summary[k] for k in ("early_stop_iteration", "early_stop_test_accuracy", "final_test_accuracy")}


def line_between(model, trainer, state_a, state_b, points):
    """analysis.linear_mode_connectivity of two get_state() dicts of `model` (its masks as they are), with
    the test error of `trainer` as the error; the model is left holding state_b."""
    def test_error(state):
        set_state(model, state)
        return 1.0 - trainer.evaluate()["test_accuracy"]

    return analysis.linear_mode_connectivity(state_a, state_b, test_error, points,
                                             distance_keys=trainable_keys(model))


def check_round(prepared, round_index):
    """The summary record of a finished, not failed round; ConfigError naming `round` otherwise."""
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
    """The experiment's reset point: 'theta_k' for --reset=rewind, 'theta_0' for every other reset.

    Only rewind captures theta_k (imp.ImpBranch's hook at rewind_step); init,
    lr_rewind and finetune keep the theta_0 captured when round 0 starts
    (lr_rewind and finetune rounds start from trained weights, not from it).
    """
    lottery = config.lottery
    return f"theta_{lottery.rewind_step}" if lottery.reset == "rewind" else "theta_0"


def lmc(prepared, round_index, data_seeds=(1, 2), points=30):
    """Linear mode connectivity of round `round_index`'s subnetwork trained from its reset point.

    The round's masks, weights reset to the experiment's reset point
    (reset_point_name: theta_k with --reset=rewind, theta_0 otherwise, also for
    lr_rewind and finetune, whose rounds start from trained weights;
    normalisation statistics included), two copies trained with data seeds
    `data_seeds`; the record (see tf_lottery.analysis), whose 'start' names
    that point, is also written to analysis/lmc_round_XX.json.
    """
    seeds = [int(s) for s in data_seeds]
    record = check_round(prepared, round_index)
    model = experiment.restore_round(prepared, round_index)
    checkpoints.ResetPoint(model, prepared.directory).restore()
    result = stability(model, prepared.splits, prepared.config.resolved_training(), get_state(model),
                       seeds, points, log_name=f"round {round_index}")
    result = {"round": round_index, "remaining_fraction": record["remaining_fraction"],
              "start": reset_point_name(prepared.config), "data_seeds": seeds, **result}
    atomic.write_json(analyses.lmc_path(prepared.directory, round_index), result)
    return result


def initial_model(prepared):
    """The experiment's wrapped model with round 0's masks and its weights at theta_0.

    theta_0 comes from the experiment's own reset point when that is theta_0
    (every reset but rewind); a rewind experiment's reset point is theta_k, so
    its theta_0 is rebuilt from the seeded initialiser. A folder without round
    0's checkpoint (a pack of tools/pack_results.py keeps none) is rebuilt
    from the seeded initialiser too, with round 0's masks from its mask.npz.
    """
    config, splits = prepared.config, prepared.splits
    if not checkpoints.has_checkpoint(results.round_dir(prepared.directory, 0)):
        check_round(prepared, 0)
        model = experiment.initial_model(prepared)
        model_ops.set_masks(model, results.round_masks(prepared.directory, 0))
        return model
    model = experiment.restore_round(prepared, 0)
    if reset_point_name(config) == "theta_0":
        checkpoints.ResetPoint(model, prepared.directory).restore()
        return model
    fresh = model_ops.wrap(models.build(config.model.name, input_shape=splits.input_shape,
                                        num_classes=splits.num_classes, seed=config.run.seed,
                                        **config.model.options()),
                           exclude=config.pruning.dense_layers)
    set_state(model, get_state(fresh, effective=False))
    return model


def stopped_at(training_config, iterations):
    """The training config run for `iterations` only, with the same schedule.

    Learning-rate milestones and warmup past the end are simply not reached,
    so the config is copied without the checks a full run's config gets.
    """
    shortened = copy.copy(training_config)
    object.__setattr__(shortened, "train_steps", iterations)
    return shortened


def rewind_points(prepared, iterations):
    """(model, {k: state}) of the dense network at iteration k of a fresh round 0, cached on disk.

    The states are kept in analysis/rewind_points/iteration_KKKKKK.npz.

    Missing iterations are captured in one run of the experiment's training
    from theta_0, stopped at the largest missing k (the data order and the
    learning-rate schedule depend only on the iteration, so this is the start
    of the full run).
    """
    paths = {k: analyses.rewind_point_path(prepared.directory, k) for k in iterations}
    missing = sorted(k for k, path in paths.items() if not path.is_file())
    model = initial_model(prepared)
    if missing:
        def capture(k):
            atomic.write_npz(paths[k], get_state(model, effective=False))

        if max(missing) == 0:
            capture(0)
        else:
            config = stopped_at(prepared.config.resolved_training(), max(missing))
            training.Trainer(model, prepared.splits, config).train(
                hooks={k: capture for k in missing}, name="round 0 for rewind points")
    return model, {k: atomic.read_npz(path) for k, path in paths.items()}


def rewind_command(prepared, best):
    """The lottery command that resets to the stable point `best`; None if there is none or no change.

    The experiment's settings with the new reset, in a new folder beside this one.
    """
    if best is None or (best == 0 and prepared.config.lottery.reset == "init"):
        return None
    reset = {"reset": "init", "rewind_step": 0} if best == 0 else {"reset": "rewind", "rewind_step": best}
    return flags.command_line(prepared.config, experiment_dir=None,
                              root_dir=str(pathlib.Path(prepared.directory).parent), **reset)


def rewind_search(prepared, round_index, candidates, threshold=0.02, data_seeds=(1, 2), points=30):
    """Instability of round `round_index`'s mask rewound to each candidate iteration, earliest stable.

    For each k: the round's masks on the weights of iteration k of round 0
    (see rewind_points), two copies trained with `data_seeds`, their test
    accuracy, and the line between them. Writes
    analysis/rewind_search_round_XX.json and returns it, with the point each
    criterion picks ('instability': the earliest stable k; 'accuracy': the k
    whose copies reach the highest mean test accuracy at early stop) and the
    lottery command that runs IMP rewinding to the earliest stable k.
    """
    seeds = [int(s) for s in data_seeds]
    iterations = sorted({int(k) for k in candidates})
    steps = prepared.config.training.train_steps
    outside = [k for k in iterations if not 0 <= k <= steps]
    if outside or not iterations:
        raise ConfigError("candidates", f"must be iterations in [0, train_steps={steps}], "
                                        f"got {outside[-1] if outside else 'none'}")
    if not threshold > 0:
        raise ConfigError("threshold", f"must be > 0, got {threshold}")
    record = check_round(prepared, round_index)
    masks = results.round_masks(prepared.directory, round_index)
    model, states = rewind_points(prepared, iterations)
    model_ops.set_masks(model, masks)
    rows = []
    for k in iterations:
        result = stability(model, prepared.splits, prepared.config.resolved_training(), states[k], seeds,
                           points, log_name=f"rewind to {k}")
        rows.append({"iteration": k, **result})
    for row in rows:
        row["test_accuracy"] = float(np.mean([c["early_stop_test_accuracy"] for c in row["copies"]]))
    best = analysis.earliest_stable(rows, threshold)
    picks = {"instability": best,
             "accuracy": max(rows, key=lambda row: (row["test_accuracy"], -row["iteration"]))["iteration"]}
    search = {"round": round_index, "remaining_fraction": record["remaining_fraction"],
              "threshold": threshold, "data_seeds": seeds, "points": points, "candidates": rows,
              "earliest_stable": best, "picks": picks, "command": rewind_command(prepared, best)}
    atomic.write_json(analyses.rewind_search_path(prepared.directory, round_index), search)
    return search
