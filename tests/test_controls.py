"""The paper's controls on the masks of an IMP run: what each one trains, records and resumes."""

import json

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import atomic, controls, edge_popup, experiment, imp, pruning, results, rounds, training
from tf_lottery.pruning import saliency
from tf_lottery.results import checkpoints
from tf_lottery.study import folder as study_folder

from conftest import run_binary, tiny_model, tiny_training

PRUNING = tfl.PruningConfig(fraction=0.3, output_fraction=0.1)


@pytest.fixture(scope="module")
def finished(splits, tmp_path_factory):
    """An IMP experiment of 2 rounds plus all three controls, with each control's start weights."""
    directory = tmp_path_factory.mktemp("exp")
    training.configure_runtime(0)
    model = tfl.wrap(tiny_model())
    theta0 = {k: v.copy() for k, v in tfl.raw_weights(model).items()}
    config = tiny_training(train_steps=20)
    imp.run_rounds(model, splits, rounds=2, training_config=config, pruning_config=PRUNING,
                   experiment_dir=directory)
    round0_trained = None
    starts = {}
    original = rounds.train_round

    def capture(trainer, model, directory_, round_index, **kwargs):
        starts[kwargs["name"]] = (tfl.raw_weights(model), tfl.get_masks(model))
        return original(trainer, model, directory_, round_index, **kwargs)

    rounds.train_round = capture
    try:
        checkpoints.restore_model(model, results.round_dir(directory, 0))
        round0_trained = tfl.raw_weights(model)
        records = controls.run_controls(
            model, splits, names=("random_reinit", "random_prune", "one_shot"), rounds=2,
            training_config=config, pruning_config=PRUNING, experiment_dir=directory,
            build_model=lambda seed: tiny_model(seed))
    finally:
        rounds.train_round = original
    return {"dir": directory, "theta0": theta0, "trained0": round0_trained, "starts": starts,
            "records": records, "splits": splits, "config": config}


def _record_starts(monkeypatch):
    """{round name: (raw weights, masks)} as each round starts training, filled as rounds run."""
    starts = {}
    original = rounds.train_round

    def capture(trainer, model, directory_, round_index, **kwargs):
        starts[kwargs["name"]] = (tfl.raw_weights(model), tfl.get_masks(model))
        return original(trainer, model, directory_, round_index, **kwargs)

    monkeypatch.setattr(rounds, "train_round", capture)
    return starts


def _main_mask(directory, r):
    return atomic.read_npz(results.round_dir(directory, r) / "mask.npz")


def test_records_land_in_summary_under_controls(finished):
    summary = json.loads((finished["dir"] / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert sorted(summary["controls"]) == ["one_shot", "random_prune", "random_reinit"]
    for name, records in summary["controls"].items():
        assert [r["round"] for r in records] == [1, 2]
        assert set(records[0]) == set(summary["rounds"][1])
        for r in (1, 2):
            assert (results.round_dir(results.control_dir(finished["dir"], name), r) / "mask.npz").is_file()


def test_random_reinit_uses_the_mask_and_fresh_weights(finished):
    for r in (1, 2):
        weights, masks = finished["starts"][f"random_reinit round {r}"]
        main = _main_mask(finished["dir"], r)
        for k in main:
            np.testing.assert_array_equal(masks[k], main[k])
            assert not np.allclose(weights[k], finished["theta0"][k])
    first, second = (finished["starts"][f"random_reinit round {r}"][0] for r in (1, 2))
    assert all(not np.allclose(first[k], second[k]) for k in first)  # a fresh draw every round


def test_random_prune_keeps_counts_and_starts_from_theta0(finished):
    for r in (1, 2):
        weights, masks = finished["starts"][f"random_prune round {r}"]
        main = _main_mask(finished["dir"], r)
        for k in main:
            assert masks[k].sum() == main[k].sum()
            np.testing.assert_array_equal(weights[k], finished["theta0"][k])
        assert not np.array_equal(masks["fc1/kernel"], main["fc1/kernel"])


def test_one_shot_prunes_round0_weights_straight_to_each_sparsity(finished):
    for r in (1, 2):
        weights, masks = finished["starts"][f"one_shot round {r}"]
        main = _main_mask(finished["dir"], r)
        trained = finished["trained0"]
        for k in main:
            assert masks[k].sum() == main[k].sum()
            np.testing.assert_array_equal(weights[k], finished["theta0"][k])
            kept = np.abs(trained[k][masks[k] == 1]).min()
            dropped = np.abs(trained[k][masks[k] == 0]).max()
            assert kept >= dropped  # the largest round-0 magnitudes survive
    assert not np.array_equal(finished["starts"]["one_shot round 2"][1]["fc1/kernel"],
                              _main_mask(finished["dir"], 2)["fc1/kernel"])


def test_finished_controls_are_not_retrained(finished, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished control round was trained again")

    monkeypatch.setattr(rounds, "train_round", no_training)
    again = controls.run_controls(
        tfl.wrap(tiny_model()), finished["splits"], names=("random_prune",), rounds=2,
        training_config=finished["config"], pruning_config=PRUNING, experiment_dir=finished["dir"])
    assert again["random_prune"] == finished["records"]["random_prune"]


def test_controls_need_finished_rounds(splits, tmp_path):
    with pytest.raises(FileNotFoundError, match="round 1 of the IMP experiment is not finished"):
        controls.run_controls(tfl.wrap(tiny_model()), splits, names=("random_prune",), rounds=1,
                              training_config=tiny_training(), pruning_config=PRUNING,
                              experiment_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown controls lucky"):
        controls.run_controls(tfl.wrap(tiny_model()), splits, names=("lucky",), rounds=1,
                              training_config=tiny_training(), pruning_config=PRUNING,
                              experiment_dir=tmp_path)


def test_replicates_get_one_folder_per_seed(tmp_path):
    config = tfl.ExperimentConfig.from_flat(dataset="mnist_small", validation_size=100, replicates=3, seed=4,
                                  experiment_dir=str(tmp_path / "exp"))
    prepared = experiment.prepare_replicates(config)
    assert [p.config.run.seed for p in prepared] == [4, 5, 6]
    assert [p.directory.name for p in prepared] == ["seed_4", "seed_5", "seed_6"]
    auto = experiment.prepare_replicates(config.replace(experiment_dir=None, root_dir=str(tmp_path)))
    assert len({p.directory for p in auto}) == 3


def test_lottery_controls_flag_and_branch_binary(tmp_path):
    exp = tmp_path / "exp"
    small = ["--dataset=mnist_small", "--validation_size=500", "--hidden=32,16", "--train_steps=30",
             "--eval_every=10", "--checkpoint_every=10", "--rounds=1", f"--experiment_dir={exp}"]
    first = run_binary("lottery", *small, "--controls=random_reinit")
    assert first.returncode == 0, first.stderr
    assert "control: random_reinit" in first.stdout
    branch = run_binary("branch", f"--experiment_dir={exp}", "--controls=one_shot")
    assert branch.returncode == 0, branch.stderr
    summary = json.loads((exp / "summary.json").read_text())
    assert sorted(summary["controls"]) == ["one_shot", "random_reinit"]
    missing = run_binary("branch", f"--experiment_dir={tmp_path / 'nothing'}")
    assert missing.returncode == 2 and "config.json does not exist" in missing.stderr


def test_further_draws_and_chosen_rounds_train_only_those_rounds(finished, monkeypatch):
    starts = _record_starts(monkeypatch)
    directory = finished["dir"]
    records = controls.run_controls(
        tfl.wrap(tiny_model()), finished["splits"], names=("random_reinit.2@2", "random_prune.3@1"),
        rounds=2, training_config=finished["config"], pruning_config=PRUNING, experiment_dir=directory,
        build_model=lambda seed: tiny_model(seed))
    assert sorted(starts) == ["random_prune.3 round 1", "random_reinit.2 round 2"]
    assert [r["round"] for r in records["random_reinit.2"]] == [2]
    assert results.finished_rounds(directory, "random_reinit.2") == [2]
    summary = results.read_summary(directory)
    assert [r["round"] for r in summary["controls"]["random_prune.3"]] == [1]
    assert sorted(summary["controls"]) == ["one_shot", "random_prune", "random_prune.3",
                                           "random_reinit", "random_reinit.2"]

    weights, masks = starts["random_reinit.2 round 2"]
    first_draw = finished["starts"]["random_reinit round 2"][0]
    main = _main_mask(directory, 2)
    for k in main:
        np.testing.assert_array_equal(masks[k], main[k])
        assert not np.allclose(weights[k], first_draw[k])  # another draw of the initialiser
    weights, masks = starts["random_prune.3 round 1"]
    first_mask = finished["starts"]["random_prune round 1"][1]
    for k in main:
        assert masks[k].sum() == _main_mask(directory, 1)[k].sum()
    assert not np.array_equal(masks["fc1/kernel"], first_mask["fc1/kernel"])

    config = tfl.ExperimentConfig.from_flat(rounds=2, controls=["random_reinit.2@2", "one_shot"])
    assert study_folder.is_point_finished(config, directory)
    assert not study_folder.is_point_finished(config.replace(controls=("random_reinit.2",)), directory)


def test_the_first_draw_keeps_its_seeds():
    assert controls.draw_seed(10_000, 3, 5) == controls.draw_seed(10_000, 3, 5, draw=1) == 10_305
    further = {controls.draw_seed(10_000, s, r, d) for s in range(5) for r in range(16) for d in (2, 3)}
    assert len(further) == 160 and all(0 <= v < 2 ** 31 for v in further)


@pytest.mark.parametrize("specs, message", [
    (("random_reinit", "random_reinit@3"), "controls: random_reinit is listed twice"),
    (("one_shot.2",), "controls: 'one_shot.2': one_shot draws nothing at random"),
    (("random_prune@13",), "controls: 'random_prune@13': controls run on rounds 1..12, not 13"),
    (("random_prune@0",), "not 0"),
    (("random_reinit@seven",), r"controls: 'random_reinit@seven' is not NAME\[.DRAW\]"),
    (("lucky.2",), "controls: must be names from random_reinit"),
])
def test_bad_control_specs_are_refused_naming_the_flag(specs, message):
    with pytest.raises(tfl.ConfigError, match=message):
        tfl.LotteryConfig(rounds=12, controls=specs)


def test_control_specs_from_the_binary(tmp_path):
    bad = run_binary("lottery", "--dataset=mnist_small", "--rounds=2", "--controls=random_prune@3",
                  f"--experiment_dir={tmp_path / 'exp'}")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].endswith("controls run on rounds 1..2, not 3")
    assert not (tmp_path / "exp").exists()


def test_pruning_before_training_keeps_imp_counts_from_theta0(finished, monkeypatch):
    starts = {}
    original = rounds.train_round

    def capture(trainer, model, directory_, round_index, **kwargs):
        starts[kwargs["name"]] = (tfl.raw_weights(model), tfl.get_masks(model))
        return original(trainer, model, directory_, round_index, **kwargs)

    def no_data(self, count):
        raise AssertionError("synflow read training data")

    monkeypatch.setattr(rounds, "train_round", capture)
    directory = finished["dir"]
    pruning_config = tfl.PruningConfig(fraction=0.3, output_fraction=0.1, synflow_iterations=4)
    model = tfl.wrap(tiny_model())
    controls.run_controls(model, finished["splits"], names=("snip@1", "grasp@2"), rounds=2,
                          training_config=finished["config"], pruning_config=pruning_config,
                          experiment_dir=directory)
    monkeypatch.setattr(training.Trainer, "first_batches", no_data)
    controls.run_controls(model, finished["splits"], names=("synflow@2",), rounds=2,
                          training_config=finished["config"], pruning_config=pruning_config,
                          experiment_dir=directory)
    for name, r in (("snip", 1), ("grasp", 2), ("synflow", 2)):
        weights, masks = starts[f"{name} round {r}"]
        main = _main_mask(directory, r)
        for k in main:
            assert masks[k].sum() == main[k].sum(), (name, k)
            np.testing.assert_array_equal(weights[k], finished["theta0"][k])
        assert not np.array_equal(masks["fc1/kernel"], main["fc1/kernel"])
    for name, r, cost in (("snip", 1, {"scored_batches": 2}), ("synflow", 2, {"scored_batches": 0,
                                                                              "synflow_iterations": 4})):
        search = json.loads(results.search_path(results.round_dir(directory, r, name)).read_text())
        assert search["find_iterations"] == 0 and search["find_seconds"] >= 0
        assert {k: search[k] for k in cost} == cost
    # SNIP's mask is the top |g * w| of the dense network at theta_0, per tensor.
    monkeypatch.undo()
    dense = tfl.wrap(tiny_model())
    trainer = training.Trainer(dense, finished["splits"], finished["config"])
    scores = saliency.snip(dense, trainer.first_batches(pruning_config.saliency_batches), trainer.loss)
    snip_mask = starts["snip round 1"][1]["fc1/kernel"]
    kept = scores["fc1/kernel"][snip_mask == 1]
    assert kept.min() >= scores["fc1/kernel"][snip_mask == 0].max()


def test_grasp_refuses_structured_pruning():
    with pytest.raises(tfl.ConfigError, match="controls: grasp's scores are signed"):
        tfl.ExperimentConfig.from_flat(structure="neuron", controls=["grasp"])
    with pytest.raises(tfl.ConfigError, match="controls: one_shot cannot reach an N:M pattern"):
        tfl.ExperimentConfig.from_flat(structure="n_of_m", controls=["random_reinit", "one_shot@2"])
    with pytest.raises(tfl.ConfigError, match="controls: gmp ends pruning at step 200, after train_steps=100"):
        tfl.ExperimentConfig.from_flat(train_steps=100, gmp_end_step=200, controls=["gmp"])
    with pytest.raises(tfl.ConfigError, match="gmp_end_step: must be after gmp_begin_step=50"):
        tfl.PruningConfig(gmp_begin_step=50, gmp_end_step=50)


def test_early_bird_draws_when_the_last_window_of_distances_is_below_the_threshold():
    distances = [0.5, 0.3, 0.09, 0.08, 0.2, 0.07, 0.06, 0.05, 0.04, 0.03, 0.01]
    assert controls.early_bird_draw(distances, window=5, threshold=0.1) == 9
    assert controls.early_bird_draw(distances, window=2, threshold=0.1) == 3
    assert controls.early_bird_draw([0.1] * 8, window=5, threshold=0.1) is None  # not below
    assert controls.early_bird_draw([0.05] * 4, window=5, threshold=0.1) is None
    a = {"x": np.array([1, 1, 0, 0]), "y": np.array([[1, 0], [0, 1]])}
    b = {"x": np.array([1, 0, 1, 0]), "y": np.array([[1, 0], [0, 1]])}
    assert controls.mask_distance(a, b) == 2 / 8


def test_gmp_and_early_bird_reach_imp_counts(finished, monkeypatch):
    starts, ends = {}, {}
    original = rounds.train_round

    def capture(trainer, model, directory_, round_index, **kwargs):
        starts[kwargs["name"]] = (tfl.raw_weights(model), tfl.get_masks(model))
        record = original(trainer, model, directory_, round_index, **kwargs)
        ends[kwargs["name"]] = tfl.get_masks(model)
        return record

    updates = []
    prune = controls._prune_by_magnitude

    def record_update(context, masks, densities, step=0):
        new = prune(context, masks, densities, step)
        updates.append((step, masks, new))
        return new

    monkeypatch.setattr(rounds, "train_round", capture)
    monkeypatch.setattr(controls, "_prune_by_magnitude", record_update)
    directory = finished["dir"]
    config = tfl.PruningConfig(fraction=0.3, output_fraction=0.1, gmp_begin_step=4, gmp_end_step=18,
                               gmp_frequency=4, early_bird_every=5, early_bird_window=2,
                               early_bird_threshold=0.5)
    controls.run_controls(tfl.wrap(tiny_model()), finished["splits"], names=("gmp@2", "early_bird@1"),
                          rounds=2, training_config=finished["config"], pruning_config=config,
                          experiment_dir=directory)
    weights, masks = starts["gmp round 2"]
    assert all(m.all() for m in masks.values())  # gmp starts dense, from theta_0
    main = _main_mask(directory, 2)
    for k in main:
        np.testing.assert_array_equal(weights[k], finished["theta0"][k])
        assert ends["gmp round 2"][k].sum() == main[k].sum()
    gmp = [(step, before, after) for step, before, after in updates if step > 0]
    assert [step + 1 for step, _, _ in gmp] == [4, 8, 12, 16, 18]  # TF-MOT's pruning steps, and the end
    for _, before, after in gmp:  # masks only shrink
        assert all(((after[k] == 1) <= (before[k] == 1)).all() for k in after)
    assert [sum(a.sum() for a in after.values()) for _, _, after in gmp] == sorted(
        (sum(a.sum() for a in after.values()) for _, _, after in gmp), reverse=True)
    weights, masks = starts["early_bird round 1"]
    search = json.loads(results.search_path(results.round_dir(directory, 1, "early_bird")).read_text())
    assert search["converged"] and search["drawn_at"] % 5 == 0
    assert search["find_iterations"] == search["drawn_at"] and search["find_seconds"] > 0
    assert [d[0] for d in search["distances"]] == list(range(10, search["drawn_at"] + 1, 5))
    assert all(0 <= d[1] < 1 for d in search["distances"])
    main = _main_mask(directory, 1)
    for k in main:
        np.testing.assert_array_equal(weights[k], finished["theta0"][k])
        assert masks[k].sum() == main[k].sum()


def test_reshuffle_and_signed_constant_keep_the_mask_and_derive_values_from_theta0(finished, monkeypatch):
    starts = _record_starts(monkeypatch)
    directory = finished["dir"]
    controls.run_controls(tfl.wrap(tiny_model()), finished["splits"],
                          names=("reshuffle@2", "reshuffle.2@2", "signed_constant@2"), rounds=2,
                          training_config=finished["config"], pruning_config=PRUNING,
                          experiment_dir=directory)
    main, theta0 = _main_mask(directory, 2), finished["theta0"]
    for name in ("reshuffle", "reshuffle.2", "signed_constant"):
        weights, masks = starts[f"{name} round 2"]
        for k in main:
            np.testing.assert_array_equal(masks[k], main[k])
    for k in main:
        kept = main[k] == 1
        first, second = (starts[f"{n} round 2"][0][k][kept] for n in ("reshuffle", "reshuffle.2"))
        np.testing.assert_array_equal(np.sort(first), np.sort(theta0[k][kept]))  # the same multiset
        assert not np.array_equal(first, theta0[k][kept]) and not np.array_equal(first, second)
        signed = starts["signed_constant round 2"][0][k][kept]
        np.testing.assert_allclose(signed, np.sign(theta0[k][kept]) * np.std(theta0[k]), rtol=1e-6)


@pytest.mark.parametrize("method, rank", [("edge_popup", np.abs), ("supermask", lambda score: score)])
def test_learned_masks_move_only_the_scores(finished, monkeypatch, method, rank):
    seen = {}
    original = rounds.train_round

    def capture(trainer, model, directory_, round_index, **kwargs):
        before = [v.numpy().copy() for v in model.variables
                  if not any(part in v.path for part in ("score", "mask", "seed_generator"))]
        scores = {k: s.numpy().copy() for k, (s, _) in edge_popup.scores(model).items()}
        record = original(trainer, model, directory_, round_index, **kwargs)
        seen[kwargs["name"]] = (model, before, scores, tfl.get_masks(model))
        return record

    monkeypatch.setattr(rounds, "train_round", capture)
    directory = finished["dir"]
    controls.run_controls(tfl.wrap(tiny_model()), finished["splits"], names=(f"{method}@2", f"{method}.2@2"),
                          rounds=2, training_config=finished["config"], pruning_config=PRUNING,
                          experiment_dir=directory)
    model, before, scores, _ = seen[f"{method} round 2"]
    after = [v.numpy() for v in model.variables
             if not any(part in v.path for part in ("score", "mask", "seed_generator"))]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)  # weights, biases, snapshots, densities: untouched
    raw = tfl.raw_weights(model)
    main = _main_mask(directory, 2)
    written = atomic.read_npz(results.round_dir(results.control_dir(directory, method), 2) / "mask.npz")
    for key, (score, _) in edge_popup.scores(model).items():
        np.testing.assert_array_equal(raw[key], finished["theta0"][key])
        assert not np.array_equal(score.numpy(), scores[key])  # the scores moved
        assert written[key].sum() == main[key].sum()
        chosen = rank(score.numpy())
        assert chosen[written[key] == 1].min() >= chosen[written[key] == 0].max()
    second = seen[f"{method}.2 round 2"][3]
    assert any(not np.array_equal(second[key], written[key]) for key in written)  # another draw
    with pytest.raises(tfl.ConfigError, match=f"controls: {method} chooses single weights"):
        tfl.ExperimentConfig.from_flat(structure="neuron", controls=[method])


# Every control through the binary, about 15 s on 2 cores: run by hand with -m slow (each control's
# own tests and the --controls flag's binary test stay in the default suite).
@pytest.mark.slow
def test_every_method_trains_a_working_network_through_the_binary(tmp_path):
    names = ["one_shot", "random_prune", "reshuffle", "signed_constant", "snip", "grasp", "synflow", "gmp",
             "early_bird", "edge_popup", "supermask"]
    exp = tmp_path / "exp"
    run = run_binary("lottery", "--dataset=mnist_small", "--validation_size=500", "--hidden=64,32",
                     "--rounds=3", "--train_steps=200", "--eval_every=50", "--checkpoint_every=100",
                     "--controls=" + ",".join(f"{n}@3" for n in names), "--synflow_iterations=10",
                     "--early_bird_every=20", f"--experiment_dir={exp}")
    assert run.returncode == 0, run.stderr
    summary = results.read_summary(exp)
    imp = summary["rounds"][3]
    for name in names:
        record, = summary["controls"][name]
        assert record["remaining"] == imp["remaining"], name  # every method at IMP's size
        assert record["final_test_accuracy"] > 0.75, (name, record["final_test_accuracy"])
