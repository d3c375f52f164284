"""Structured pruning stays structured, counts follow the rate, schedules hit their targets."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

import tf_lottery as tfl
from tf_lottery import atomic, imp, pruning, schedules, training

from conftest import make_splits, tiny_training

RNG = np.random.default_rng(0)
MLP = {"fc1/kernel": RNG.normal(size=(24, 12)), "fc2/kernel": RNG.normal(size=(12, 8))}
CONV = {"conv1/kernel": RNG.normal(size=(3, 3, 4, 8)), "conv2/kernel": RNG.normal(size=(3, 3, 8, 16))}


def _rounds(weights, rounds=3, fraction=0.3, **kwargs):
    masks = {k: np.ones_like(w, dtype="float32") for k, w in weights.items()}
    history = []
    for _ in range(rounds):
        new = pruning.prune(weights, masks, {k: fraction for k in weights}, **kwargs)
        new = {k: np.asarray(v) for k, v in new.items()}
        for k in masks:
            assert np.all(new[k] <= masks[k])
        masks = new
        history.append(masks)
    return history


def _unit_counts(mask, axis):
    matrix = np.moveaxis(mask, axis, -1).reshape(-1, mask.shape[axis])
    assert np.all((matrix.min(0) == matrix.max(0))), "a unit is partly pruned"
    return int(matrix.max(0).sum())


@pytest.mark.parametrize("weights", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("structure, axis", [("neuron", -1), ("filter", -1), ("channel", -2)])
def test_units_stay_whole_and_follow_the_rate(weights, structure, axis):
    expected = {k: w.shape[axis] for k, w in weights.items()}
    for masks in _rounds(weights, structure=structure):
        for k, mask in masks.items():
            expected[k] -= pruning.prune_count(expected[k], 0.3)
            assert _unit_counts(mask, axis) == expected[k]


@pytest.mark.parametrize("weights", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("block", [(1, 4), (2, 2)])
def test_blocks_stay_whole(weights, block):
    for masks in _rounds(weights, structure="block", block_shape=block):
        for k, mask in masks.items():
            matrix = mask.reshape(-1, mask.shape[-1])
            rows, cols = matrix.shape
            for i in range(0, rows, block[0]):
                for j in range(0, cols, block[1]):
                    tile = matrix[i:i + block[0], j:j + block[1]]
                    assert tile.min() == tile.max()
    blocks = {k: -(-w.reshape(-1, w.shape[-1]).shape[0] // block[0]) * -(-w.shape[-1] // block[1])
              for k, w in weights.items()}
    final = _rounds(weights, structure="block", block_shape=block)[-1]
    for k in weights:
        expected = blocks[k]
        for _ in range(3):
            expected -= pruning.prune_count(expected, 0.3)
        matrix = final[k].reshape(-1, final[k].shape[-1])
        pooled = [matrix[i:i + block[0], j:j + block[1]].max()
                  for i in range(0, matrix.shape[0], block[0]) for j in range(0, matrix.shape[1], block[1])]
        assert int(sum(pooled)) == expected


@pytest.mark.parametrize("weights", [MLP, CONV], ids=["mlp", "conv"])
def test_n_of_m_groups_keep_at_most_n(weights):
    history = _rounds(weights, structure="n_of_m", n_of_m=(2, 4))
    for r, masks in enumerate(history):
        for k, mask in masks.items():
            assert pruning.n_of_m_violations(mask, 2, 4) == 0
            if r == 0:
                assert mask.sum() == mask.size // 2   # input sizes are multiples of 4
    assert all(history[2][k].sum() < history[0][k].sum() for k in weights)


def test_norms_rank_differently():
    weights = {"w": np.array([[3.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])}  # L1 3 vs 4, L2 3 vs 2
    mask = {"w": np.ones((4, 2))}
    l1 = np.asarray(pruning.prune(weights, mask, {"w": 0.5}, structure="neuron", structure_norm="l1")["w"])
    l2 = np.asarray(pruning.prune(weights, mask, {"w": 0.5}, structure="neuron", structure_norm="l2")["w"])
    np.testing.assert_array_equal(l1[0], [0, 1])
    np.testing.assert_array_equal(l2[0], [1, 0])


def test_block_pooling_mean_or_max():
    weights = {"w": np.array([[5.0, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0]]).T}  # two 4x1 blocks
    mask = {"w": np.ones((8, 1))}
    kwargs = dict(structure="block", block_shape=(4, 1))
    avg = np.asarray(pruning.prune(weights, mask, {"w": 0.5}, block_pooling="avg", **kwargs)["w"])
    mx = np.asarray(pruning.prune(weights, mask, {"w": 0.5}, block_pooling="max", **kwargs)["w"])
    np.testing.assert_array_equal(avg[:, 0], [1, 1, 1, 1, 0, 0, 0, 0])  # means 1.325 vs 1.0
    np.testing.assert_array_equal(mx[:, 0], [1, 1, 1, 1, 0, 0, 0, 0])   # maxima 5 vs 1
    weights = {"w": np.array([[2.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]]).T}
    avg = np.asarray(pruning.prune(weights, mask, {"w": 0.5}, block_pooling="avg", **kwargs)["w"])
    mx = np.asarray(pruning.prune(weights, mask, {"w": 0.5}, block_pooling="max", **kwargs)["w"])
    np.testing.assert_array_equal(avg[:, 0], [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(mx[:, 0], [1, 1, 1, 1, 0, 0, 0, 0])


def test_n_of_m_keeps_the_largest_in_each_group():
    weights = {"w": np.array([[1.0, 4.0, 2.0, 3.0, -9.0, 0.5, 0.1, 8.0]]).T}  # Dense kernel [in=8, out=1]
    new = pruning.prune(weights, {"w": np.ones((8, 1))}, {"w": 0.2}, structure="n_of_m", n_of_m=(2, 4))
    np.testing.assert_array_equal(np.asarray(new["w"])[:, 0], [0, 1, 0, 1, 1, 0, 0, 1])


def test_global_scope_only_where_scores_compare():
    with pytest.raises(ValueError, match="global scope does not apply to structure 'neuron'"):
        pruning.prune(MLP, {k: np.ones_like(w) for k, w in MLP.items()}, {k: 0.2 for k in MLP},
                      scope="global", structure="neuron")
    with pytest.raises(tfl.ConfigError, match="prune_scope: global scope .* structure unstructured or block"):
        tfl.ExperimentConfig.from_flat(prune_scope="global", structure="filter")
    with pytest.raises(tfl.ConfigError, match="prune_scope: global scope"):
        tfl.PruningConfig(scope="global", structure="filter")
    masks = _rounds(MLP, rounds=1, scope="global", structure="block", block_shape=(1, 4))[0]
    blocks = sum(m.reshape(-1, m.shape[-1]).size // 4 for m in MLP.values())
    assert int(sum(m.sum() for m in masks.values())) // 4 == blocks - pruning.prune_count(blocks, 0.3)


@pytest.mark.parametrize("schedule, expected", [
    ("polynomial", [0.0, 0.39375, 0.675, 0.84375, 0.9]),   # 0.9 * (1 - (1 - r/4)^2)
    ("constant", [0.0, 0.9, 0.9, 0.9, 0.9]),
])
def test_tfmot_schedules_reach_their_targets(schedule, expected):
    config = tfl.PruningConfig(schedule=schedule, final_sparsity=0.9, power=2.0)
    weights = {"w": RNG.normal(size=(40, 50))}
    masks = {"w": np.ones((40, 50), "float32")}
    for r in range(1, 5):
        kind, amounts = schedules.round_amounts(config, 4, r, ["w"])
        assert kind == "densities"
        masks = {k: np.asarray(v) for k, v in pruning.prune(weights, masks, **{kind: amounts}).items()}
        assert masks["w"].sum() == 2000 - pruning.prune_count(2000, expected[r])


def test_any_tfmot_schedule_instance_works():
    class EveryOtherRound(tfmot.sparsity.keras.PruningSchedule):
        def __call__(self, step):
            return step % 2 == 1, 0.5
        def get_config(self):
            return {}

    config = tfl.PruningConfig(schedule=EveryOtherRound())
    assert schedules.round_amounts(config, 4, 1, ["w"]) == ("densities", {"w": 0.5})
    assert schedules.round_amounts(config, 4, 2, ["w"]) == ("densities", {})


def test_conv_rate_output_rate_and_output_stays_unstructured():
    config = tfl.PruningConfig(fraction=0.2, conv_fraction=0.1, output_fraction=0.05, structure="filter")
    keys = ["conv1/kernel", "fc1/kernel", "output/kernel"]
    assert config.fractions(keys, "output/kernel", ["conv1/kernel"]) == {
        "conv1/kernel": 0.1, "fc1/kernel": 0.2, "output/kernel": 0.05}
    assert config.structures(keys, "output/kernel")["output/kernel"] == "unstructured"


def _tiny_convnet():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="output")(x))


@pytest.mark.parametrize("structure", ["filter", "channel", "block", "n_of_m"])
def test_imp_on_a_conv_net_stays_structured(structure, tmp_path):
    training.configure_runtime(0)
    config = tfl.PruningConfig(fraction=0.3, output_fraction=0.1, structure=structure, block_shape=(2, 2))
    records = imp.run_rounds(tfl.wrap(_tiny_convnet()), make_splits(), rounds=3,
                             training_config=tiny_training(train_steps=10, eval_every=10),
                             pruning_config=config, experiment_dir=tmp_path)
    assert [r["remaining_fraction"] < 1 for r in records] == [False, True, True, True]
    final = atomic.read_npz(tmp_path / "round_03" / "mask.npz")
    if structure in ("filter", "channel"):
        axis = -1 if structure == "filter" else -2
        expected = final["conv2/kernel"].shape[axis]  # 8 filters, 4 input channels
        for _ in range(3):
            expected -= pruning.prune_count(expected, 0.3)
        assert _unit_counts(final["conv2/kernel"], axis) == expected
    elif structure == "n_of_m":
        assert all(pruning.n_of_m_violations(m, 2, 4) == 0 for m in final.values())


@pytest.mark.parametrize("structure, axis", [("filter", -1), ("channel", -2)])
def test_random_like_keeps_whole_units(structure, axis):
    masks = _rounds(CONV, rounds=2, structure=structure)[-1]
    random = {k: np.asarray(v) for k, v in pruning.random_like(masks, seed=4, structure=structure).items()}
    for k in masks:
        assert _unit_counts(random[k], axis) == _unit_counts(masks[k], axis)
        assert pruning.unit_density(random[k], structure) == pruning.unit_density(masks[k], structure)
    assert any(not np.array_equal(random[k], masks[k]) for k in masks)


def test_partial_edge_blocks_are_scored_on_their_own_weights():
    # 1x4 blocks over 6 columns: [0..3] and a partial block [4, 5]
    weights = {"w": np.array([[1.0, 1.0, 1.0, 1.0, 3.0, 3.0]])}
    new = pruning.prune(weights, {"w": np.ones((1, 6))}, {"w": 0.5}, structure="block",
                        block_shape=(1, 4), block_pooling="avg")
    np.testing.assert_array_equal(np.asarray(new["w"]), [[0, 0, 0, 0, 1, 1]])


def test_structure_specs_score_keep_and_expand_units():
    kernel = np.arange(24.0).reshape(2, 3, 4) - 12.0  # [kh, in=3, out=4]
    mask = np.ones_like(kernel)
    mask[..., 1] = 0  # filter 1 pruned
    spec = pruning.build("filter", structure_norm="l1", block_shape=(2, 2))
    assert spec == pruning.Filter(norm="l1") and not spec.global_scope
    np.testing.assert_allclose(spec.scores(kernel, mask), np.abs(kernel * mask).reshape(-1, 4).sum(0))
    np.testing.assert_array_equal(spec.alive(mask), [1, 0, 1, 1])
    expanded = np.asarray(spec.expand(tf.constant([0.0, 1.0, 1.0, 1.0]), mask))
    np.testing.assert_array_equal(expanded.reshape(-1, 4).max(0), [0, 0, 1, 1])  # no revival
    channel = pruning.build("channel", structure_norm="l2")
    by_input = np.moveaxis(kernel * mask, 1, 0).reshape(3, -1)
    np.testing.assert_allclose(channel.scores(kernel, mask), np.sqrt((by_input ** 2).sum(1)), rtol=1e-6)
    block = pruning.build("block", block_shape=[2, 2], block_pooling="max")
    assert block == pruning.Block((2, 2), "max") and block.global_scope
    assert pruning.build("n_of_m", n_of_m=(1, 4)).unit_structure == pruning.Unstructured()


def test_structure_options_are_checked():
    with pytest.raises(ValueError, match="unknown structure norm 'l3'"):
        pruning.build("neuron", structure_norm="l3")
    with pytest.raises(ValueError, match="unknown block pooling 'sum'"):
        pruning.build("block", block_pooling="sum")
    with pytest.raises(ValueError, match="0 < N < M"):
        pruning.build("n_of_m", n_of_m=(4, 4))
    with pytest.raises(TypeError, match="unknown structure options \\['norm'\\]"):
        pruning.unit_density(np.ones((2, 2)), "neuron", norm="l1")


def test_a_schedule_is_added_by_registration_alone():
    schedules.SCHEDULES.register("half_at_two")(
        lambda pruning_config, rounds: tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=2, frequency=1))
    try:
        config = types.SimpleNamespace(schedule="half_at_two",
                                       fractions=lambda keys, *_: {k: 0.2 for k in keys})
        assert schedules.round_amounts(config, 4, 1, ["w"]) == ("densities", {})
        assert schedules.round_amounts(config, 4, 2, ["w"]) == ("densities", {"w": 0.5})
    finally:
        schedules.SCHEDULES.unregister("half_at_two")
    with pytest.raises(ValueError, match="unknown schedule 'half_at_two'; choose one of geometric"):
        schedules.tfmot_schedule(config, 4)
