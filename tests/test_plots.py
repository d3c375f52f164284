"""Figures, report.md and TensorBoard runs from a small real experiment folder, and from replicates."""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import tf_lottery as tfl
from tf_lottery import plots, report, results, tensorboard
from tf_lottery.config import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
FIGURES = ("accuracy_vs_remaining", "early_stop_vs_remaining", "test_accuracy_curves", "layer_remaining",
           "first_layer_inputs")


def run_binary(module, *args):
    return subprocess.run([sys.executable, "-m", f"binaries.{module}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def small_experiment(tmp_path_factory):
    """A 2-round IMP run plus random_reinit on mnist_small (LeNet-32-16), made once per session."""
    directory = tmp_path_factory.getbasetemp() / "small_experiment"
    if not results.is_finished(results.round_dir(directory, 2, control="random_reinit")):
        result = run_binary(
            "lottery", "--dataset=mnist_small", "--validation_size=500", "--hidden=32,16",
            "--train_steps=40", "--eval_every=20", "--checkpoint_every=20", "--eval_batch_size=1000",
            "--rounds=2", "--controls=random_reinit", f"--experiment_dir={directory}")
        assert result.returncode == 0, result.stderr
    return directory


def copy_results(source, target):
    """A copy of an experiment folder's results files, without checkpoints and analyze outputs."""
    skipped = [results.CHECKPOINTS] + [path(source).name for path in (
        results.plots_dir, results.tensorboard_dir, results.analysis_dir)]
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*skipped))


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory):
    return small_experiment(tmp_path_factory)


def test_plots_command_writes_figures_report_and_tensorboard(experiment_dir):
    result = run_binary("analyze", "plots", f"--experiment_dir={experiment_dir}")
    assert result.returncode == 0, result.stderr
    out = results.plots_dir(experiment_dir)
    for name in FIGURES:
        png, svg = out / f"{name}.png", out / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
        assert "<svg" in svg.read_text()[:1000], name
        assert str(png) in result.stdout and str(svg) in result.stdout
    text = results.report_path(experiment_dir).read_text()
    assert "| round | remaining % | early-stop it | test acc @es | final test acc | seconds |" in text
    assert re.search(r"^\| 0 \| 100\.00 \| \d+ \| 0\.\d{4} \| 0\.\d{4} \|", text, re.M)
    assert re.search(r"^\| 2 \| 64\.11 \|", text, re.M)
    assert "## Control: random_reinit" in text and "## Weights remaining per layer" in text
    summary = results.read_summary(experiment_dir)
    imp, reinit = summary["rounds"][2], summary["controls"]["random_reinit"][-1]
    assert "## IMP against the random_reinit control" in text
    assert (f"| 2 | 64.11 | {imp['early_stop_iteration']} | {imp['early_stop_test_accuracy']:.4f} | "
            f"{imp['final_test_accuracy']:.4f} | {reinit['early_stop_iteration']} | "
            f"{reinit['early_stop_test_accuracy']:.4f} | {reinit['final_test_accuracy']:.4f} |") in text
    assert re.search(r"^\| 0 \| 100\.00 \| \d+ \| 0\.\d{4} \| 0\.\d{4} \|  \|  \|  \|$", text, re.M)
    links = re.findall(r"\]\(([^)]+\.(?:png|svg))\)", text)
    # The folder is shared with test_analysis, whose rewind-point search adds its own figure.
    searched = [f"rewind_search_round_{p.stem.split('_')[-1]}"
                for p in sorted((experiment_dir / "analysis").glob("rewind_search_round_*.json"))]
    assert sorted(links) == sorted(f"plots/{n}.{ext}" for n in FIGURES + tuple(searched)
                                   for ext in ("png", "svg"))
    assert all((experiment_dir / link).is_file() for link in links)
    rounds = tensorboard.read_scalars(tensorboard.tb_dir(experiment_dir))
    assert set(rounds) == {"rounds/early_stop_test_accuracy", "rounds/final_test_accuracy",
                           "rounds/early_stop_iteration", "rounds/remaining_percent"}
    assert [step for step, _ in rounds["rounds/final_test_accuracy"]] == [0, 1, 2]
    assert rounds["rounds/final_test_accuracy"][2][1] == pytest.approx(
        summary["rounds"][2]["final_test_accuracy"])
    curve = tensorboard.read_scalars(tensorboard.tb_dir(experiment_dir, 1))
    assert set(curve) == {"loss/train", "loss/val", "loss/test", "accuracy/val", "accuracy/test",
                          "learning_rate", "sparsity/remaining_percent"}
    assert [step for step, _ in curve["accuracy/test"]] == [0, 20, 40]
    assert [step for step, _ in curve["loss/train"]] == [20, 40]
    assert curve["learning_rate"][0][1] == pytest.approx(1.2e-3)
    assert curve["sparsity/remaining_percent"][0][1] == pytest.approx(80.06, abs=0.01)
    control = tensorboard.read_scalars(tensorboard.tb_dir(experiment_dir, control="random_reinit"))
    assert [step for step, _ in control["rounds/early_stop_test_accuracy"]] == [1, 2]
    assert tensorboard.read_scalars(tensorboard.tb_dir(experiment_dir, 2, control="random_reinit"))


def _replicate(source, target, shift):
    """A copy of an experiment folder whose accuracies are moved by `shift` (a stand-in replicate)."""
    copy_results(source, target)
    summary = json.loads(results.summary_path(target).read_text())
    for record in summary["rounds"] + [r for rs in summary["controls"].values() for r in rs]:
        record["early_stop_test_accuracy"] += shift
    results.summary_path(target).write_text(json.dumps(summary))
    curve_path = results.curve_path(results.round_dir(target, 1))
    curve = json.loads(curve_path.read_text())
    for record in curve:
        record["test_accuracy"] += shift
    curve_path.write_text(json.dumps(curve))


def test_replicates_are_averaged_with_a_band(experiment_dir, tmp_path):
    parent = tmp_path / "replicates"
    _replicate(experiment_dir, parent / "seed_0", 0.0)
    _replicate(experiment_dir, parent / "seed_1", 0.02)
    runs = plots.load_runs([parent])
    assert [r.directory.name for r in runs] == ["seed_0", "seed_1"]
    rows = plots.aggregate(runs, "early_stop_test_accuracy")
    first = runs[0].records()
    for r, remaining, mean, low, high in rows:
        assert remaining == pytest.approx(100 * first[r]["remaining_fraction"])
        assert (low, high) == pytest.approx((first[r]["early_stop_test_accuracy"],
                                             first[r]["early_stop_test_accuracy"] + 0.02))
        assert mean == pytest.approx(low + 0.01)
    path, written = report.make_report([parent], rounds_to_plot=[1, 2])
    assert sorted(p.name for p in written) == sorted(FIGURES)
    assert all(p.png.stat().st_size > 0 and p.svg.stat().st_size > 0 for p in written)
    assert path == results.report_path(parent)
    text = path.read_text()
    assert "## IMP rounds across runs" in text and "## Control across runs: random_reinit" in text
    assert "(`seed_1`)" in text and "](plots/test_accuracy_curves.png)" in text
    reinit = runs[0].records("random_reinit")[2]["early_stop_test_accuracy"]
    assert f"| {reinit + 0.01:.4f} ({reinit:.4f}-{reinit + 0.02:.4f}) |" in report.paired_table(
        runs, "random_reinit").splitlines()[-1]
    assert tensorboard.tb_dir(parent / "seed_1").is_dir()
    shutil.rmtree(results.tensorboard_dir(parent / "seed_0"))
    tensorboard.log_round(parent / "seed_0", 2, control="random_reinit")
    control_tb = tensorboard.tb_dir(parent / "seed_0", control="random_reinit")
    assert sorted(p.name for p in control_tb.iterdir())[-1] == "round_02"
    assert tensorboard.read_scalars(control_tb) and tensorboard.read_scalars(control_tb / "round_02")


def test_bad_folders_and_rounds_are_named(experiment_dir, tmp_path):
    with pytest.raises(ConfigError, match="experiment_dir: .* has no config.json"):
        plots.load_runs([tmp_path])
    with pytest.raises(ConfigError, match=r"rounds_to_plot: rounds 7 are not finished \(finished: 0, 1"):
        plots.write_plots([experiment_dir], rounds_to_plot=[1, 7])
    bad = run_binary("analyze", "plots", f"--experiment_dir={tmp_path}")
    assert bad.returncode == 2 and bad.stderr.strip().endswith("is it an experiment folder?")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_curve_scalars_replace_old_events_and_follow_the_schedule(tmp_path):
    curve = [{"iteration": 0, "train_loss": None, "val_loss": 2.0, "val_accuracy": 0.1,
              "test_loss": 2.1, "test_accuracy": 0.1},
             {"iteration": 50, "train_loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.7,
              "test_loss": 0.8, "test_accuracy": 0.75}]
    config = tfl.TrainingConfig(learning_rate=0.1, lr_milestones=(40,), lr_gamma=0.5)
    tensorboard.write_curve_scalars(tmp_path, curve, config, remaining_fraction=0.25)
    tensorboard.write_curve_scalars(tmp_path, curve, config, remaining_fraction=0.25)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    scalars = tensorboard.read_scalars(tmp_path)
    assert scalars["accuracy/test"] == [(0, pytest.approx(0.1)), (50, pytest.approx(0.75))]
    assert scalars["loss/train"] == [(50, 1.0)]
    assert scalars["learning_rate"] == [(0, pytest.approx(0.1)), (50, pytest.approx(0.05))]
    assert scalars["sparsity/remaining_percent"] == [(0, 25.0), (50, 25.0)]


def test_the_setup_sentence_names_structure_and_per_kind_rates():
    config = tfl.ExperimentConfig.from_flat(model="conv2", dataset="cifar10", prune_fraction=0.2,
                                            conv_prune_fraction=0.1, output_prune_fraction=0.1,
                                            structure="filter", rounds=3).flat()
    text = report.describe(config)
    assert text.startswith("conv2 on cifar10, 3 rounds pruning 20% of the remaining filter units per round "
                           "(layer scope, 10% of the convolutions, 10% of the output layer)")
    assert "20% of the remaining weights per round" in report.describe(tfl.ExperimentConfig().flat())


def test_every_control_gets_a_style_of_its_own():
    styles = plots._styles(11)
    assert len(styles) == 11 and len(set(styles)) == 11
    assert styles[:4] == [("C1", "s", "--"), ("C2", "^", "-."), ("C3", "v", ":"), ("C4", "D", "--")]
