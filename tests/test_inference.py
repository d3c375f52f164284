"""The statistics behind verdicts: hand-computed intervals and tests, and verdicts on simulated studies."""

import numpy as np
import pytest

from tf_lottery import plots
from tf_lottery.study import claims, inference, statistics

T975 = {2: 4.302653, 4: 2.776445}  # Student's t quantile 0.975 by degrees of freedom (tables)
T95 = {4: 2.131847}                 # and 0.95


def test_a_paired_t_interval_is_the_t_interval_of_the_per_seed_differences():
    a, b = [0.9801, 0.9786, 0.9812, 0.9795, 0.9808], [0.9770, 0.9779, 0.9781, 0.9760, 0.9790]
    d = np.subtract(a, b)                            # 0.0031 0.0007 0.0031 0.0035 0.0018
    mean, sd = 0.00244, float(np.sqrt(np.sum((d - 0.00244) ** 2) / 4))
    estimate = inference.paired_difference(a, b)
    half = T975[4] * sd / np.sqrt(5)
    assert estimate.value == pytest.approx(mean)
    assert (estimate.low, estimate.high) == pytest.approx((mean - half, mean + half), rel=1e-5)
    assert (estimate.n, estimate.method, estimate.df) == (5, "paired t", 4)
    unpaired = inference.welch_difference(a, b)
    assert unpaired.method == "Welch t" and unpaired.high - unpaired.low > estimate.high - estimate.low
    assert tuple(inference.paired_difference([1.0], [0.5])) == (0.5, None, None)


def test_a_paired_ratio_is_the_geometric_mean_of_the_seeds_ratios():
    slow, fast = [8400.0, 8400.0, 7300.0], [4100.0, 2800.0, 4000.0]
    logs = np.log(np.divide(slow, fast))
    half = T975[2] * logs.std(ddof=1) / np.sqrt(3)
    estimate = inference.paired_ratio(slow, fast)
    assert estimate.value == pytest.approx(np.exp(logs.mean()))
    assert (estimate.low, estimate.high) == pytest.approx(
        (np.exp(logs.mean() - half), np.exp(logs.mean() + half)), rel=1e-5)
    assert estimate.method == "paired t on log ratios"


def test_tost_decides_equivalence_at_the_margin():
    d = np.array([0.0010, -0.0020, 0.0005, 0.0015, -0.0010])     # mean 0, 5 seeds
    se = d.std(ddof=1) / np.sqrt(5)                                # 0.000652
    estimate = inference.mean(d)
    # Equivalent at a margin when the 90% interval (t 0.95, 4 df) lies inside it.
    assert T95[4] * se == pytest.approx(0.00139, abs=1e-5)
    assert inference.equivalence(estimate, 0.0015)[0] is True      # 0.00139 < 0.0015
    assert inference.equivalence(estimate, 0.0013)[0] is False     # 0.00139 > 0.0013
    equivalent, p = inference.equivalence(estimate, 0.003)
    assert equivalent and p == pytest.approx(0.0050, abs=1e-4)     # P(T > 0.003 / se = 4.60), 4 df
    assert inference.equivalence(inference.mean([0.01]), 0.1) == (False, None)


def test_holm_steps_down_over_the_tested_p_values():
    assert inference.holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    # 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05/1: all clear.
    assert inference.holm([0.04, 0.02, 0.01, 0.005]) == [True, True, True, True]
    assert inference.holm([None, 0.02, 0.03]) == [False, True, True]   # two tests: 0.025, then 0.05
    assert inference.holm([0.001, 0.001, 0.02]) == [True, True, True]
    assert inference.holm([0.02, 0.02, 0.02]) == [False, False, False]


def test_draws_are_averaged_within_their_seed_and_their_spread_is_kept_apart():
    draws = {(0,): [1.0, 3.0], (1,): [2.0], (2,): [4.0, 6.0, 8.0]}
    assert inference.seed_means(draws) == {(0,): 2.0, (1,): 2.0, (2,): 6.0}
    # Pooled within-seed SD: ((1-2)^2 + (3-2)^2 + (4-6)^2 + 0 + (8-6)^2) / (1 + 2) = 10 / 3.
    assert inference.within_seed_sd(draws) == pytest.approx(np.sqrt(10 / 3))
    assert inference.within_seed_sd({(0,): [1.0], (1,): [2.0]}) is None
    estimate = statistics.compare(draws, {(0,): [1.0], (1,): [1.0], (2,): [1.0]})
    # Three seeds, not six values: the per-seed differences 1, 1, 5.
    assert (estimate.n, estimate.method) == (3, "paired t")
    assert estimate.value == pytest.approx(7 / 3)
    half = T975[2] * np.std([1, 1, 5], ddof=1) / np.sqrt(3)
    assert (estimate.low, estimate.high) == pytest.approx((7 / 3 - half, 7 / 3 + half), rel=1e-5)
    other_seeds = statistics.compare(draws, {(5,): [1.0], (6,): [1.0], (7,): [2.0]})
    assert other_seeds.method == "Welch t"


def _record(r, iteration, accuracy):
    return {"round": r, "remaining_fraction": 0.8 ** r, "early_stop_iteration": iteration,
            "early_stop_test_accuracy": accuracy, "final_test_accuracy": accuracy}


def _group(rng, seeds, one_shot_effect=0.0, back_effect=0.0, noise=0.002):
    """A 15-round study group built in memory: each seed has its own level (shared by all its sides)
    and independent noise per side; one-shot at round 12 is `one_shot_effect` above IMP's round 0
    and IMP's round 15 `back_effect` above it."""
    runs = {}
    for seed in range(seeds):
        level = 0.98 + rng.normal(0, 0.003)
        imp = [_record(r, 4000, level + rng.normal(0, noise)) for r in range(16)]
        imp[15] = _record(15, 4000, imp[0]["early_stop_test_accuracy"] + back_effect + rng.normal(0, noise))
        one_shot = [_record(12, 4000, imp[0]["early_stop_test_accuracy"] + one_shot_effect
                            + rng.normal(0, noise))]
        runs[(seed,)] = plots.Run(None, {}, {"rounds": imp, "controls": {"one_shot": one_shot}})
    return statistics.Group((), "all points", runs)


# 200 simulated studies, about 8 s on 2 cores: run by hand with -m slow.
@pytest.mark.slow
def test_with_no_effect_a_directional_claim_rarely_agrees():
    rng = np.random.default_rng(0)
    verdicts = [claims.check(_group(rng, 5), "lth_lenet")[10].verdict for _ in range(200)]
    # "At 7.0% iterative pruning beats one-shot": IMP's round 12 and one-shot have the same mean.
    assert sum(v == "agrees" for v in verdicts) < 0.10 * 200
    assert set(verdicts) <= {"agrees", "disagrees", "inconclusive"}


def test_a_true_zero_difference_with_small_noise_is_shown_equivalent():
    rng = np.random.default_rng(1)
    finding = claims.check(_group(rng, 5, noise=0.0003), "lth_lenet")[4]
    assert finding.kind == "no difference" and finding.verdict == "agrees"
    assert "margin +-0.30 points" in finding.paper and "TOST p = " in finding.ours
    # A true difference of +0.44 points is a disagreement, not agreement in direction.
    far = claims.check(_group(np.random.default_rng(2), 5, back_effect=0.0044, noise=0.0005), "lth_lenet")[4]
    assert far.verdict == "disagrees"
