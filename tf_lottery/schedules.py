"""Schedules: round -> how much each tensor is pruned, a registry of TF-MOT PruningSchedule makers.

IMP's geometric schedule removes a fixed fraction of what remains each round
((1-p)^r remains after r rounds). TF-MOT's schedules give a target sparsity
per step; here a step is a pruning round, so PolynomialDecay ramps the
sparsity from 0 at round 0 to final_sparsity at the last round and
ConstantSparsity jumps to it at round 1. Each entry of SCHEDULES maps
(pruning_config, rounds) to a PruningSchedule, or None for geometric.
"""

from etils import epy

from tf_lottery.pruning.scopes import SCOPES
from tf_lottery.registry import Registry

with epy.lazy_imports():
    import tensorflow_model_optimization as tfmot

SCHEDULES = Registry("schedule")


@SCHEDULES.register("geometric")
def geometric(pruning_config, rounds):
    """IMP: each round removes a fixed fraction of what remains."""
    return None


@SCHEDULES.register("polynomial")
def polynomial(pruning_config, rounds):
    """TF-MOT PolynomialDecay from 0 at round 0 to final_sparsity at the last round."""
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=pruning_config.final_sparsity, begin_step=0,
        end_step=max(rounds, 1), power=pruning_config.power, frequency=1)


@SCHEDULES.register("constant")
def constant(pruning_config, rounds):
    """TF-MOT ConstantSparsity: final_sparsity from round 1 on."""
    return tfmot.sparsity.keras.ConstantSparsity(pruning_config.final_sparsity, begin_step=1, frequency=1)


def tfmot_schedule(pruning_config, rounds):
    """The TF-MOT PruningSchedule of a config, or None for the geometric schedule."""
    schedule = pruning_config.schedule
    if not isinstance(schedule, str) and isinstance(schedule, tfmot.sparsity.keras.PruningSchedule):
        return schedule
    return SCHEDULES.get(schedule)(pruning_config, rounds)


def round_amounts(pruning_config, rounds, round_index, keys, output_key=None, conv_keys=(), shapes=None):
    """('fractions', {key: rate}) or ('densities', {key: target density}) for one round.

    Returns ('densities', {}) when a TF-MOT schedule does not prune at this round.
    With a scope that has a distribution (erk), the round's overall density
    ((1 - prune_fraction)^round, or 1 - the schedule's sparsity) is spread
    over the tensors by it, from their `shapes` {key: shape}.
    """
    schedule = tfmot_schedule(pruning_config, rounds)
    fractions = pruning_config.fractions(keys, output_key, conv_keys)
    distribution = getattr(SCOPES.get(getattr(pruning_config, "scope", "layer")), "distribution", None)
    if schedule is None:
        if distribution is None:
            return "fractions", fractions
        overall = (1.0 - pruning_config.fraction) ** round_index
    else:
        should_prune, sparsity = schedule(round_index)
        if not bool(should_prune):
            return "densities", {}
        overall = 1.0 - float(sparsity)
    # The keys the config prunes are those it gives a rate.
    if distribution is not None:
        return "densities", distribution({key: tuple(shapes[key]) for key in fractions}, overall)
    return "densities", {key: overall for key in fractions}
