"""Linear mode connectivity, rewind-point search and mask overlap: the arithmetic, then end to end."""

import dataclasses
import json
import math
import types

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import analysis, atomic, connectivity, experiment, export, imp, plots, results, tensorboard, training
from tf_lottery.config import RESETS, ConfigError
from tf_lottery.results import analyses

from conftest import tiny_model, tiny_training
from test_plots import copy_results, run_binary, small_experiment

# A 1-D problem: the label of x is x > 0, and the network predicts 1 where u * v * x > 0.
# (u, v) = (1, 1) and (-1, -1) both classify perfectly; the midpoint (0, 0) predicts 0 everywhere.
XS = np.array([-2.0, -1.0, 1.0, 2.0])
LABELS = XS > 0
A = {"u": np.array([1.0]), "v": np.array([1.0])}
B = {"u": np.array([-1.0]), "v": np.array([-1.0])}


def product_error(weights):
    return float(np.mean((weights["u"] * weights["v"] * XS > 0) != LABELS))


def test_interpolation_of_a_handmade_pair_with_a_known_barrier():
    np.testing.assert_allclose(analysis.interpolate(A, B, 0.25)["u"], [0.5])
    path = analysis.interpolation_path(A, B, product_error, points=5)
    assert [p["alpha"] for p in path] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p["error"] for p in path] == [0.0, 0.0, 0.5, 0.0, 0.0]
    result = analysis.linear_mode_connectivity(A, B, product_error, points=5)
    assert result["instability"] == 0.5 and result["max_error"] == 0.5
    assert result["end_errors"] == [0.0, 0.0]
    # An even number of points misses the midpoint, and with it the barrier.
    assert analysis.linear_mode_connectivity(A, B, product_error, points=4)["instability"] == 0.0


def test_instability_and_distance_definitions():
    assert analysis.instability([0.1, 0.5, 0.3]) == pytest.approx(0.5 - 0.2)
    assert analysis.instability([0.2, 0.1, 0.2]) == 0.0
    assert analysis.instability([0.1, 0.2, 0.3]) == pytest.approx(0.1)  # the max is an end point
    a = {"w": np.array([3.0, 0.0]), "bias": np.array([1.0])}
    b = {"w": np.array([0.0, 4.0]), "bias": np.array([1.0])}
    assert analysis.l2_distance(a, b) == pytest.approx(5.0)
    assert analysis.l2_distance(a, b, keys=["bias"]) == 0.0
    assert analysis.relative_distance(a, b, keys=["w"]) == pytest.approx(5.0 / 3.5)
    assert analysis.relative_distance(a, b) == pytest.approx(5.0 / ((math.sqrt(10) + math.sqrt(17)) / 2))
    result = analysis.linear_mode_connectivity(A, B, product_error, points=3)
    assert result["l2_distance"] == pytest.approx(math.sqrt(8))
    assert result["relative_distance"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="differ in keys: v"):
        analysis.interpolate(A, {"u": B["u"]}, 0.5)
    assert analysis.earliest_stable([{"iteration": 500, "instability": 0.01},
                                     {"iteration": 100, "instability": 0.015},
                                     {"iteration": 0, "instability": 0.3}], 0.02) == 100
    assert analysis.earliest_stable([{"iteration": 0, "instability": 0.3}], 0.02) is None


def test_mask_overlap_of_handmade_masks():
    a = {"x": np.array([1, 1, 0, 0]), "y": np.array([[1, 0], [0, 0]])}
    b = {"x": np.array([1, 0, 1, 0]), "y": np.zeros((2, 2))}
    result = analysis.mask_overlap(a, b)
    x, y, overall = result["layers"]["x"], result["layers"]["y"], result["overall"]
    assert (x["intersection"], x["union"], x["jaccard"]) == (1, 3, pytest.approx(1 / 3))
    assert x["chance"] == pytest.approx(1 / 3)  # 2 of 4 and 2 of 4 at random: 1 shared, 3 in the union
    assert (y["ones_a"], y["ones_b"], y["jaccard"], y["chance"]) == (1, 0, 0.0, 0.0)
    assert (overall["size"], overall["intersection"], overall["union"]) == (8, 1, 4)
    assert overall["jaccard"] == 0.25
    assert analysis.mask_overlap({"z": np.zeros(3)}, {"z": np.zeros(3)})["layers"]["z"]["jaccard"] == 1.0
    assert analysis.mask_overlap(a, a)["overall"]["jaccard"] == 1.0
    with pytest.raises(ValueError, match="'x' has shape"):
        analysis.mask_overlap(a, {**b, "x": np.ones(5)})


def test_rewind_command_reruns_the_config_beside_the_folder(tmp_path):
    config = tfl.ExperimentConfig.from_flat(dataset="mnist_small", hidden=(32, 16), rounds=2,
                                            jit_compile=False, block_shape=(2, 2),
                                            experiment_dir=str(tmp_path / "exp"))
    prepared = types.SimpleNamespace(config=config, directory=tmp_path / "exp")
    assert connectivity.rewind_command(prepared, 500) == (
        "python -m binaries.lottery --dataset=mnist_small --hidden=32,16 --nojit_compile "
        f"--block_shape=2x2 --rounds=2 --reset=rewind --rewind_step=500 --root_dir={tmp_path}")
    assert connectivity.rewind_command(prepared, 0) is None  # it already resets to theta_0
    assert connectivity.rewind_command(prepared, None) is None
    rewinding = types.SimpleNamespace(config=config.replace(reset="rewind", rewind_step=20),
                                      directory=prepared.directory)
    assert connectivity.rewind_command(rewinding, 0).endswith(f"--rounds=2 --root_dir={tmp_path}")


def test_stability_trains_two_copies_and_respects_masks(splits):
    training.configure_runtime(0)
    model = tfl.wrap(tiny_model())
    masks = tfl.get_masks(model)
    masks["fc1/kernel"][::2] = 0
    tfl.set_masks(model, masks)
    start = connectivity.get_state(model)
    config = tiny_training(train_steps=20)
    same = connectivity.stability(model, splits, config, start, [3, 3], points=3)
    assert same["l2_distance"] == 0.0 and same["instability"] == 0.0
    different = connectivity.stability(model, splits, config, start, [3, 4], points=3)
    assert [p["alpha"] for p in different["path"]] == [0.0, 0.5, 1.0]
    assert different["end_errors"] == [different["path"][0]["error"], different["path"][-1]["error"]]
    assert same["end_errors"][0] == different["end_errors"][0]  # copy A is the same run
    assert different["l2_distance"] > 0
    # The model now holds the end point B: an interpolation of effective weights, zero where pruned.
    raw = connectivity.get_state(model, effective=False)
    kernel = next(k for k in raw if k.endswith("fc1/kernel"))
    assert np.all(raw[kernel][masks["fc1/kernel"] == 0] == 0)
    assert set(connectivity.trainable_keys(model)) == set(raw)  # an MLP has no normalisation statistics


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory):
    return small_experiment(tmp_path_factory)


def test_lmc_binary(experiment_dir):
    result = run_binary("analyze", "lmc", f"--experiment_dir={experiment_dir}", "--round=1",
                        "--points=3", "--data_seeds=3,4")
    assert result.returncode == 0, result.stderr
    record = json.loads(analyses.lmc_path(experiment_dir, 1).read_text())
    assert record["round"] == 1 and record["start"] == "theta_0" and record["data_seeds"] == [3, 4]
    errors = [p["error"] for p in record["path"]]
    assert len(errors) == 3 and record["end_errors"] == [errors[0], errors[-1]]
    assert record["instability"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)
    assert record["l2_distance"] > 0 and 0 < record["relative_distance"] < 2
    assert (f"instability (max error on the path - mean end-point error): "
            f"{record['instability']:.4f}") in result.stdout
    bad = run_binary("analyze", "lmc", f"--experiment_dir={experiment_dir}", "--round=9", "--points=3")
    assert bad.returncode == 2 and "--round: must be a finished round" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    old_spelling = run_binary("analyze", "lmc", f"--experiment_dir={experiment_dir}", "--round=1",
                              "--data_seed=3,3")
    assert old_spelling.returncode == 2
    assert "--data_seeds: must be two different seeds, got 3 twice" in old_spelling.stderr


def test_the_start_of_lmc_is_the_reset_point_that_each_reset_kind_captures(experiment_dir):
    # Every kind captures the reset point at iteration 0; only rewind captures it again at k (a hook).
    base = tfl.ExperimentConfig.from_flat(dataset="mnist_small", train_steps=40, rounds=2, jit_compile=False)
    context = types.SimpleNamespace(reset_point=types.SimpleNamespace(capture=None))
    names = {}
    for reset in RESETS:
        config = base.replace(reset=reset, rewind_step=0 if reset == "init" else 20)
        captured = max(imp.ImpBranch(context, reset, config.lottery.rewind_step).hooks(0), default=0)
        names[reset] = connectivity.reset_point_name(config)
        assert names[reset] == f"theta_{captured}", reset
    assert names == {"init": "theta_0", "rewind": "theta_20", "lr_rewind": "theta_0", "finetune": "theta_0"}
    # lmc of an lr_rewind experiment trains the mask from its reset point, theta_0, and says so.
    prepared = experiment.load_experiment(experiment_dir)
    lr_rewind = dataclasses.replace(prepared, config=prepared.config.replace(reset="lr_rewind",
                                                                             rewind_step=20))
    record = connectivity.lmc(lr_rewind, 1, data_seeds=(3, 4), points=3)
    assert record["start"] == "theta_0"
    assert json.loads(analyses.lmc_path(experiment_dir, 1).read_text())["start"] == "theta_0"


def test_rewind_search_binary_and_its_cache(experiment_dir, monkeypatch):
    result = run_binary("analyze", "rewind_search", f"--experiment_dir={experiment_dir}", "--round=2",
                        "--candidates=40,0,20", "--points=3", "--threshold=0.5")
    assert result.returncode == 0, result.stderr
    search = json.loads(analyses.rewind_search_path(experiment_dir, 2).read_text())
    assert [row["iteration"] for row in search["candidates"]] == [0, 20, 40]
    assert search["earliest_stable"] == analysis.earliest_stable(search["candidates"], 0.5)
    for row in search["candidates"]:  # each candidate's two copies, trained, with their accuracy
        assert [c["data_seed"] for c in row["copies"]] == [1, 2]
        assert row["test_accuracy"] == pytest.approx(np.mean([c["early_stop_test_accuracy"]
                                                              for c in row["copies"]]))
    best = max(search["candidates"], key=lambda row: (row["test_accuracy"], -row["iteration"]))
    assert search["picks"] == {"instability": search["earliest_stable"], "accuracy": best["iteration"]}
    assert f"highest test accuracy at early stop (mean of the copies): iteration {best['iteration']}" in result.stdout
    plotted = run_binary("analyze", "plots", f"--experiment_dir={experiment_dir}")
    assert plotted.returncode == 0, plotted.stderr
    assert (experiment_dir / "plots" / "rewind_search_round_02.png").is_file()
    assert "the highest accuracy at iteration" in (experiment_dir / "report.md").read_text()
    table = result.stdout.splitlines()
    assert table[1].split()[:4] == ["rewind", "it", "test", "acc"]
    assert [line.split()[0] for line in table[2:5]] == ["0", "20", "40"]
    if search["earliest_stable"] not in (None, 0):
        assert f"--reset=rewind --rewind_step={search['earliest_stable']}" in search["command"]
    # The cached weights are reused: no training, same arrays; the last one is round 0's end.
    monkeypatch.setattr(training.Trainer, "train", lambda *a, **k: pytest.fail("trained again"))
    prepared = experiment.load_experiment(experiment_dir)
    _, states = connectivity.rewind_points(prepared, [0, 20, 40])
    for k in (0, 20, 40):
        cached = atomic.read_npz(analyses.rewind_point_path(experiment_dir, k))
        assert all(np.array_equal(cached[key], states[k][key]) for key in cached)
    round0 = connectivity.get_state(experiment.restore_round(prepared, 0), effective=False)
    for key in round0:
        np.testing.assert_allclose(states[40][key], round0[key], atol=1e-5)
        assert not np.array_equal(states[20][key], states[0][key])
    # A rewind experiment's reset point is theta_k: its theta_0 is rebuilt, and is the same.
    rewinding = dataclasses.replace(prepared, config=prepared.config.replace(reset="rewind",
                                                                             rewind_step=20))
    rebuilt = connectivity.get_state(connectivity.initial_model(rewinding), effective=False)
    assert all(np.array_equal(rebuilt[key], states[0][key]) for key in states[0])
    with pytest.raises(ConfigError, match=r"candidates: must be iterations in \[0, train_steps=40\], got 50"):
        connectivity.rewind_search(prepared, 2, [0, 50])


def test_overlap_binary(experiment_dir, tmp_path):
    result = run_binary("analyze", "overlap", f"--experiment_dir={experiment_dir}", "--round=1",
                        "--round_b=2")
    assert result.returncode == 0, result.stderr
    overall = result.stdout.strip().splitlines()[-1].split()
    mask_a = results.round_masks(experiment_dir, 1)
    mask_b = results.round_masks(experiment_dir, 2)
    expected = analysis.mask_overlap(mask_a, mask_b)["overall"]
    assert overall[0] == "overall" and float(overall[4]) == pytest.approx(expected["jaccard"], abs=1e-4)
    # IMP masks are nested, so the overlap is the later round's share of the earlier one.
    assert expected["jaccard"] == pytest.approx(expected["ones_b"] / expected["ones_a"])
    other = tmp_path / "other.npz"
    atomic.write_npz(other, {k: np.ones_like(v) for k, v in mask_a.items()})
    files = run_binary("analyze", "overlap", f"--mask_a={other}",
                       f"--mask_b={results.mask_path(results.round_dir(experiment_dir, 2))}")
    assert files.returncode == 0, files.stderr
    assert "fc1/kernel" in files.stdout
    missing = run_binary("analyze", "overlap", f"--mask_a={other}")
    assert missing.returncode == 2 and "give both --mask_a and --mask_b" in missing.stderr
    wrong = run_binary("analyze", "spectrum")
    assert wrong.returncode == 2
    assert ("expected one command (plots, lmc, rewind_search, overlap, study, taxonomy, stability, "
            "stability_report)") in wrong.stderr


def test_a_round_killed_before_its_record_is_not_finished(experiment_dir, tmp_path):
    """mask.npz (and curve.json) are written before metrics.json: a kill in between leaves no round."""
    copy = tmp_path / "killed"
    copy_results(experiment_dir, copy)
    last, killed = results.round_dir(copy, 2), results.round_dir(copy, 3)
    killed.mkdir()
    atomic.write_npz(results.mask_path(killed), results.round_masks(copy, 2))
    atomic.write_json(results.curve_path(killed), atomic.read_json(results.curve_path(last)))
    assert results.finished_rounds(copy) == [0, 1, 2]
    overlap = run_binary("analyze", "overlap", f"--experiment_dir={copy}", "--round=2", "--round_b=3")
    assert overlap.returncode == 2 and f"--round: {killed} is not a finished round" in overlap.stderr
    run = plots.load_runs([copy])[0]
    assert list(plots.finished_masks(run, [1, 2, 3])) == [1, 2]
    assert plots._mean_curve([run], 3) is None
    assert tensorboard.write_round(copy, 3) is None
    with pytest.raises(ConfigError, match=r"round: .*round_03 is not a finished round \(finished: 0, 1, 2\)"):
        export.prepare(copy, tmp_path / "out", round=3)
