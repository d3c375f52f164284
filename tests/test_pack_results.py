"""tools/pack_results.py: a finished experiment packed small for the repository and unpacked again."""

import json
import pathlib
import sys

import numpy as np

import tf_lottery as tfl
from tf_lottery import atomic, imp, plots, results, training
from tf_lottery.results import analyses

from conftest import tiny_model, tiny_training

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
import pack_results  # noqa: E402


def test_pack_then_unpack_gives_back_every_mask_curve_and_record(splits, tmp_path):
    training.configure_runtime(0)
    model = tfl.wrap(tiny_model())
    imp.run_rounds(model, splits, rounds=2, experiment_dir=tmp_path / "exp",
                   training_config=tiny_training(train_steps=20), pruning_config=tfl.PruningConfig())
    pack_results.pack(tmp_path / "exp", tmp_path / "pack")
    assert not list((tmp_path / "pack").rglob("ckpt"))
    pack_results.unpack(tmp_path / "pack", tmp_path / "back")
    assert results.read_summary(tmp_path / "back") == results.read_summary(tmp_path / "exp")
    for r in range(3):
        original, back = (results.round_dir(tmp_path / d, r) for d in ("exp", "back"))
        assert json.loads(results.curve_path(back).read_text()) == json.loads(
            results.curve_path(original).read_text())
        masks = atomic.read_npz(results.mask_path(original))
        restored = atomic.read_npz(results.mask_path(back))
        assert sorted(masks) == sorted(restored)
        for key in masks:
            np.testing.assert_array_equal(masks[key], restored[key])
    assert plots.load_runs([tmp_path / "back"])[0].summary["rounds"][2]["round"] == 2


def test_a_study_packs_each_finished_point_and_unpacks_to_a_study_the_report_reads(splits, tmp_path):
    from tf_lottery.config import ExperimentConfig
    from tf_lottery.study import folder, grid, statistics

    base = ExperimentConfig.from_flat(dataset="mnist_small", rounds=1, train_steps=20)
    plan = grid.plan(base, ["seed=0,1,2"], tmp_path / "study")
    study = folder.Study(plan)
    study.write_spec()
    for point in plan.points[:2]:  # the third point stays pending
        training.configure_runtime(point.values["seed"])
        imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=1, experiment_dir=point.directory,
                       training_config=tiny_training(train_steps=20), pruning_config=tfl.PruningConfig())
        results.write_config(point.directory, point.config)
        study.update(point.index, state="finished")
    pack_results.pack_study(tmp_path / "study", tmp_path / "pack")
    assert sorted(p.name for p in (tmp_path / "pack").iterdir()) == sorted(
        [folder.SPEC, folder.STUDY] + [p.directory.name for p in plan.points[:2]])
    assert not list((tmp_path / "pack").rglob("ckpt"))
    first = tmp_path / "pack" / plan.points[0].directory.name / pack_results.MASKS
    stamp = first.stat().st_mtime_ns
    pack_results.pack_study(tmp_path / "study", tmp_path / "pack")  # again: finished packs stay
    assert first.stat().st_mtime_ns == stamp
    pack_results.unpack_study(tmp_path / "pack", tmp_path / "back")
    original, back = statistics.load(tmp_path / "study"), statistics.load(tmp_path / "back")
    assert [len(g.runs) for g in back.groups] == [2]
    for field in statistics.FIELDS:
        assert (statistics.round_stats(back.groups[0], field)
                == statistics.round_stats(original.groups[0], field))


def test_a_study_packed_without_masks_holds_no_mask_and_unpacks_to_a_study_the_report_reads(splits, tmp_path):
    from tf_lottery.config import ExperimentConfig
    from tf_lottery.study import folder, grid, statistics

    base = ExperimentConfig.from_flat(dataset="mnist_small", rounds=1, train_steps=20)
    plan = grid.plan(base, ["seed=0,1"], tmp_path / "study")
    study = folder.Study(plan)
    study.write_spec()
    for point in plan.points:
        training.configure_runtime(point.values["seed"])
        imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=1, experiment_dir=point.directory,
                       training_config=tiny_training(train_steps=20), pruning_config=tfl.PruningConfig())
        results.write_config(point.directory, point.config)
        study.update(point.index, state="finished")
    assert pack_results.main(["pack", "--without_masks", str(tmp_path / "study"), str(tmp_path / "pack")]) == 0
    assert not list((tmp_path / "pack").rglob(pack_results.MASKS))
    assert not list((tmp_path / "pack").rglob("mask_shapes.json"))
    assert len(list((tmp_path / "pack").rglob(pack_results.CURVES))) == 2
    assert pack_results.main(["unpack", str(tmp_path / "pack"), str(tmp_path / "back")]) == 0
    assert not list((tmp_path / "back").rglob(results.MASK))
    original, back = statistics.load(tmp_path / "study"), statistics.load(tmp_path / "back")
    for field in statistics.FIELDS:
        assert (statistics.round_stats(back.groups[0], field)
                == statistics.round_stats(original.groups[0], field))


def test_a_wrong_command_line_is_one_line_naming_the_option_and_exits_2(tmp_path, capsys):
    assert pack_results.main(["pack", "--no_masks", str(tmp_path), str(tmp_path / "pack")]) == 2
    assert capsys.readouterr().err == (
        "pack_results.py: unknown option --no_masks (pack takes --without_masks or --without_rounds)\n")
    assert pack_results.main(["unpack", "--without_masks", str(tmp_path), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "pack_results.py: unknown option --without_masks (pack takes --without_masks or --without_rounds)\n")
    assert not (tmp_path / "pack").exists() and not (tmp_path / "out").exists()


def _analysed_folder(directory, seed=0, rounds=(3,)):
    """An experiment folder with no finished round but the files its analyses leave: stability records
    (small), the cached rewind points and a stability training's weights and record (arrays, never packed)."""
    from test_stability import _record

    atomic.write_json(results.config_path(directory), {"run": {"seed": seed}})
    atomic.write_json(results.summary_path(directory), {"rounds": [], "controls": {}})
    for r in rounds:
        record = _record(seed, *[{f: [0.9, 0.95, 0.96] for f in ("test_accuracy", "instability",
                                                                 "pruning_relative_distance",
                                                                 "data_order_relative_distance")}] * 2)
        atomic.write_json(analyses.stability_path(directory, r), {**record, "round": r})
    atomic.write_npz(analyses.rewind_point_path(directory, 100), {"w": np.zeros(3)})
    run = analyses.stability_run_dir(directory, 3, "imp", 100, 1)
    atomic.write_npz(analyses.state_path(run), {"w": np.zeros(3)})
    atomic.write_json(results.metrics_path(run), {"round": 3})
    return directory


def test_a_pack_carries_the_analysis_records_and_unpacked_they_make_the_stability_report(tmp_path):
    from tf_lottery import analyze_checks
    from tf_lottery.study import stability as stability_study

    source = _analysed_folder(tmp_path / "exp", rounds=(3, 7))
    pack_results.pack(source, tmp_path / "pack", masks=False)
    assert sorted(p.relative_to(tmp_path / "pack").as_posix() for p in (tmp_path / "pack").rglob("*")
                  if p.is_file()) == ["analysis/stability_round_03.json", "analysis/stability_round_07.json",
                                      "config.json", pack_results.CURVES, "summary.json"]
    pack_results.unpack(tmp_path / "pack", tmp_path / "back")
    for r in (3, 7):
        assert (analyses.stability_path(tmp_path / "back", r).read_bytes()
                == analyses.stability_path(source, r).read_bytes())
    folders = analyze_checks.experiment_folders([str(tmp_path / "back")])
    assert stability_study.report(folders) == stability_study.report([source])


def test_an_analysis_record_over_the_cap_is_left_out_naming_it(tmp_path, monkeypatch, capsys):
    source = _analysed_folder(tmp_path / "exp")
    big = results.analysis_dir(source) / "lmc_round_03.json"
    big.write_text(json.dumps({"path": [0.5] * 2000}))
    monkeypatch.setattr(pack_results, "MAX_RECORD_BYTES", 5000)
    pack_results.pack(source, tmp_path / "pack", masks=False)
    assert sorted(p.name for p in (tmp_path / "pack" / "analysis").iterdir()) == ["stability_round_03.json"]
    assert capsys.readouterr().err == (f"pack_results.py: left out {big} ({big.stat().st_size:,} bytes; an analysis "
                                       "record is packed up to 5,000 bytes)\n")


def test_a_study_packed_without_rounds_again_takes_its_new_analysis_records(tmp_path):
    from tf_lottery.config import ExperimentConfig
    from tf_lottery.study import folder, grid

    plan = grid.plan(ExperimentConfig.from_flat(dataset="mnist_small", rounds=1), ["seed=0,1"], tmp_path / "study")
    study = folder.Study(plan)
    study.write_spec()
    for point in plan.points:
        _analysed_folder(point.directory, point.values["seed"], rounds=(3,) if point.index == 0 else ())
        study.update(point.index, state="finished")
    assert pack_results.main(["pack", "--without_rounds", str(tmp_path / "study"), str(tmp_path / "pack")]) == 0
    first, second = (tmp_path / "pack" / p.directory.name for p in plan.points)
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file()) == [
        "analysis/stability_round_03.json", "config.json", "summary.json"]
    stamp = (first / "config.json").stat().st_mtime_ns
    _analysed_folder(plan.points[1].directory, 1, rounds=(3, 7))  # the second seed's analyses finish
    assert pack_results.main(["pack", "--without_rounds", str(tmp_path / "study"), str(tmp_path / "pack")]) == 0
    assert (first / "config.json").stat().st_mtime_ns == stamp  # unchanged: left as it was
    assert sorted(p.name for p in (second / "analysis").iterdir()) == ["stability_round_03.json",
                                                                     "stability_round_07.json"]
