"""Studies without Ray: grid parsing and checks, point folders, the refusal of a changed study, replicates,
the intervals and the study report on hand-written result folders."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from tf_lottery import results
from tf_lottery.config import ExperimentConfig
from tf_lottery.settings import ConfigError
from tf_lottery.study import folder
from tf_lottery.study import grid
from tf_lottery.study import inference
from tf_lottery.study import report
from tf_lottery.study import statistics

REPO = pathlib.Path(__file__).resolve().parents[1]
BASE = ExperimentConfig.from_flat(dataset="mnist_small", validation_size=500, hidden=[16, 8],
                                  train_steps=20, eval_every=10, rounds=1)


def test_points_are_the_product_in_lottery_folders(tmp_path):
    plan = grid.plan(BASE, ["seed=0,1", "prune_scope=layer,global"], tmp_path / "s")
    assert [p.values for p in plan.points] == [
        {"seed": 0, "prune_scope": "layer"}, {"seed": 0, "prune_scope": "global"},
        {"seed": 1, "prune_scope": "layer"}, {"seed": 1, "prune_scope": "global"}]
    for point in plan.points:
        lottery = BASE.replace(root_dir=str(tmp_path / "s"), **point.values)
        assert point.directory == lottery.directory()
        assert point.config.result_fields() == lottery.result_fields()


def test_linked_axes_list_values_and_subfolders_for_settings_outside_the_hash(tmp_path):
    plan = grid.plan(BASE, ["reset:rewind_step=init:0,rewind:10", "hidden=16,8;8,4"], tmp_path)
    assert [(p.config.lottery.reset, p.config.lottery.rewind_step, p.config.model.hidden)
            for p in plan.points] == [("init", 0, (16, 8)), ("init", 0, (8, 4)),
                                      ("rewind", 10, (16, 8)), ("rewind", 10, (8, 4))]
    assert plan.points[2].directory.name.startswith("imp_lenet_mnist_small_rewind10_")
    by_dir = grid.plan(BASE.replace(dataset="mnist"), ["data_dir=/a,/b", "seed=0,1"], tmp_path)
    assert [p.directory.relative_to(tmp_path).parts[0] for p in by_dir.points] == [
        "data_dir_0", "data_dir_0", "data_dir_1", "data_dir_1"]
    assert by_dir.points[0].directory.name == by_dir.points[2].directory.name
    from_dict = grid.plan(BASE, {"seed": [0, 1], ("reset", "rewind_step"): [("init", 0), ("rewind", 10)]},
                          tmp_path)
    assert [a.entry for a in from_dict.axes] == ["seed=0,1", "reset:rewind_step=init:0,rewind:10"]


@pytest.mark.parametrize("entries, message", [
    (["seed=0,x"], "grid: seed=0,x: flag --seed=x: invalid literal"),
    (["sed=1,2"], "grid: sed=1,2: unknown setting 'sed'"),
    (["seed=0,0"], "grid: seed=0,0: gives a value twice"),
    (["prune_scope=layer,bogus"], "grid: prune_scope=layer,bogus: prune_scope: must be one of"),
    (["seed=-1"], "grid: seed=-1: seed: must be >= 0"),
    (["reset=init,rewind", "rewind_step=0,5"], "grid: rewind_step=0,5: rewind_step: is only used with "
                                                "--reset=rewind, lr_rewind or finetune, got 5; settings that vary together"),
    (["root_dir=a,b"], "grid: root_dir=a,b: 'root_dir' cannot be an axis"),
    (["seed"], "grid: seed: must look like name=value1,value2"),
    (["seed=1", "seed=2"], "grid: seed=2: 'seed' is already an axis in seed=1"),
    (["reset:rewind_step=rewind"], "must give 2 values joined by ':'"),
])
def test_bad_grid_entries_name_the_entry(tmp_path, entries, message):
    with pytest.raises(ConfigError) as error:
        grid.plan(BASE, entries, tmp_path)
    assert message in str(error.value)
    assert not any(tmp_path.iterdir())


def _study(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "binaries.study", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_the_binary_refuses_bad_input_in_one_line_before_anything(tmp_path):
    bad = _study("--dataset=mnist_small", "--grid=seed=0,x", f"--study_dir={tmp_path / 's'}")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["study: error: --grid: seed=0,x: flag --seed=x: invalid "
                                               "literal for int() with base 10: 'x'"]
    both = _study("--dataset=mnist_small", "--replicates=2", "--grid=seed=0,1",
                  f"--study_dir={tmp_path / 's'}")
    assert both.returncode == 2 and "--replicates: give either --replicates or a seed axis" in both.stderr
    assert not (tmp_path / "s").exists()


def test_a_changed_grid_or_base_config_is_refused_naming_the_change(tmp_path):
    plan = grid.plan(BASE, ["seed=0,1"], tmp_path / "s")
    folder.check_folder(plan)
    study = folder.Study(plan)
    study.write_spec()
    study.write()
    assert [e["state"] for e in folder.read_study(tmp_path / "s")[1]["points"]] == ["pending"] * 2
    folder.check_folder(grid.plan(BASE.replace(eval_batch_size=100), ["seed=0,1"], tmp_path / "s"))
    with pytest.raises(ConfigError, match=r"another grid \(was --grid=seed=0,1, now --grid=seed=0,1,2\)"):
        folder.check_folder(grid.plan(BASE, ["seed=0,1,2"], tmp_path / "s"))
    with pytest.raises(ConfigError, match=r"differs in train_steps \(20 -> 30\)") as error:
        folder.check_folder(grid.plan(BASE.replace(train_steps=30), ["seed=0,1"], tmp_path / "s"))
    assert error.value.field == "train_steps"
    before = sorted(p.name for p in (tmp_path / "s").iterdir())
    refused = _study("--dataset=mnist_small", "--validation_size=500", "--hidden=16,8",
                     "--train_steps=20", "--eval_every=10", "--rounds=1", "--grid=seed=0,1,2",
                     f"--study_dir={tmp_path / 's'}")
    assert refused.returncode == 2, refused.stderr
    assert "study: error: --grid:" in refused.stderr and "another grid" in refused.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == before


def test_the_plan_shows_each_points_finished_rounds_and_writes_nothing(tmp_path):
    flags = ["--dataset=mnist_small", "--validation_size=500", "--hidden=16,8", "--train_steps=20",
             "--eval_every=10", "--rounds=2", "--controls=random_reinit", "--grid=seed=0,1"]
    plan = grid.plan(BASE.replace(rounds=2, controls=["random_reinit"]), ["seed=0,1"], tmp_path / "s")
    first = plan.points[0].directory
    for r in range(3):
        results.write_round(results.round_dir(first, r), None, {"round": r})
    results.write_round(results.round_dir(first, 1, "random_reinit"), None, {"round": 1})
    results.round_dir(first, 2, "random_reinit").mkdir(parents=True)  # started, not finished
    assert folder.point_rounds(plan.points[0].config, first) == (4, 5)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    shown = _study(*flags, "--plan", f"--study_dir={tmp_path / 's'}")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"study: {tmp_path / 's'} (2 points)"
    assert lines[1].split() == ["4/5", "#0", "seed=0", first.name]
    assert lines[2].split() == ["0/5", "#1", "seed=1", plan.points[1].directory.name]
    assert lines[3] == "0 of 2 points finished; 4 of 10 rounds (IMP and controls)"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("flagfile", sorted(p.relative_to(REPO).as_posix()
                                            for p in (REPO / "configs" / "studies").glob("*.cfg")))
def test_every_published_study_config_is_a_valid_plan(flagfile, tmp_path):
    shown = _study(f"--flagfile={flagfile}", "--plan", f"--study_dir={tmp_path / 's'}")
    assert shown.returncode == 0, shown.stderr
    points = int(shown.stdout.splitlines()[0].split("(")[1].split()[0])
    assert points > 1 and shown.stdout.splitlines()[-1].startswith(f"0 of {points} points finished")
    assert not (tmp_path / "s").exists()


def test_replicates_are_a_study_over_seeds(tmp_path):
    config = BASE.replace(replicates=3, seed=4, experiment_dir=str(tmp_path / "exp"))
    plan = grid.replicates(config)
    assert [a.entry for a in plan.axes] == ["seed=4,5,6"]
    assert [p.directory for p in plan.points] == [tmp_path / "exp" / f"seed_{s}" for s in (4, 5, 6)]
    base, entries = grid.with_replicates(BASE.replace(replicates=2), ["prune_scope=layer,global"])
    assert base.lottery.replicates == 1 and entries == ["prune_scope=layer,global", "seed=0,1"]


def test_the_binary_explains_how_to_install_ray_when_it_is_missing():
    hidden = ("import sys, runpy; sys.modules['ray'] = None; sys.argv = ['study', '--grid=seed=0,1']; "
              "runpy.run_module('binaries.study', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", hidden], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "Ray, which is not installed; install it with pip install 'ray[default]" in result.stderr


def test_differences_get_t_intervals_paired_by_seed_or_welchs_not_a_bootstrap():
    a, b = np.array([0.8901, 0.8906, 0.8915]), np.array([0.8857, 0.8848, 0.8896])  # 3 seeds
    differences = a - b
    mean, low, high = inference.paired_difference(a, b)
    half = 4.302653 * differences.std(ddof=1) / np.sqrt(3)  # t quantile, 2 degrees of freedom
    assert (low, high) == pytest.approx((differences.mean() - half, differences.mean() + half), rel=1e-4)
    assert low < differences.min() and high > differences.max()  # a bootstrap stays inside the range
    other = [0.88, 0.89, 0.87, 0.885]
    welch = inference.welch_difference(a, other)
    va, vb = a.var(ddof=1) / 3, np.var(other, ddof=1) / 4
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert welch.df == pytest.approx(df) and 3 < df < 4
    assert welch.high - welch.value == pytest.approx(stats.t.ppf(0.975, df) * np.sqrt(va + vb))
    five_a, five_b = [0.90, 0.92, 0.94, 0.91, 0.93], [0.88, 0.91, 0.90, 0.90, 0.92]
    paired = inference.paired_difference(five_a, five_b)
    unpaired = inference.welch_difference(five_a, five_b)
    assert paired.value == pytest.approx(0.018) and unpaired.value == pytest.approx(0.018)
    assert unpaired.high - unpaired.low > paired.high - paired.low  # pairing removes the seed's noise


def test_a_ratio_of_independent_means_gets_fiellers_interval():
    slow, fast = np.array([8400.0, 8400, 7300]), np.array([4100.0, 2800, 4000])
    ratio, low, high = inference.fieller_ratio(slow, fast)
    assert ratio == pytest.approx(slow.mean() / fast.mean())
    va, vb = slow.var(ddof=1) / 3, fast.var(ddof=1) / 3
    df = (va + ratio ** 2 * vb) ** 2 / (va ** 2 / 2 + (ratio ** 2 * vb) ** 2 / 2)  # Welch, at the ratio
    t = stats.t.ppf(0.975, df)
    for bound in (low, high):  # the ends solve (mean(a) - R mean(b))^2 = t^2 (va + R^2 vb)
        assert (slow.mean() - bound * fast.mean()) ** 2 == pytest.approx(t ** 2 * (va + bound ** 2 * vb))
    assert low < ratio < high
    noisy = inference.fieller_ratio([1.0, 2.0, 3.0], [0.1, -0.1, 0.3])
    assert (noisy.low, noisy.high) == (None, None)  # the denominator is not clear of zero: unbounded


def _fake_point(directory, config, seed, offset):
    """A finished one-round point folder with a random_reinit control: config.json and summary.json."""
    def record(r, accuracy):
        return {"round": r, "remaining_fraction": 0.8 ** r, "early_stop_iteration": 100 - 10 * r,
                "early_stop_test_accuracy": accuracy, "final_test_accuracy": accuracy - 0.01,
                "wall_seconds": 1.0}
    rng = np.random.default_rng(seed)
    results.write_config(directory, config)
    results.update_summary(directory, [record(r, 0.9 + offset + 0.01 * r + 0.002 * rng.random())
                                       for r in range(2)])
    results.update_summary(directory, [record(1, 0.88 + 0.002 * rng.random())], control="random_reinit")


def _scope_study(study_dir):
    """A finished 3-seed x prune_scope study of fake points; the global group is 0.02 more accurate."""
    plan = grid.plan(BASE.replace(controls=["random_reinit"]), ["seed=0,1,2", "prune_scope=layer,global"],
                     study_dir)
    study = folder.Study(plan)
    study.write_spec()
    for point in plan.points:
        offset = 0.02 if point.values["prune_scope"] == "global" else 0.0
        _fake_point(point.directory, point.config, point.values["seed"], offset)
        study.update(point.index, state="finished")
    return statistics.load(study_dir)


def test_the_study_report_groups_by_axes_with_intervals(tmp_path):
    data = _scope_study(tmp_path / "s")
    assert [g.label for g in data.groups] == ["prune_scope=layer", "prune_scope=global"]
    assert [len(g.runs) for g in data.groups] == [3, 3]
    rows = statistics.round_stats(data.groups[1], "early_stop_test_accuracy")
    assert [(row.round, row.n) for row in rows] == [(0, 3), (1, 3)]
    (axis, position, _, group, reference), = statistics.comparisons(data)
    assert (axis.name, position, group.label, reference.label) == (
        "prune_scope", 1, "prune_scope=global", "prune_scope=layer")
    estimate = statistics.difference_rows((group, None), (reference, None), "early_stop_test_accuracy")[0].estimate
    mean, low, high = estimate
    assert (estimate.n, estimate.method) == (3, "paired t") and 0.015 < low <= mean <= high < 0.025
    path, figures = report.make_report(tmp_path / "s")
    text = path.read_text()
    for part in ("## Group: prune_scope=layer", "## Group: prune_scope=global",
                 "### prune_scope=layer: IMP - random_reinit", "### prune_scope=global minus "
                 "prune_scope=layer", "| 1 | 80.00 |", "[95% CI]", "study_accuracy_vs_remaining.png"):
        assert part in text, part
    assert all(p.png.is_file() and p.svg.is_file() for p in figures)
    assert json.loads(folder.study_path(tmp_path / "s").read_text())["counts"]["finished"] == 6
    # Each point trained 3 rounds of 1 s (IMP 0-1, the control's 1): its compute, and the total.
    assert text.count("| finished | 3 | 3 s |") == 6
    assert "Training time over the finished points: 18 s in 18 rounds" in text


def test_t_interval_of_a_mean():
    low, high = statistics.t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 4.302653 / np.sqrt(3), 2 + 4.302653 / np.sqrt(3)), rel=1e-6)
    assert statistics.t_interval([1.0]) == (None, None)


def test_a_controls_further_draws_are_averaged_within_their_seed(tmp_path):
    plan = grid.plan(BASE.replace(controls=["random_reinit", "random_reinit.2@1"]), ["seed=0,1,2"],
                     tmp_path / "s")
    study = folder.Study(plan)
    study.write_spec()
    for point in plan.points:
        _fake_point(point.directory, point.config, point.values["seed"], 0.0)
        extra = {"round": 1, "remaining_fraction": 0.8, "early_stop_iteration": 50,
                 "early_stop_test_accuracy": 0.80, "final_test_accuracy": 0.79, "wall_seconds": 1.0}
        results.update_summary(point.directory, [extra], control="random_reinit.2")
        study.update(point.index, state="finished")
    data = statistics.load(tmp_path / "s")
    assert data.controls() == ["random_reinit"]
    group, = data.groups
    row, = statistics.round_stats(group, "early_stop_test_accuracy", "random_reinit")
    first = [group.runs[k].records("random_reinit")[1]["early_stop_test_accuracy"] for k in group.runs]
    # The seed is the unit: 3 seeds of 2 draws each, averaged within the seed first.
    assert (row.n, row.draws) == (3, 6) and row.mean == pytest.approx(np.mean([(f + 0.80) / 2 for f in first]))
    assert row.within_sd == pytest.approx(np.sqrt(np.mean([(f - 0.80) ** 2 / 2 for f in first])))
    assert row.ci_low < row.mean < row.ci_high
    (_, _, estimate), = statistics.difference_rows((group, None), (group, "random_reinit"),
                                                   "early_stop_test_accuracy")
    imp = [group.runs[k].records()[1]["early_stop_test_accuracy"] for k in group.runs]
    assert (estimate.n, estimate.method) == (3, "paired t")
    assert estimate.value == pytest.approx(np.mean(imp) - row.mean)
    path, figures = report.make_report(tmp_path / "s")
    text = path.read_text()
    assert "### all points: control random_reinit" in text and "| 3 | 6 |" in text
    assert {p.name for p in figures} >= {"study_accuracy_controls", "study_early_stop_controls"}


def test_a_ticket_versus_control_gap_is_compared_between_groups(tmp_path):
    # Per seed, IMP at round 1 is 0.9 + offset (+ noise); the control is 0.88 (+ noise). The global
    # group's gap is therefore 0.02 larger than the layer group's, seed by seed up to the noise.
    data = _scope_study(tmp_path / "s")
    (_, _, _, group, reference), = statistics.comparisons(data)
    (r, remaining, estimate), = statistics.gap_difference_rows(
        group, reference, "random_reinit", "early_stop_test_accuracy")
    n, (mean, low, high) = estimate.n, estimate
    gaps = {g.label: [run.records()[1]["early_stop_test_accuracy"]
                      - run.records("random_reinit")[1]["early_stop_test_accuracy"]
                      for _, run in sorted(g.runs.items())] for g in (group, reference)}
    expected = np.mean(np.subtract(gaps["prune_scope=global"], gaps["prune_scope=layer"]))
    assert (r, n) == (1, 3) and remaining == pytest.approx(80.0)
    assert mean == pytest.approx(expected) and 0.015 < low <= mean <= high < 0.025
    text = report.make_report(tmp_path / "s")[0].read_text()
    assert "## Ticket-versus-control gap, group versus group" in text
    assert "### prune_scope=global minus prune_scope=layer: IMP - random_reinit" in text
