"""docs/results/stability.md's tables and figures (tools/stability_tables.py, tf_lottery.study.stability_plots)
from a stability pack: the seeds it holds, counted; the figures' bands over seeds."""

import math
import pathlib
import sys

from tf_lottery import atomic, results
from tf_lottery.results import analyses
from tf_lottery.study import inference
from tf_lottery.study import stability as stability_study
from tf_lottery.study import stability_plots

from test_stability import _record

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
import stability_tables  # noqa: E402

FIELDS = ("test_accuracy", "instability", "pruning_relative_distance", "data_order_relative_distance")


def _seed_record(seed):
    """A round-3 record of `seed` with the copies' and the full network's early stops."""
    imp = {f: [0.9 + 0.01 * seed, 0.95, 0.96] for f in FIELDS}
    record = _record(seed, imp, {f: [0.8, 0.85, 0.9] for f in FIELDS})
    for mask in record["masks"].values():
        for row in mask["rows"]:
            row["copies"] = [{"early_stop_iteration": 300 + 200 * seed}, {"early_stop_iteration": 200}]
    for dense in record["dense"]:
        dense["early_stop_iteration"] = 400
    record["theta_0_check"] = {"matches": seed == 0}
    return record


class _Sources:
    """What the tables need of tools/pages.py's Sources: a pack's unpacked folder."""

    def __init__(self, root):
        self.root = root

    def folder(self, pack):
        return self.root / pack


def _pack(root, seeds_with_records, seeds=3):
    for seed in range(seeds):
        folder = root / "pack" / f"seed_{seed}"
        atomic.write_json(results.config_path(folder), {"model": "lenet", "hidden": [300, 100], "dataset": "mnist"})
        if seed in seeds_with_records:
            atomic.write_json(analyses.stability_path(folder, 3), _seed_record(seed))
    return _Sources(root)


def test_the_tables_say_how_many_of_the_packs_seeds_have_records(tmp_path):
    sources = _pack(tmp_path, seeds_with_records=(0, 1))
    lines = stability_tables.stability_seeds(sources, ["pack"]).splitlines()
    assert lines[2] == ("| 51.3% | 3 | 2 of 3 seeds | 0, 1 | full network 400, imp 500, random_prune 500, of 1,000 "
                        "| 1 of 2 |")
    assert lines[4].startswith("Complete (every seed of the pack) at 0 of 1 sizes. Picks: ")
    means = stability_tables.stability_means(sources, ["pack"]).splitlines()
    assert means[0] == "#### 51.3% of the weights (round 3), 2 of 3 seeds"
    assert means[4] == "| 0 | imp | 90.50 [84.15, 96.85] | 0.905 [0.841, 0.969] | 0.905 [0.841, 0.969] | 0.9050 [0.8415, 0.9685] |"
    assert means[6] == "| 0 | full network | 98.00 [98.00, 98.00] | | | |"
    advice = stability_tables.stability_advice(sources, ["pack"])
    assert advice.startswith("- **51.3%** (2 of 3 seeds): resetting to iteration 0 fails")
    assert advice.endswith("Rewind to: **none (no rewind point is both stable and accurate)**.")


def test_the_figures_band_the_seeds_95_percent_interval(tmp_path):
    values = [[0.9, 0.92, 0.95], [0.5]]
    mean, low, high = stability_plots._series(values, 100)
    expected = inference.mean(values[0])
    assert (mean[0], low[0], high[0]) == (100 * expected.value, 100 * expected.low, 100 * expected.high)
    assert mean[1] == 50.0 and math.isnan(low[1]) and math.isnan(high[1])  # one seed: no band
    _pack(tmp_path, (0, 1))
    rounds = stability_study.read([tmp_path / "pack" / f"seed_{s}" for s in (0, 1)])
    made = stability_plots.figure(rounds, "test_accuracy", tmp_path / "plots", "LeNet-300-100 on mnist")
    assert made.png == tmp_path / "plots" / "stability_accuracy.png" and made.png.stat().st_size > 0
    assert made.caption.startswith("Test accuracy at early stop against the rewind point, IMP's mask beside")
