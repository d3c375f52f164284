"""Iterative magnitude pruning: the IMP branch of the round loop (train, prune, reset or rewind)."""

from tf_lottery import model_ops
from tf_lottery import pruning
from tf_lottery import results
from tf_lottery import rounds as round_loop
from tf_lottery import schedules
from tf_lottery.config import RESETS
from tf_lottery.results import checkpoints


def _last_good_round(records, before):
    good = [rec["round"] for rec in records if rec["round"] < before and not rec.get("failed")]
    if not good:
        raise results.RoundFailed(f"round {before}: every earlier round failed; nothing to prune from")
    return good[-1]


def prune_masks(context, weights, masks, round_index):
    """The masks of round `round_index`: the round's amounts (schedule) removed from `masks` by `weights`."""
    config = context.pruning_config
    measure, amounts = schedules.round_amounts(
        config, context.rounds, round_index, context.keys, context.output_key, context.conv_keys)
    new_masks = pruning.prune(
        weights, masks, **{measure: amounts}, scope=config.scope, criterion=config.criterion,
        structure=context.structures(), n_of_m=config.n_of_m, seed=config.seed + round_index,
        **config.structure_options())
    return {k: v.numpy() for k, v in new_masks.items()}


class ImpBranch(round_loop.Branch):
    """Round 0 trains as given; round r prunes round r-1's survivors by magnitude and resets them."""

    def __init__(self, context, reset="init", rewind_step=0):
        super().__init__(context)
        self.reset = reset
        self.rewind_step = rewind_step

    def hooks(self, round_index):
        if round_index == 0 and self.reset == "rewind" and self.rewind_step > 0:
            return {self.rewind_step: self.context.reset_point.capture}
        return {}

    def start(self, round_index, records):
        context = self.context
        if round_index == 0:
            context.reset_point.capture(0)
            return
        source = _last_good_round(records, round_index)
        checkpoints.restore_model(context.model, results.round_dir(context.experiment_dir, source))
        if source != round_index - 1:
            model_ops.set_masks(context.model, results.read_masks(
                results.mask_path(results.round_dir(context.experiment_dir, round_index - 1)), "round"))
        model_ops.set_masks(context.model, prune_masks(
            context, model_ops.effective_weights(context.model), model_ops.get_masks(context.model),
            round_index))
        context.reset_point.restore()


def run_rounds(model, splits, *, rounds, training_config, pruning_config,
               experiment_dir, reset="init", rewind_step=0, on_nan="stop", on_round_start=None,
               strategy=None, context=None):
    """Runs IMP on a wrapped model and returns the list of round records.

    Round 0 trains the dense network (its masks as given). Round r > 0 prunes
    the weights that survived round r-1, by their trained values, resets the
    survivors to the snapshot (theta_0, or theta_k with reset='rewind', captured
    at iteration `rewind_step` of round 0) and trains with a fresh optimizer.
    Finished rounds found in `experiment_dir` are not retrained; an unfinished
    round continues from its latest checkpoint. `on_round_start(r, model)`, if
    given, is called when round r begins afresh, after pruning and reset.

    A non-finite training loss fails the round: it is recorded in summary.json
    with `failed: true` and the error; on_nan='stop' then raises RoundFailed
    (a rerun tries the round again), on_nan='skip_round' moves on, and the
    next round prunes the failed round's masks by the weights of the last
    round that trained. With a tf.distribute `strategy`, the model must have
    been built in its scope; masks are chosen once, on the host, and assigned
    to every replica. `context` (from rounds.make_context) reuses a Trainer.
    """
    if reset not in RESETS:
        raise ValueError(f"unknown reset '{reset}'; choose one of {', '.join(RESETS)}")
    context = context or round_loop.make_context(
        model, splits, rounds=rounds, training_config=training_config,
        pruning_config=pruning_config, experiment_dir=experiment_dir, on_nan=on_nan,
        strategy=strategy)
    return round_loop.run_branch(ImpBranch(context, reset, rewind_step), on_round_start)
