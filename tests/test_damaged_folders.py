"""A damaged file of a results folder is one line naming it and what to do; a damaged summary.json alone
is rebuilt from the rounds' metrics.json."""

import json
import shutil

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import experiment, imp, results, tensorboard, training

from conftest import tiny_model, tiny_training

PRUNING = tfl.PruningConfig(fraction=0.2, output_fraction=0.1)


def _run_rounds(directory, splits):
    training.configure_runtime(0)
    return imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=1, training_config=tiny_training(),
                          pruning_config=PRUNING, experiment_dir=directory)


@pytest.fixture(scope="module")
def finished(splits, tmp_path_factory):
    """A finished two-round folder of imp.run_rounds (checkpoints at iterations 20 and 40) and its records."""
    directory = tmp_path_factory.mktemp("damaged") / "finished"
    return directory, _run_rounds(directory, splits)


@pytest.fixture
def folder(finished, tmp_path):
    directory = tmp_path / "exp"
    shutil.copytree(finished[0], directory)
    return directory


def _truncate(path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _empty(path):
    path.write_bytes(b"")


def _unfinished_with_garbled_progress(path):
    (path.parent / "metrics.json").unlink()
    path.write_text('{"records": [')


def _object_array(path):
    np.savez(path, x=np.array([{"pickled": 1}], dtype=object), y=np.arange(1))


_rerun = _run_rounds  # the experiment run again on its folder


# (damaged file, how, what reads it, what the line says to do)
CASES = {
    "mask.npz truncated": (
        "round_01/mask.npz", _truncate, lambda d, s: results.round_masks(d, 1),
        "BadZipFile: File is not a zip file); delete {d}/round_01/metrics.json "
        "and rerun the experiment: the round is written again from its checkpoints"),
    "metrics.json empty": (
        "round_00/metrics.json", _empty, _rerun,
        "empty); delete {d}/round_00/metrics.json and rerun the experiment: the round is written again"),
    "curve.json corrupt": (
        "round_01/curve.json", lambda p: p.write_text('[{"iteration": 0'),
        lambda d, s: tensorboard.write_tensorboard(d),
        "JSONDecodeError: Expecting ',' delimiter: line 1 column 17 (char 16)); "
        "delete {d}/round_01/metrics.json and rerun the experiment"),
    "config.json corrupt": (
        "config.json", lambda p: p.write_text("{]"), _rerun,
        "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); "
        "it records the experiment's settings: restore it from a copy (launches.json names the commands "
        "that ran here) or use another folder"),
    "summary.json and a metrics.json empty": (
        "round_01/metrics.json", lambda p: (_empty(p), _empty(p.parent.parent / "summary.json")),
        lambda d, s: results.read_summary(d), "empty); delete {d}/round_01/metrics.json and rerun"),
    "progress.json corrupt": (
        "round_01/progress.json", _unfinished_with_garbled_progress, _rerun,
        "JSONDecodeError: Expecting value: line 1 column 14 (char 13)); delete {d}/round_01 and rerun the "
        "experiment: the round is trained again from its start"),
    "launches.json not a list": (
        "launches.json", lambda p: p.write_text("{}"), _rerun,
        "not a JSON array); it only lists the runs of this folder: repair it, or delete it to start a "
        "new list"),
    "final checkpoint truncated": (
        "round_01/ckpt/ckpt-40.data-00000-of-00001", _truncate, _rerun,
        "IndexError: Read less bytes than requested); it holds the round's trained weights: delete "
        "{d}/round_01/metrics.json and rerun the experiment, which trains the round on from its previous "
        "checkpoint"),
    "test_sample.npz with an object array": (
        "test_sample.npz", _object_array, lambda d, s: experiment.load_experiment(d),
        "ValueError: Object arrays cannot be loaded when allow_pickle=False); delete it and rerun "
        "imp.run_rounds with the same arguments: it is written again"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_file_is_one_line_naming_it_and_what_to_do(case, folder, splits, capsys):
    from binaries import cli
    name, damage, read, says = CASES[case]
    damage(folder / name)
    with pytest.raises(SystemExit) as exit_:  # what a binary makes of it
        cli.execute(read, folder, splits)
    assert exit_.value.code == 2
    line = capsys.readouterr().err
    name = name.replace("ckpt-40.data-00000-of-00001", "ckpt-40")  # TensorFlow names the checkpoint
    flag = "round" if name.endswith("mask.npz") else "experiment_dir"  # round_masks names --round
    expected = f": error: --{flag}: {folder / name} is damaged ({says.format(d=folder)}"
    assert line.count("\n") == 1 and expected in line, line


def test_a_damaged_summary_is_rebuilt_from_the_rounds_metrics(finished, folder, splits, caplog):
    records = finished[1]
    (folder / "summary.json").write_text('{"rounds": [')
    with caplog.at_level("WARNING"):
        assert results.read_summary(folder) == {"rounds": records, "controls": {}}
    assert any(f"{folder / 'summary.json'} is damaged (JSONDecodeError: " in r.getMessage()
               and "rebuilt from the finished rounds' metrics.json" in r.getMessage() for r in caplog.records)
    assert _run_rounds(folder, splits) == records  # a rerun writes the rebuilt summary
    assert json.loads((folder / "summary.json").read_text()) == {"rounds": records, "controls": {}}


def test_following_the_line_for_a_damaged_final_checkpoint_gives_the_same_round(finished, folder, splits):
    _truncate(folder / "round_01" / "ckpt" / "ckpt-40.data-00000-of-00001")
    with pytest.raises(results.DamagedFile, match="delete .*round_01/metrics.json"):
        _run_rounds(folder, splits)
    (folder / "round_01" / "metrics.json").unlink()
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rs]
    assert strip(_run_rounds(folder, splits)) == strip(finished[1])
    assert _run_rounds(folder, splits)  # and the repaired folder reruns
