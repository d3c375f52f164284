"""Mask criteria: exact counts, no revival, layer-wise vs global, random controls, the registries."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import atomic, pruning


def _np(masks):
    return {k: np.asarray(v) for k, v in masks.items()}


@pytest.mark.parametrize("remaining, fraction, expected", [
    (5, 0.5, 3), (3, 0.2, 1), (10, 0.25, 3), (10, 0.2, 2), (7, 0.2, 1), (1, 0.2, 0), (0, 0.2, 0),
])
def test_prune_count_rounds_half_up(remaining, fraction, expected):
    assert pruning.prune_count(remaining, fraction) == expected


def test_layerwise_counts_follow_the_recurrence_over_rounds():
    rng = np.random.default_rng(0)
    weights = {"a/kernel": rng.normal(size=(30, 20)), "b/kernel": rng.normal(size=(20, 7))}
    masks = {k: np.ones_like(w) for k, w in weights.items()}
    fractions = {"a/kernel": 0.2, "b/kernel": 0.1}
    expected = {k: w.size for k, w in weights.items()}
    for _ in range(6):
        new = _np(pruning.prune(weights, masks, fractions))
        for k in weights:
            expected[k] -= pruning.prune_count(expected[k], fractions[k])
            assert int(new[k].sum()) == expected[k]
            assert np.all(new[k] <= masks[k])  # nested: nothing revived
        masks = new
    # 600, 480, 384, 307, 246, 197, 158 and 140, 126, 113, 102, 92, 83, 75
    assert expected == {"a/kernel": 158, "b/kernel": 75}


def test_smallest_surviving_magnitudes_go_first():
    weights = {"w": np.array([[0.5, -0.1, 3.0, -2.0, 0.05]])}
    masks = {"w": np.ones((1, 5))}
    new = _np(pruning.prune(weights, masks, {"w": 0.4}))
    np.testing.assert_array_equal(new["w"], [[1, 0, 1, 1, 0]])


def test_pruned_weights_are_never_revived_even_if_large():
    weights = {"w": np.array([100.0, 1.0, 2.0, 3.0, 4.0])}
    masks = {"w": np.array([0.0, 1, 1, 1, 1])}
    new = _np(pruning.prune(weights, masks, {"w": 0.5}))
    np.testing.assert_array_equal(new["w"], [0, 0, 0, 1, 1])


def test_ties_prune_the_earlier_position():
    weights = {"w": np.ones(6)}
    new = _np(pruning.prune(weights, {"w": np.ones(6)}, {"w": 0.5}))
    np.testing.assert_array_equal(new["w"], [0, 0, 0, 1, 1, 1])


def test_global_uses_one_threshold_layerwise_one_per_tensor():
    weights = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([10.0, 20.0, 30.0, 40.0])}
    masks = {k: np.ones(4) for k in weights}
    fractions = {"a": 0.5, "b": 0.5}
    layer = _np(pruning.prune(weights, masks, fractions, scope="layer"))
    glob = _np(pruning.prune(weights, masks, fractions, scope="global"))
    np.testing.assert_array_equal(layer["a"], [0, 0, 1, 1])
    np.testing.assert_array_equal(layer["b"], [0, 0, 1, 1])
    np.testing.assert_array_equal(glob["a"], [0, 0, 0, 0])
    np.testing.assert_array_equal(glob["b"], [1, 1, 1, 1])


def test_global_keeps_output_layer_in_its_own_pool():
    weights = {"a": np.arange(1.0, 11.0), "out": np.full(10, 0.01)}
    masks = {k: np.ones(10) for k in weights}
    new = _np(pruning.prune(weights, masks, {"a": 0.5, "out": 0.1}, scope="global"))
    assert int(new["a"].sum()) == 5 and int(new["out"].sum()) == 9


def test_keys_without_fraction_are_not_pruned():
    weights = {"a": np.arange(4.0), "b": np.arange(4.0)}
    masks = {k: np.ones(4) for k in weights}
    new = _np(pruning.prune(weights, masks, {"a": 0.5}))
    assert int(new["b"].sum()) == 4


def test_random_criterion_exact_counts_seeded_and_nested():
    weights = {"w": np.ones((10, 10))}
    masks = {"w": np.ones((10, 10))}
    first = _np(pruning.prune(weights, masks, {"w": 0.3}, criterion="random", seed=1))
    again = _np(pruning.prune(weights, masks, {"w": 0.3}, criterion="random", seed=1))
    other = _np(pruning.prune(weights, masks, {"w": 0.3}, criterion="random", seed=2))
    assert int(first["w"].sum()) == 70
    np.testing.assert_array_equal(first["w"], again["w"])
    assert not np.array_equal(first["w"], other["w"])
    second = _np(pruning.prune(weights, first, {"w": 0.3}, criterion="random", seed=5))
    assert int(second["w"].sum()) == 49 and np.all(second["w"] <= first["w"])


def test_random_like_keeps_per_tensor_counts():
    rng = np.random.default_rng(0)
    masks = {"a": (rng.random((20, 5)) < 0.3).astype("float32"), "b": np.ones((3, 3), "float32")}
    random = _np(pruning.random_like(masks, seed=3))
    for k in masks:
        assert random[k].shape == masks[k].shape
        assert int(random[k].sum()) == int(masks[k].sum())
    assert not np.array_equal(random["a"], masks["a"])


def test_fractions_output_rate_and_exclusions():
    keys = ["fc1/kernel", "fc2/kernel", "output/kernel"]
    config = tfl.PruningConfig(fraction=0.2, output_fraction=0.1, dense_layers=("fc2",))
    assert config.fractions(keys, output_key="output/kernel") == {
        "fc1/kernel": 0.2, "output/kernel": 0.1}


def test_bad_arguments():
    w = {"w": np.ones(3)}
    with pytest.raises(ValueError, match="unknown scope 'row'; choose one of layer, global"):
        pruning.prune(w, w, {"w": 0.1}, scope="row")
    with pytest.raises(ValueError, match="unknown criterion 'size'; choose one of magnitude, random"):
        pruning.prune(w, w, {"w": 0.1}, criterion="size")
    with pytest.raises(ValueError, match="prune fraction for 'w' must be in \\[0, 1\\)"):
        pruning.prune(w, w, {"w": 1.0})
    with pytest.raises(ValueError, match="unknown structure 'rows'"):
        pruning.prune(w, w, {"w": 0.1}, structure="rows")


def test_registries_name_the_axes_without_importing_tensorflow():
    code = ("import sys; from tf_lottery import pruning, schedules; "
            "print(pruning.STRUCTURES.names(), pruning.CRITERIA.names(), pruning.SCOPES.names(), "
            "schedules.SCHEDULES.names(), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0] == (
        "('unstructured', 'neuron', 'filter', 'channel', 'block', 'n_of_m') ('magnitude', 'random') "
        "('layer', 'global', 'erk') ('geometric', 'polynomial', 'constant') False")
    global_ok = [s for s in pruning.STRUCTURES if pruning.STRUCTURES.get(s).global_scope]
    assert global_ok == ["unstructured", "block"]
    assert pruning.STRUCTURE_NORMS == ("l1", "l2") and pruning.BLOCK_POOLINGS == ("avg", "max")


class RowPairs(pruning.Structure):
    """Pairs of consecutive rows of a [fan_in, out] kernel, by their summed magnitude."""

    def unit_scores(self, magnitude):
        return tf.reduce_sum(tf.reshape(magnitude, [-1, 2 * magnitude.shape[-1]]), 1)

    def unit_alive(self, mask):
        return tf.reduce_max(tf.reshape(mask, [-1, 2 * mask.shape[-1]]), 1)

    def spread(self, unit_mask, shape):
        return tf.reshape(tf.repeat(unit_mask, 2 * shape[-1]), shape)


def test_a_structure_is_added_by_registration_alone():
    pruning.STRUCTURES.register("row_pairs")(RowPairs)
    try:
        # 5 pairs of rows with sums 6, 0.6, 60, 3, 30; pair 1 is also half pruned already
        weights = {"w": np.repeat([[1.0], [0.1], [10.0], [0.5], [5.0]], 2, axis=0) * np.ones((10, 3))}
        masks = {"w": np.ones((10, 3))}
        masks["w"][2] = 0
        first = _np(pruning.prune(weights, masks, {"w": 0.4}, structure="row_pairs"))
        np.testing.assert_array_equal(first["w"][:, 0], [1, 1, 0, 0, 1, 1, 0, 0, 1, 1])
        np.testing.assert_array_equal(first["w"][:, 1:], first["w"][:, :2])  # whole rows
        second = _np(pruning.prune(weights, first, {"w": 0.4}, structure="row_pairs"))
        np.testing.assert_array_equal(second["w"][:, 0], [0, 0, 0, 0, 1, 1, 0, 0, 1, 1])
        assert pruning.unit_density(second["w"], "row_pairs") == 0.4
        assert int(pruning.random_like(second, seed=1, structure="row_pairs")["w"].numpy().sum()) == 12
        with pytest.raises(ValueError, match="global scope does not apply to structure 'row_pairs'"):
            pruning.prune(weights, masks, {"w": 0.4}, scope="global", structure="row_pairs")
    finally:
        pruning.STRUCTURES.unregister("row_pairs")
    assert "row_pairs" not in pruning.STRUCTURES


def test_erk_densities_keep_the_overall_density_and_cap_small_layers():
    from tf_lottery.pruning.scopes import erk_densities
    shapes = {"fc1": (784, 300), "fc2": (300, 100), "out": (100, 10)}
    sizes = {k: a * b for k, (a, b) in shapes.items()}
    low = erk_densities(shapes, 0.05)
    assert sum(low[k] * sizes[k] for k in shapes) == pytest.approx(0.05 * sum(sizes.values()))
    score = {k: sum(s) / sizes[k] for k, s in shapes.items()}
    assert low["fc2"] / low["fc1"] == pytest.approx(score["fc2"] / score["fc1"])
    high = erk_densities(shapes, 0.3)  # the output layer would exceed 1: dense, the rest rescaled
    assert high["out"] == 1.0 and high["fc1"] < high["fc2"] < 1
    assert sum(high[k] * sizes[k] for k in shapes) == pytest.approx(0.3 * sum(sizes.values()))
    conv = erk_densities({"conv": (3, 3, 3, 64), "fc": (4096, 256)}, 0.05)
    assert conv["conv"] / conv["fc"] == pytest.approx((73 / 1728) / (4352 / (4096 * 256)))
    assert erk_densities(shapes, 1.0) == {k: 1.0 for k in shapes}


def test_imp_with_erk_keeps_each_tensors_erk_count(splits, tmp_path):
    from tf_lottery import imp, training
    from tf_lottery.pruning.scopes import erk_densities
    from conftest import tiny_model, tiny_training
    training.configure_runtime(0)
    model = tfl.wrap(tiny_model())
    shapes = {k: v.shape for k, v in tfl.raw_weights(model).items()}
    imp.run_rounds(model, splits, rounds=2, training_config=tiny_training(train_steps=20),
                   pruning_config=tfl.PruningConfig(fraction=0.4, scope="erk"), experiment_dir=tmp_path)
    for r in (1, 2):
        masks = atomic.read_npz(tmp_path / f"round_{r:02d}" / "mask.npz")
        densities = erk_densities(shapes, 0.6 ** r)
        for key, mask in masks.items():
            n = mask.size
            assert mask.sum() == n - pruning.prune_count(n, 1.0 - densities[key]), (r, key)
    with pytest.raises(tfl.ConfigError, match="scope: erk spreads one overall density"):
        tfl.PruningConfig(scope="erk", conv_fraction=0.1)
