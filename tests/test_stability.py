"""Stability to pruning and to data order: the distances by hand, the picks, the analysis end to end (resumed
after a kill, skipped when finished), its argument checks, and the table over seeds with its claims."""

import json
import math

import numpy as np
import pytest

from tf_lottery import analysis, atomic, experiment, results, stability, training
from tf_lottery.config import ExperimentConfig
from tf_lottery.results import analyses
from tf_lottery.settings import ConfigError
from tf_lottery.study import claims
from tf_lottery.study import stability as stability_study

from conftest import killed_after_save, run_binary
from test_plots import copy_results

# Two masked tensors and a bias; the mask keeps 3 of the kernel's 4 weights and 1 of the vector's 2.
MASKS = {"k": np.array([[1, 0], [1, 1]], np.float32), "v": np.array([0, 1], np.float32)}
FULL = {"k": np.array([[1.0, 2.0], [3.0, 4.0]]), "v": np.array([7.0, 0.0]), "bias": np.array([1.0])}


def test_identical_copies_are_at_distance_zero():
    for measure in (analysis.stability_to_pruning, analysis.stability_to_data_order):
        assert measure(FULL, dict(FULL), MASKS) == {"l2_distance": 0.0, "relative_distance": 0.0}


def test_a_known_perturbation_gives_its_norm_and_pruned_positions_are_left_out():
    # +3 and +4 at kept positions (norm 5); -100 at the pruned kernel position, +9 at the pruned vector
    # position and a different bias: none of them counts.
    moved = {"k": np.array([[4.0, -98.0], [3.0, 8.0]]), "v": np.array([16.0, 0.0]), "bias": np.array([5.0])}
    pruning = analysis.stability_to_pruning(moved, FULL, MASKS)
    assert pruning["l2_distance"] == pytest.approx(5.0)
    # ||m * full|| over the kept positions: 1, 3, 4 and 0 -> sqrt(26).
    assert pruning["relative_distance"] == pytest.approx(5.0 / math.sqrt(26))
    order = analysis.stability_to_data_order(moved, FULL, MASKS)
    assert order["l2_distance"] == pytest.approx(5.0)
    # ||m * moved|| = ||(4, 3, 8, 0)|| = sqrt(89).
    assert order["relative_distance"] == pytest.approx(5.0 / ((math.sqrt(89) + math.sqrt(26)) / 2))
    # The same perturbation on a pruned position only moves nothing.
    assert analysis.stability_to_pruning({**FULL, "k": FULL["k"] + [[0, 50], [0, 0]]}, FULL,
                                         MASKS)["l2_distance"] == 0.0
    with pytest.raises(ValueError, match="the weights have no 'v'"):
        analysis.stability_to_pruning({"k": FULL["k"]}, FULL, MASKS)
    with pytest.raises(ValueError, match="'k' has shape \\(4,\\) in the weights and \\(2, 2\\) in the mask"):
        analysis.stability_to_data_order({**FULL, "k": np.zeros(4)}, FULL, MASKS)


def test_the_picks_of_each_criterion():
    rows = [{"iteration": 0, "instability": 0.30, "test_accuracy": 0.950,
             "pruning_relative_distance": 0.80, "data_order_relative_distance": 0.50},
            {"iteration": 100, "instability": 0.015, "test_accuracy": 0.978,
             "pruning_relative_distance": 0.40, "data_order_relative_distance": 0.21},
            {"iteration": 500, "instability": 0.001, "test_accuracy": 0.980,
             "pruning_relative_distance": 0.30, "data_order_relative_distance": 0.20}]
    found = analysis.rewind_picks(rows, threshold=0.02, accuracy_tolerance=0.003, distance_tolerance=0.1)
    # 0.40 > 1.1 * 0.30, but 0.21 <= 1.1 * 0.20.
    assert found == {"picks": {"instability": 100, "accuracy": 100, "pruning": 500, "data_order": 100},
                     "agree": False}
    found = analysis.rewind_picks(rows, threshold=0.02, accuracy_tolerance=0.003, distance_tolerance=0.4)
    assert found == {"picks": {"instability": 100, "accuracy": 100, "pruning": 100, "data_order": 100},
                     "agree": True}
    none_stable = analysis.rewind_picks(rows, threshold=0.001, accuracy_tolerance=0.0, distance_tolerance=0.0)
    assert none_stable == {"picks": {"instability": None, "accuracy": 500, "pruning": 500, "data_order": 500},
                           "agree": False}


SMALL = dict(dataset="mnist_small", validation_size=200, hidden=(16, 8), train_steps=20, eval_every=10,
             eval_batch_size=500, checkpoint_every=10, steps_per_call=10, rounds=1, jit_compile=False,
             controls=("random_prune",))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A finished 1-round experiment (with random_prune) and its stability record at k = 0 and 10."""
    directory = tmp_path_factory.mktemp("stability") / "exp"
    experiment.run_imp(experiment.prepare(ExperimentConfig.from_flat({**SMALL, "experiment_dir": str(directory)})))
    prepared = experiment.load_experiment(directory, retrainable=True)
    record = stability.analyze(prepared, 1, [10, 0], controls=["random_prune"], points=3)
    return prepared, record


def _state(directory, mask, k, seed, round_index=1):
    run = analyses.stability_run_dir(directory, None if mask == "dense" else round_index, mask, k, seed)
    return atomic.read_npz(analyses.state_path(run)), results.read_record(run)


def _keyed(state, key):
    return next(value for path, value in state.items() if path.endswith(key))


def test_the_analysis_trains_each_copy_once_and_records_both_distances(tiny):
    prepared, record = tiny
    directory = prepared.directory
    assert record == json.loads(analyses.stability_path(directory, 1).read_text())
    assert (record["round"], record["rewind_steps"], record["data_seeds"], record["train_steps"]) == (1, [0, 10],
                                                                                                    [1, 2], 20)
    assert record["theta_0_check"]["matches"] is True
    assert list(record["masks"]) == ["imp", "random_prune"]
    imp_mask = results.round_masks(directory, 1)
    random_mask = results.round_masks(directory, 1, control="random_prune")  # the control's own draw
    for name, masks in (("imp", imp_mask), ("random_prune", random_mask)):
        rows = record["masks"][name]["rows"]
        assert [row["iteration"] for row in rows] == [0, 10]
        for row in rows:
            k = row["iteration"]
            dense, _ = _state(directory, "dense", k, 1)
            (a, record_a), (b, record_b) = _state(directory, name, k, 1), _state(directory, name, k, 2)
            assert all(np.array_equal(mask, atomic.read_npz(results.mask_path(
                analyses.stability_run_dir(directory, 1, name, k, 1)))[key]) for key, mask in masks.items())
            keyed = {key: {m: _keyed(s, key) for m, s in (("a", a), ("b", b), ("full", dense))} for key in masks}
            for key in masks:  # the subnetwork's trained weights are zero where its mask is
                assert np.all(keyed[key]["a"][masks[key] == 0] == 0)
            sub_a, sub_b, full = ({key: keyed[key][m] for key in masks} for m in ("a", "b", "full"))
            assert row["pruning_l2_distance"] == pytest.approx(
                analysis.stability_to_pruning(sub_a, full, masks)["l2_distance"])
            assert row["data_order_relative_distance"] == pytest.approx(
                analysis.stability_to_data_order(sub_a, sub_b, masks)["relative_distance"])
            assert row["pruning_l2_distance"] > 0 and row["data_order_l2_distance"] > 0
            assert row["test_accuracy"] == pytest.approx(
                (record_a["early_stop_test_accuracy"] + record_b["early_stop_test_accuracy"]) / 2)
            errors = [p["error"] for p in row["path"]]
            assert row["instability"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)
            assert not results.checkpoint_dir(analyses.stability_run_dir(directory, 1, name, k, 2)).exists()
        assert {k: v for k, v in record["masks"][name].items() if k != "rows"} == analysis.rewind_picks(
            rows, threshold=0.02, accuracy_tolerance=0.003, distance_tolerance=0.1)
    assert {k: int(m.sum()) for k, m in random_mask.items()} == {k: int(m.sum()) for k, m in imp_mask.items()}
    assert not all(np.array_equal(random_mask[k], imp_mask[k]) for k in imp_mask)
    assert [row["iteration"] for row in record["dense"]] == [0, 10]


def test_a_finished_analysis_trains_nothing_again(tiny, monkeypatch):
    prepared, record = tiny
    monkeypatch.setattr(training.Trainer, "train", lambda *a, **k: pytest.fail("trained again"))
    again = stability.analyze(prepared, 1, [0, 10], controls=["random_prune"], points=3)
    assert again == record


def test_a_killed_analysis_resumes_and_gives_the_same_numbers(tiny, tmp_path, monkeypatch):
    """Killed in its second training (after the full network from theta_0 finished), resumed in a copy of the
    folder without checkpoints (theta_0 rebuilt from the seed, as for a packed folder), with checkpoints
    twice as often as the uninterrupted run: the same numbers."""
    prepared, record = tiny
    copy = tmp_path / "copy"
    copy_results(prepared.directory, copy)
    resumed = experiment.load_experiment(copy, retrainable=True)
    run = lambda: stability.analyze(resumed, 1, [0], points=3, checkpoint_every=5)  # noqa: E731
    killed_after_save(monkeypatch, 6, run)  # four saves per training: the sixth is the second one's at 10
    assert results.is_finished(analyses.stability_run_dir(copy, None, "dense", 0, 1))
    started = analyses.stability_run_dir(copy, 1, "imp", 0, 1)
    assert not results.is_finished(started) and results.checkpoint_dir(started).is_dir()
    trained = []
    original = training.Trainer.train
    monkeypatch.setattr(training.Trainer, "train", lambda self, **k: trained.append(k["name"]) or original(self, **k))
    again = run()
    assert trained == ["stability: imp from theta_0, data seed 1", "stability: imp from theta_0, data seed 2"]
    assert again["masks"]["imp"]["rows"] == record["masks"]["imp"]["rows"][:1]
    assert again["dense"] == record["dense"][:1] and again["theta_0_check"]["matches"] is True


def test_bad_arguments_are_refused_naming_the_flag(tiny):
    prepared, _ = tiny
    cases = [
        (dict(round_index=0), "round: must be a pruned round"),
        (dict(round_index=5), "round: must be a finished round"),
        (dict(rewind_steps=[0, 30]), r"rewind_steps: must be iterations in \[0, train_steps=20\]"),
        (dict(rewind_steps=[-1]), "rewind_steps: must be integers >= 0"),
        (dict(controls=["random_reinit"]), "controls: stability compares IMP's mask with random_prune"),
        (dict(controls=["random_prune", "random_prune"]), "controls: random_prune is listed twice"),
        (dict(train_steps=0), r"train_steps: must be an iteration count in \[1, 16,777,216\], got 0"),
        (dict(checkpoint_every=-1), r"checkpoint_every: must be an iteration count in \[1, 16,777,216\], got -1"),
        (dict(accuracy_tolerance=math.nan), r"accuracy_tolerance: must be in \[0, 1\], got nan"),
        (dict(distance_tolerance=-1), r"distance_tolerance: must be in \[0, 10\], got -1"),
        (dict(threshold=0), r"threshold: must be in \(0, 1\]"),
        (dict(data_seeds=(3, 3)), "data_seeds: must be two different seeds"),
    ]
    for changes, message in cases:
        arguments = {"round_index": 1, "rewind_steps": [0], **changes}
        with pytest.raises(ConfigError, match=message):
            stability.plan(prepared, arguments.pop("round_index"), arguments.pop("rewind_steps"), **arguments)


def test_the_binary_reads_the_published_flagfile_and_refuses_in_one_line(tiny):
    """configs/analyses/stability_lenet300_mnist.cfg is read by the stability command: its rewind points
    are past this tiny experiment's 20 iterations."""
    prepared, _ = tiny
    result = run_binary("analyze", "stability", "--flagfile=configs/analyses/stability_lenet300_mnist.cfg",
                        f"--experiment_dir={prepared.directory}", "--round=1")
    assert result.returncode == 2
    assert result.stderr.strip() == ("analyze: error: --rewind_steps: must be iterations in [0, train_steps=20] "
                                     "of round 0, got 0,100,500,2000")


def _record(seed, imp, random, dense_at_0=0.98, steps=(0, 100, 500)):
    """A stability record whose rows hold `imp` and `random` {field: [value per k]}."""
    def rows(values):
        return [{"iteration": k, **{f: v[i] for f, v in values.items()}} for i, k in enumerate(steps)]

    masks = {name: {"rows": rows(values), **analysis.rewind_picks(rows(values), 0.02, 0.003, 0.1)}
             for name, values in (("imp", imp), ("random_prune", random))}
    return {"round": 3, "seed": seed, "remaining_fraction": 0.513, "rewind_steps": list(steps), "data_seeds": [1, 2],
            "train_steps": 1000, "experiment_train_steps": 50000, "points": 11, "threshold": 0.02,
            "accuracy_tolerance": 0.003, "distance_tolerance": 0.1, "masks": masks,
            "dense": [{"iteration": k, "early_stop_test_accuracy": dense_at_0} for k in steps]}


def test_the_table_over_seeds_and_the_claims(tmp_path):
    folders = []
    for seed in range(3):
        e = 0.01 * seed  # seed-to-seed noise
        imp = {"test_accuracy": [0.95 + e, 0.975 + e, 0.976 + e], "instability": [0.3, 0.01, 0.0],
               "pruning_relative_distance": [0.8 + e, 0.4 + e, 0.3 + e],
               "data_order_relative_distance": [0.5 + e, 0.3 + e, 0.2 + e]}
        random = {"test_accuracy": [0.9, 0.9, 0.9], "instability": [0.3, 0.3, 0.3],
                  "pruning_relative_distance": [0.9 + 2 * e, 0.9, 0.9],
                  "data_order_relative_distance": [0.4, 0.4 + e, 0.4]}
        folder = tmp_path / f"seed_{seed}"
        atomic.write_json(analyses.stability_path(folder, 3), _record(seed, imp, random))
        folders.append(folder)
    rounds = stability_study.read(folders)
    found = {(f.claim.split(", ", 1)[1][:40], f.verdict) for f in stability_study.stability_claims(rounds)}
    verdicts = [f.verdict for f in stability_study.stability_claims(rounds)]
    # pruning: IMP lower at every k; data order: IMP higher at k=0 -> disagrees; k=0 fails (instability
    # 0.3), so the early gains are judged: all three agree; accuracy at 100 vs 500 differs by 0.1 points in
    # every seed, inside the 0.3-point margin -> equivalent.
    assert verdicts == [claims.AGREES, claims.DISAGREES, claims.AGREES, claims.AGREES, claims.AGREES,
                        claims.AGREES], found
    text = stability_study.report(folders)
    assert "| 51.3 | imp | 0 | 3 | 0.9600 [0.9352, 0.9848] |" in text
    assert "| 51.3 | imp | 100 (seeds: 100, 100, 100) |" in text
    path, written = stability_study.write_report(folders)
    assert path == analyses.stability_report_path(folders[0]) and path.read_text() == written == text
    atomic.write_json(analyses.stability_path(tmp_path / "again", 3), _record(1, imp, random))
    with pytest.raises(ConfigError, match="experiment_dir: .*again has seed 1 like another folder given"):
        stability_study.read(folders + [tmp_path / "again"])
    with pytest.raises(ConfigError, match="experiment_dir: .* has no stability record"):
        stability_study.read([tmp_path / "empty"])


@pytest.mark.slow
def test_the_binaries_end_to_end_on_the_bundled_subset(tmp_path):
    """The quickstart's LeNet-300-100 on mnist_small, 1 round of 300 iterations, rewind points 0 and 50."""
    directory = tmp_path / "quick"
    made = run_binary("lottery", "--flagfile=configs/quickstart.cfg", "--rounds=1", "--train_steps=300",
                      "--eval_every=50", "--checkpoint_every=100", f"--experiment_dir={directory}")
    assert made.returncode == 0, made.stderr
    result = run_binary("analyze", "stability", f"--experiment_dir={directory}", "--round=1",
                        "--rewind_steps=0,50", "--controls=random_prune", "--points=5")
    assert result.returncode == 0, result.stderr
    record = json.loads(analyses.stability_path(directory, 1).read_text())
    lines = result.stdout.splitlines()
    for name in ("imp", "random_prune"):
        header = lines.index(f"{name}:")
        assert lines[header + 1].split()[:4] == ["rewind", "it", "test", "acc"]
        assert [line.split()[0] for line in lines[header + 2:header + 4]] == ["0", "50"]
        assert lines[header + 4].startswith("picks: instability ")
        rows = record["masks"][name]["rows"]
        assert float(lines[header + 2].split()[1]) == pytest.approx(rows[0]["test_accuracy"], abs=1e-4)
    report = run_binary("analyze", "stability_report", f"--experiment_dir={directory}")
    assert report.returncode == 0, report.stderr
    assert "## Claims (" in report.stdout and "| 80.0 | imp | 0 | 1 |" in report.stdout
