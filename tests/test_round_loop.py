"""The one round loop: controls by registration, the experiment's model options in every control,
distinct draw seeds, and a round killed between its mask and its metrics is never finished."""

import itertools

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import atomic, controls, experiment, imp, model_ops, results, training
from tf_lottery.config import ExperimentConfig
from tf_lottery.settings import ConfigError

from conftest import tiny_model, tiny_training

SMALL = dict(dataset="mnist_small", validation_size=200, hidden=(16, 8), train_steps=20, eval_every=10,
             eval_batch_size=500, checkpoint_every=10, steps_per_call=10, rounds=1, jit_compile=False)


def _experiment(tmp_path, **values):
    config = ExperimentConfig.from_flat({**SMALL, "experiment_dir": str(tmp_path / "exp"), **values})
    return experiment.prepare(config)


def test_exclude_holds_in_every_control(tmp_path):
    prepared = _experiment(tmp_path, exclude=("fc1",),
                           controls=("random_reinit", "random_prune", "one_shot"))
    summary = experiment.run_imp(prepared)
    assert sorted(summary["controls"]) == ["one_shot", "random_prune", "random_reinit"]
    imp_masks = results.round_masks(prepared.directory, 1)
    counts = {k: int(m.sum()) for k, m in imp_masks.items()}
    for name in summary["controls"]:
        assert "fc1/kernel" not in summary["controls"][name][0]["layers"]
        masks = results.round_masks(prepared.directory, 1, control=name)
        assert {k: int(m.sum()) for k, m in masks.items()} == counts
    np.testing.assert_array_equal(
        results.round_masks(prepared.directory, 1, control="random_reinit")["fc2/kernel"],
        imp_masks["fc2/kernel"])


@pytest.fixture
def same_mask_control():
    """A control registered for one test: IMP's round-r mask trained again from the reset point."""

    @controls.CONTROLS.register("same_mask_again", help="IMP's own mask and reset point")
    class SameMaskAgain(controls.Control):
        def start(self, round_index, records):
            model_ops.set_masks(self.context.model, self.imp_mask(round_index))
            self.context.reset_point.restore()

    yield "same_mask_again"
    controls.CONTROLS.unregister("same_mask_again")


def test_a_new_control_is_one_registration(tmp_path, same_mask_control):
    prepared = _experiment(tmp_path, controls=(same_mask_control,))
    summary = experiment.run_imp(prepared)
    record = summary["controls"][same_mask_control][0]
    imp_round = summary["rounds"][1]
    assert record["remaining"] == imp_round["remaining"]
    # Same mask, same start weights, same data order: the same training as IMP's round 1.
    assert record["early_stop_test_accuracy"] == imp_round["early_stop_test_accuracy"]
    assert record["final_test_accuracy"] == imp_round["final_test_accuracy"]


def test_unknown_control_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="controls: must be names from random_reinit"):
        ExperimentConfig.from_flat(controls=("lucky",))


def test_control_draw_seeds_are_distinct_for_every_seed_and_round():
    for base in (controls._REINIT_SEED, controls._RANDOM_MASK_SEED):
        seeds = [controls.draw_seed(base, s, r) for s, r in itertools.product(range(5), range(300))]
        assert len(set(seeds)) == len(seeds)
        assert all(0 <= s < 2 ** 31 for s in seeds)
        assert controls.draw_seed(base, 3, 7) == base + 307  # the seeds of results written before


def test_round_killed_between_mask_and_metrics_is_not_finished(splits, tmp_path):
    training.configure_runtime(0)
    pruning_config = tfl.PruningConfig(fraction=0.2)
    model = tfl.wrap(tiny_model())
    records = imp.run_rounds(model, splits, rounds=2, training_config=tiny_training(train_steps=20),
                             pruning_config=pruning_config, experiment_dir=tmp_path)
    round_2 = results.round_dir(tmp_path, 2)
    results.metrics_path(round_2).unlink()          # killed after mask.npz, before metrics.json
    assert results.mask_path(round_2).is_file()
    assert results.finished_rounds(tmp_path) == [0, 1]
    assert not results.is_finished(round_2)
    with pytest.raises(ConfigError, match="round_02 is not a finished round"):
        results.round_masks(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="round 2 of the IMP experiment is not finished"):
        controls.run_controls(model, splits, names=("random_prune",), rounds=2,
                              training_config=tiny_training(train_steps=20),
                              pruning_config=pruning_config, experiment_dir=tmp_path)
    again = imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=2,
                           training_config=tiny_training(train_steps=20),
                           pruning_config=pruning_config, experiment_dir=tmp_path)
    assert results.finished_rounds(tmp_path) == [0, 1, 2]
    assert again[2]["remaining"] == records[2]["remaining"]
    assert atomic.read_json(results.metrics_path(round_2))["round"] == 2
