"""Failures are loud and lose nothing: NaN rounds, unwritable files, bad input anywhere in the flag space."""

import errno
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tf_lottery as tfl
from tf_lottery import atomic, imp, results, training

from conftest import tiny_model, tiny_training

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--dataset=mnist_small", "--validation_size=500", "--hidden=32,16", "--train_steps=40",
         "--eval_every=20", "--checkpoint_every=20", "--eval_batch_size=1000"]
PRUNING = tfl.PruningConfig(fraction=0.2, output_fraction=0.1)


def _run_rounds(directory, splits, **kwargs):
    training.configure_runtime(0)
    return imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=2,
                          training_config=tiny_training(train_steps=20),
                          pruning_config=PRUNING, experiment_dir=directory, **kwargs)


def _fail_round(monkeypatch, failing_round):
    original = training.Trainer.train

    def train(self, directory=None, hooks=None, name="train", **options):
        if name == f"round {failing_round}":
            raise FloatingPointError(f"{name}: training loss is nan in iterations 1-10")
        return original(self, directory=directory, hooks=hooks, name=name, **options)

    monkeypatch.setattr(training.Trainer, "train", train)


def test_same_config_gives_bitwise_identical_runs(splits, tmp_path):
    first = _run_rounds(tmp_path / "a", splits)
    second = _run_rounds(tmp_path / "b", splits)
    strip = lambda records: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in records]
    assert strip(first) == strip(second)
    for r in range(3):
        a = atomic.read_npz(results.round_dir(tmp_path / "a", r) / "mask.npz")
        b = atomic.read_npz(results.round_dir(tmp_path / "b", r) / "mask.npz")
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_nan_with_stop_records_the_failure_and_a_rerun_retries(splits, tmp_path, monkeypatch):
    _fail_round(monkeypatch, 1)
    with pytest.raises(results.RoundFailed, match="round 1: training loss is nan"):
        _run_rounds(tmp_path, splits, on_nan="stop")
    summary = json.loads((tmp_path / "summary.json").read_text())["rounds"]
    assert [r["round"] for r in summary] == [0, 1]
    assert summary[1]["failed"] is True and "nan" in summary[1]["error"]
    assert not (tmp_path / "round_01" / "metrics.json").exists()
    monkeypatch.undo()
    records = _run_rounds(tmp_path, splits, on_nan="stop")
    assert [r.get("failed", False) for r in records] == [False, False, False]


def test_nan_with_skip_round_goes_on_along_the_same_sparsity_path(splits, tmp_path, monkeypatch):
    _fail_round(monkeypatch, 1)
    records = _run_rounds(tmp_path, splits, on_nan="skip_round")
    assert [r.get("failed", False) for r in records] == [False, True, False]
    assert records[2]["layers"]["fc1/kernel"]["remaining"] == 655  # 1024 -> 819 -> 655
    assert np.all(atomic.read_npz(tmp_path / "round_02" / "mask.npz")["fc1/kernel"]
                  <= atomic.read_npz(tmp_path / "round_01" / "mask.npz")["fc1/kernel"])
    assert "failed: round 1: training loss is nan" in results.format_table(records)
    monkeypatch.undo()
    assert _run_rounds(tmp_path, splits, on_nan="skip_round") == records  # not retried


def test_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic.write_json(path, {"rounds": [1]})

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match=f"cannot write {path}: No space left on device"):
        atomic.write_json(path, {"rounds": [1, 2]})
    assert json.loads(path.read_text()) == {"rounds": [1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def _binary(*args):
    return subprocess.run([sys.executable, "-m", "binaries.lottery", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_nan_in_the_binary_exits_1_with_the_round_and_iteration(tmp_path):
    result = _binary(*SMALL, "--optimizer=sgd", "--learning_rate=1e30", "--rounds=1",
                     f"--experiment_dir={tmp_path / 'exp'}")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lottery: error: round 0: training loss is") and "iterations" in last
    assert "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "exp" / "summary.json").read_text())
    assert summary["rounds"][0]["failed"] is True


def test_initial_mask_is_checked_and_used(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"fc1/kernel": np.ones((3, 3)), "fc2/kernel": np.ones((32, 16)),
                     "output/kernel": np.ones((16, 10))})
    result = _binary(*SMALL, "--rounds=0", f"--initial_mask={bad}", f"--experiment_dir={tmp_path / 'a'}")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "--initial_mask:" in last and "'fc1/kernel' has shape (3, 3)" in last
    assert not (tmp_path / "a").exists()
    good = tmp_path / "good.npz"
    rng = np.random.default_rng(0)
    masks = {"fc1/kernel": (rng.random((784, 32)) < 0.5).astype("float32"),
             "fc2/kernel": np.ones((32, 16), "float32"), "output/kernel": np.ones((16, 10), "float32")}
    np.savez(good, **masks)
    result = _binary(*SMALL, "--rounds=0", f"--initial_mask={good}", f"--experiment_dir={tmp_path / 'b'}")
    assert result.returncode == 0, result.stderr
    trained = atomic.read_npz(tmp_path / "b" / "round_00" / "mask.npz")
    np.testing.assert_array_equal(trained["fc1/kernel"], masks["fc1/kernel"])


def test_unwrappable_model_is_a_usage_error(tmp_path):
    result = _binary(*SMALL, "--exclude=fc1,fc2,output", f"--experiment_dir={tmp_path / 'a'}")
    assert result.returncode == 2
    assert "--exclude: model 'lenet_32_16' has no prunable layer" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") * 3 + b"\x00" * 5, "truncated"),
    (b"\x12\x34\x56\x78" + b"\x00" * 20, "not an IDX file"),
])
def test_bad_data_file_is_a_usage_error_naming_the_file(tmp_path, content, message):
    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data_dir / stem).write_bytes(content)
    result = _binary("--dataset=mnist", f"--data_dir={data_dir}", f"--root_dir={tmp_path / 'out'}")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert str(data_dir / "train-images-idx3-ubyte") in result.stderr and message in result.stderr
    assert not (tmp_path / "out").exists()


# Property: any value of any flag either passes every check or exits 2 with one line; it never
# raises, and it never writes into the experiment folder.
_NUMERIC = ["validation_size", "rounds", "prune_fraction", "output_prune_fraction", "rewind_step",
            "train_steps", "batch_size", "learning_rate", "momentum", "lr_gamma", "eval_every",
            "eval_batch_size", "checkpoint_every", "steps_per_call", "seed", "data_seed"]
_CHOICE = ["model", "dataset", "prune_scope", "prune_criterion", "reset", "optimizer", "on_nan"]
_LISTS = ["hidden", "lr_milestones", "exclude"]
_values = st.one_of(st.integers(-10**6, 10**6).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.text(alphabet="abcxyz0123456789.,-_/ ", max_size=12))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag_values=st.dictionaries(st.sampled_from(_NUMERIC + _CHOICE + _LISTS), _values, max_size=4))
def test_flag_space_gives_usage_errors_not_tracebacks(tmp_path_factory, flag_values):
    from binaries import cli, experiment_flags
    folder = tmp_path_factory.mktemp("exp")
    (folder / "config.json").write_text(json.dumps(tfl.ExperimentConfig.from_flat(dataset="mnist_small").to_dict()))
    before = sorted(p.name for p in folder.iterdir())
    argv = ["lottery", "--dataset=mnist_small", f"--experiment_dir={folder}"]
    argv += [f"--{name}={value}" for name, value in flag_values.items()]
    experiment_flags.FLAGS.unparse_flags()
    try:
        cli.parse_flags(argv)
        experiment_flags.prepare("imp")
    except SystemExit as exit_:
        assert exit_.code == 2
    finally:
        experiment_flags.FLAGS.unparse_flags()
    assert sorted(p.name for p in folder.iterdir()) == before
