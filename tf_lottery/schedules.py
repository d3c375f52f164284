"""Round -> how much each tensor is pruned, built on TF-MOT PruningSchedule objects.

IMP's geometric schedule removes a fixed fraction of what remains each round
((1-p)^r remains after r rounds). TF-MOT's schedules give a target sparsity
per step; here a step is a pruning round, so PolynomialDecay ramps the
sparsity from 0 at round 0 to final_sparsity at the last round and
ConstantSparsity jumps to it at round 1.
"""

import tensorflow_model_optimization as tfmot

from tf_lottery.config import SCHEDULES


def tfmot_schedule(pruning_config, rounds):
    """The TF-MOT PruningSchedule of a config, or None for the geometric schedule."""
    schedule = pruning_config.schedule
    if isinstance(schedule, tfmot.sparsity.keras.PruningSchedule):
        return schedule
    if schedule == "geometric":
        return None
    if schedule == "polynomial":
        return tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=pruning_config.final_sparsity, begin_step=0,
            end_step=max(rounds, 1), power=pruning_config.power, frequency=1)
    if schedule == "constant":
        return tfmot.sparsity.keras.ConstantSparsity(
            pruning_config.final_sparsity, begin_step=1, frequency=1)
    raise ValueError(f"unknown schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}")


def round_amounts(pruning_config, rounds, round_index, keys, output_key=None, conv_keys=()):
    """('fractions', {key: rate}) or ('densities', {key: target density}) for one round.

    Returns ('densities', {}) when a TF-MOT schedule does not prune at this round.
    """
    schedule = tfmot_schedule(pruning_config, rounds)
    if schedule is None:
        return "fractions", pruning_config.fractions(keys, output_key, conv_keys)
    should_prune, sparsity = schedule(round_index)
    if not bool(should_prune):
        return "densities", {}
    exclude = set(pruning_config.exclude)
    return "densities", {key: 1.0 - float(sparsity) for key in keys
                         if key.split("/")[0] not in exclude}
