"""Stability to pruning and to data order of a round's mask at several rewind points (the TensorFlow side).

Frankle, Dziugaite, Roy & Carbin (2019), "Stabilizing the Lottery Ticket
Hypothesis", explain rewinding by two distances (defined in
`tf_lottery.analysis`). For round R of an experiment folder, each rewind
point k and each mask (IMP's round-R mask, and random_prune's mask with the
same per-tensor counts for each `controls` entry), starting from theta_k,
the dense network's weights at iteration k of the experiment's own round 0
(`connectivity.rewind_points`, cached under analysis/rewind_points/):

- the full network is trained with data order A (once per k, shared by
  every round and mask);
- the subnetwork (the mask applied to theta_k) is trained with data order A
  and with data order B.

Each training runs `train_steps` iterations (the experiment's by default)
with a fresh optimizer and the experiment's learning-rate schedule from its
start, as IMP's rewinding rounds do, and is an ordinary resumable run in
its own folder (`results.analyses.stability_run_dir`): checkpoints while it
trains, so a killed analysis continues where it stopped; a finished run
(its metrics.json, with state.npz, its trained weights, beside it) is never
trained again. Per mask and k the row holds the test accuracy at early stop
(mean of the two copies), stability to pruning (copy A against the full
network), stability to data order (copy A against copy B), the linear mode
connectivity of the two copies (instability, on `points` points), and the
rewind point each criterion picks (`analysis.rewind_picks`). The distances
compare the weights at the end of training, not at the early-stop iteration.

`analyze(prepared, round, rewind_steps, ...)` checks its arguments (`plan`,
one-line ConfigErrors naming the flag, before TensorFlow loads) and runs;
the record is written to analysis/stability_round_XX.json.
"""

import dataclasses
import math
import shutil

import numpy as np
from absl import logging
from etils import epy

from tf_lottery import analysis
from tf_lottery import analyze_checks
from tf_lottery import atomic
from tf_lottery import bounds
from tf_lottery import connectivity
from tf_lottery import results
from tf_lottery.results import analyses
from tf_lottery.results import lock
from tf_lottery.settings import ConfigError

with epy.lazy_imports():
    from tf_lottery import controls as controls_lib
    from tf_lottery import model_ops
    from tf_lottery import training

IMP = "imp"
CONTROL = "random_prune"  # the only control with a mask of its own and IMP's per-tensor counts
MAX_TOLERANCE = 10.0      # --distance_tolerance: ten times the smallest distance
THETA_0_LOSS_TOLERANCE = 1e-4  # rebuilt theta_0 against the first evaluation of round 0's curve


@dataclasses.dataclass(frozen=True)
class Plan:
    """The checked arguments of one stability analysis."""
    round: int
    rewind_steps: tuple
    masks: tuple          # 'imp', then the controls' branches ('random_prune', 'random_prune.2', ...)
    data_seeds: tuple     # (A, B): the full network and copy A train with A
    points: int
    train_steps: int
    threshold: float
    accuracy_tolerance: float
    distance_tolerance: float
    checkpoint_every: int  # how often a training saves a checkpoint (results do not depend on it)

    def criteria(self):
        """The settings of the picks, as the record states them."""
        return {"threshold": self.threshold, "accuracy_tolerance": self.accuracy_tolerance,
                "distance_tolerance": self.distance_tolerance}


def _control_branches(controls):
    branches = []
    for text in controls:
        try:
            spec = controls_lib.parse_spec(text)
        except ValueError as error:
            raise ConfigError("controls", str(error)) from None
        if spec.name != CONTROL or spec.rounds:
            raise ConfigError("controls", f"stability compares IMP's mask with {CONTROL} (or a further draw, "
                                          f"{CONTROL}.2), got {text!r}")
        if spec.branch in branches:
            raise ConfigError("controls", f"{spec.branch} is listed twice")
        branches.append(spec.branch)
    return tuple(branches)


def _iterations(value, field):
    if not (isinstance(value, int) and 1 <= value <= bounds.MAX_ITERATIONS):
        raise ConfigError(field, f"must be an iteration count in [1, {bounds.MAX_ITERATIONS:,}], got {value}")
    return value


def _fraction(value, field, most):
    if not 0 <= value <= most:  # NaN fails too
        raise ConfigError(field, f"must be in [0, {most:g}], got {value}")
    return float(value)


def plan(prepared, round_index, rewind_steps, controls=(), data_seeds=(1, 2), points=30, train_steps=None,
         threshold=0.02, accuracy_tolerance=0.003, distance_tolerance=0.1, checkpoint_every=None):
    """The checked Plan; a ConfigError naming the argument (as its flag) otherwise. Reads, writes nothing.

    `round_index` must be a finished pruned round with a mask file; `rewind_steps`
    iterations of round 0 (at most the experiment's train_steps); `controls`
    entries random_prune[.DRAW]; `train_steps` (default: the experiment's) the
    length of every training; `threshold` the instability below which a
    point is stable, `accuracy_tolerance` (accuracy, absolute) and
    `distance_tolerance` (relative) the picks' tolerances; `checkpoint_every`
    (default: the experiment's) how often a training saves a checkpoint.
    """
    seeds = analyze_checks.lmc_options(data_seeds, points)
    connectivity.check_round(prepared, round_index)
    if round_index == 0:
        raise ConfigError("round", "must be a pruned round (1 or later); round 0 is the full network itself")
    results.round_masks(prepared.directory, round_index)
    experiment_steps = prepared.config.training.train_steps
    steps = analyze_checks.int_list([rewind_steps] if isinstance(rewind_steps, int) else rewind_steps,
                                    "rewind_steps")
    if max(steps) > experiment_steps:
        raise ConfigError("rewind_steps", f"must be iterations in [0, train_steps={experiment_steps}] of "
                                          f"round 0, got {','.join(map(str, steps))}")
    train_steps = _iterations(experiment_steps if train_steps is None else train_steps, "train_steps")
    checkpoint_every = _iterations(prepared.config.training.checkpoint_every if checkpoint_every is None
                                   else checkpoint_every, "checkpoint_every")
    if not 0 < threshold <= 1:
        raise ConfigError("threshold", f"must be in (0, 1] (a difference of error rates), got {threshold}")
    return Plan(round_index, tuple(sorted(set(steps))), (IMP,) + _control_branches(controls), tuple(seeds),
                points, train_steps, float(threshold), _fraction(accuracy_tolerance, "accuracy_tolerance", 1.0),
                _fraction(distance_tolerance, "distance_tolerance", MAX_TOLERANCE), checkpoint_every)


def analyze(prepared, round_index, rewind_steps, **options):
    """Checks the arguments (see plan) and runs the analysis; returns the record it writes."""
    return run(prepared, plan(prepared, round_index, rewind_steps, **options))


class _Runs:
    """The trainings of one analysis on one model: each in its folder, skipped once finished."""

    def __init__(self, prepared, model, plan_):
        self.prepared, self.model, self.plan = prepared, model, plan_
        self.trainers = {seed: training.Trainer(model, prepared.splits, self._budget(seed))
                         for seed in plan_.data_seeds}
        self.paths = {key: weight.path for key, weight, _ in model_ops.masked_weights(model)}

    def _budget(self, seed):
        """The experiment's training config with data order `seed`, `train_steps` long (the schedule's
        milestones past the end are not reached) and the plan's checkpoint cadence (no effect on results)."""
        config = dataclasses.replace(self.prepared.config.resolved_training(), data_seed=seed)
        config = connectivity.stopped_at(config, self.plan.train_steps)  # a copy
        object.__setattr__(config, "checkpoint_every", self.plan.checkpoint_every)
        return config

    def train(self, round_index, mask, k, seed, masks, start):
        """(record, trained state) of one training, trained now unless it is finished."""
        directory = analyses.stability_run_dir(self.prepared.directory, round_index, mask, k, seed)
        if not results.is_finished(directory):
            model_ops.set_masks(self.model, masks)
            connectivity.set_state(self.model, start)  # a started run's checkpoint replaces it
            try:
                result = self.trainers[seed].train(directory=directory,
                                                   name=f"stability: {mask} from theta_{k}, data seed {seed}")
            except FloatingPointError as error:
                raise results.RoundFailed(str(error)) from None
            atomic.write_npz(analyses.state_path(directory), connectivity.get_state(self.model))
            record = {"round": round_index, "mask": mask, "rewind_step": k, "data_seed": seed,
                      "remaining_fraction": model_ops.sparsity_report(self.model)["remaining_fraction"],
                      **result.summary()}
            results.write_round(directory, model_ops.get_masks(self.model), record, curve=result.curve)
        shutil.rmtree(results.checkpoint_dir(directory), ignore_errors=True)  # state.npz holds the end
        state = results.read_arrays(analyses.state_path(directory), results.retrain_round(directory))
        return results.read_record(directory), state

    def keyed(self, state):
        """{mask key: weight} of a get_state() dict (what the distances compare)."""
        return {key: state[path] for key, path in self.paths.items()}

    def line(self, round_index, mask, k, masks, state_a, state_b):
        """The linear mode connectivity of the two copies, cached beside them."""
        path = analyses.stability_lmc_path(self.prepared.directory, round_index, mask, k)
        if path.is_file():
            cached = analyses.read(path)
            if cached.get("points") == self.plan.points:
                return cached
        model_ops.set_masks(self.model, masks)
        trainer = self.trainers[self.plan.data_seeds[0]]
        result = {"points": self.plan.points,
                  **connectivity.line_between(self.model, trainer, state_a, state_b, self.plan.points)}
        atomic.write_json(path, result)
        return result


def _theta_0_check(prepared, runs, dense_masks, theta_0):
    """Whether theta_0 as rebuilt evaluates as the first record of round 0's curve did (test loss within
    THETA_0_LOSS_TOLERANCE, the same test accuracy); None without a curve. Logs a warning if not."""
    curve_path = results.curve_path(results.round_dir(prepared.directory, 0))
    if not curve_path.is_file():
        return None
    first = results.read_curve(results.round_dir(prepared.directory, 0))[0]
    model_ops.set_masks(runs.model, dense_masks)
    connectivity.set_state(runs.model, theta_0)
    now = runs.trainers[runs.plan.data_seeds[0]].evaluate()
    check = {"round_0_test_loss": first.get("test_loss"), "rebuilt_test_loss": now["test_loss"],
             "round_0_test_accuracy": first.get("test_accuracy"), "rebuilt_test_accuracy": now["test_accuracy"]}
    check["matches"] = bool(first.get("test_loss") is not None
                            and abs(first["test_loss"] - now["test_loss"]) <= THETA_0_LOSS_TOLERANCE
                            and first.get("test_accuracy") == now["test_accuracy"])
    if not check["matches"]:
        logging.warning("theta_0 of %s does not evaluate as round 0's first record did (test loss %s, now "
                        "%s): the start is not the experiment's", prepared.directory,
                        first.get("test_loss"), now["test_loss"])
    return check


def _row(runs, k, dense, copies, masks, line):
    """One rewind point of one mask: accuracy, both distances and the line between the copies."""
    (record_a, state_a), (record_b, state_b) = copies
    pruning = analysis.stability_to_pruning(runs.keyed(state_a), runs.keyed(dense[1]), masks)
    order = analysis.stability_to_data_order(runs.keyed(state_a), runs.keyed(state_b), masks)
    return {"iteration": k,
            "test_accuracy": float(np.mean([r["early_stop_test_accuracy"] for r in (record_a, record_b)])),
            "copies": [{"data_seed": r["data_seed"], **connectivity.copy_summary(r)} for r in (record_a, record_b)],
            "pruning_l2_distance": pruning["l2_distance"],
            "pruning_relative_distance": pruning["relative_distance"],
            "data_order_l2_distance": order["l2_distance"],
            "data_order_relative_distance": order["relative_distance"],
            "instability": line["instability"], "end_errors": line["end_errors"],
            "max_error": line["max_error"], "path": line["path"]}


def _mask_sets(prepared, model, plan_):
    """{mask name: masks}: IMP's round mask, then each control's random mask with its counts."""
    imp_masks = results.round_masks(prepared.directory, plan_.round)
    pruning_config = prepared.config.resolved_pruning()
    structures = model_ops.structures(model, pruning_config)
    found = {IMP: imp_masks}
    for branch in plan_.masks[1:]:
        draw = controls_lib.parse_spec(branch).draw
        found[branch] = controls_lib.random_prune_masks(pruning_config, imp_masks, structures, plan_.round, draw)
    return found


def run(prepared, plan_):
    """Runs (or resumes) the trainings of a Plan, writes analysis/stability_round_XX.json, returns it."""
    directory, seed_a = prepared.directory, plan_.data_seeds[0]
    with lock.hold(directory):
        model, states = connectivity.rewind_points(prepared, sorted({0, *plan_.rewind_steps}))
        dense_masks = model_ops.get_masks(model)
        runs = _Runs(prepared, model, plan_)
        mask_sets = _mask_sets(prepared, model, plan_)
        check = _theta_0_check(prepared, runs, dense_masks, states[0])
        rows, dense_rows = {name: [] for name in mask_sets}, []
        for k in plan_.rewind_steps:
            dense = runs.train(None, analyses.DENSE, k, seed_a, dense_masks, states[k])
            dense_rows.append({"iteration": k, "data_seed": seed_a, **connectivity.copy_summary(dense[0])})
            for name, masks in mask_sets.items():
                copies = [runs.train(plan_.round, name, k, seed, masks, states[k]) for seed in plan_.data_seeds]
                line = runs.line(plan_.round, name, k, masks, copies[0][1], copies[1][1])
                rows[name].append(_row(runs, k, dense, copies, masks, line))
        record = {"round": plan_.round, "seed": prepared.config.run.seed,
                  "remaining_fraction": results.read_record(results.round_dir(directory, plan_.round))[
                      "remaining_fraction"],
                  "rewind_steps": list(plan_.rewind_steps), "data_seeds": list(plan_.data_seeds),
                  "train_steps": plan_.train_steps,
                  "experiment_train_steps": prepared.config.training.train_steps,
                  "points": plan_.points, **plan_.criteria(), "theta_0_check": check, "dense": dense_rows,
                  "masks": {name: {"rows": rows[name], **analysis.rewind_picks(rows[name], **plan_.criteria())}
                            for name in mask_sets}}
        atomic.write_json(analyses.stability_path(directory, plan_.round), record)
    return record


def finished_fraction(directory, round_index, plan_):
    """The share of the Plan's trainings already finished in `directory` (for progress reports)."""
    runs = [(None, analyses.DENSE, k, plan_.data_seeds[0]) for k in plan_.rewind_steps]
    runs += [(round_index, mask, k, seed) for mask in plan_.masks for k in plan_.rewind_steps
             for seed in plan_.data_seeds]
    done = sum(results.is_finished(analyses.stability_run_dir(directory, *run)) for run in runs)
    return done / len(runs) if runs else math.nan
