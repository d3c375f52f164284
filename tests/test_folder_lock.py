"""One run per folder: a second run is refused in one line, a killed run's lock is broken with a warning,
and a write leaves a live writer's temporary file alone."""

import json
import re
import signal
import socket
import subprocess
import sys

import pytest

import tf_lottery as tfl
from tf_lottery import atomic, imp, training
from tf_lottery.results import lock
from tf_lottery.study import runner

from conftest import REPO, SMALL_LOTTERY, tiny_model, tiny_training

_HOLD = ("import sys, time\n"
         "from tf_lottery.results import lock\n"
         "with lock.hold(sys.argv[1]):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(300)\n")


@pytest.fixture
def holder(tmp_path):
    """start(folder): another process that holds the folder's lock until it is killed; its Popen."""
    procs = []

    def start(folder):
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _run_rounds(directory, splits):
    training.configure_runtime(0)
    return imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=0,
                          training_config=tiny_training(train_steps=10), experiment_dir=directory)


def test_a_folder_held_by_a_live_process_is_refused_then_resumed_once_it_is_killed(
        splits, tmp_path, holder, caplog):
    directory = tmp_path / "exp"
    proc = holder(directory)
    in_use = f"{directory} is in use by pid {proc.pid} on host {socket.gethostname()} since "
    # The Python API: refused before anything is written.
    with pytest.raises(lock.FolderLocked, match="^experiment_dir: " + re.escape(in_use)) as error:
        _run_rounds(directory, splits)
    assert "\n" not in str(error.value) and "a folder takes one run at a time" in str(error.value)
    assert sorted(p.name for p in directory.iterdir()) == [".lock"]
    # The binaries: one line and exit status 2.
    done = subprocess.run([sys.executable, "-m", "binaries.lottery", *SMALL_LOTTERY, "--rounds=0",
                           f"--experiment_dir={directory}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"lottery: error: --experiment_dir: {in_use}")
    assert done.stderr.count("\n") == 1
    assert sorted(p.name for p in directory.iterdir()) == [".lock"]
    # SIGKILL leaves the lock file; the next run breaks the stale lock with a warning and runs.
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((directory / ".lock").read_text())["pid"] == proc.pid
    with caplog.at_level("WARNING"):
        records = _run_rounds(directory, splits)
    assert [r["round"] for r in records] == [0]
    assert any(f"{directory}: breaking the stale lock of pid {proc.pid} on host {socket.gethostname()}"
               in r.getMessage() for r in caplog.records)
    assert not (directory / ".lock").exists()  # released on return


def test_a_study_folder_held_by_another_driver_is_refused(tmp_path, holder):
    study_dir = tmp_path / "study"
    proc = holder(study_dir)
    plan = runner.prepare(tfl.ExperimentConfig.from_flat(dataset="mnist_small", rounds=0), ["seed=0,1"],
                          study_dir)
    with pytest.raises(lock.FolderLocked, match=f"^study_dir: {re.escape(str(study_dir))} is in use by pid {proc.pid} "):
        runner.execute(plan, progress=False)
    assert sorted(p.name for p in study_dir.iterdir()) == [".lock"]


def test_the_lock_is_released_on_an_error_and_a_folder_it_created_is_removed(splits, tmp_path):
    directory = tmp_path / "new" / "exp"
    with pytest.raises(ValueError, match="unknown on_nan 'never'"):  # raised with the lock held
        imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=1, on_nan="never",
                       training_config=tiny_training(train_steps=10), experiment_dir=directory)
    assert not (tmp_path / "new").exists()
    with lock.hold(directory):
        with lock.hold(directory):  # re-entrant in the thread that holds it
            assert (directory / ".lock").is_file()
        lock.check(directory)
        (directory / "kept").write_text("")
    assert sorted(p.name for p in directory.iterdir()) == ["kept"]


def test_an_atomic_write_leaves_a_live_writers_temporary_file_alone(tmp_path):
    path = tmp_path / "summary.json"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        host = socket.gethostname()
        live_tmp = tmp_path / f".summary.json.{host}.{live.pid}.a1b2c3d4.tmp"
        dead_tmp = tmp_path / f".summary.json.{host}.{dead.pid}.e5f6g7h8.tmp"
        other_host = tmp_path / f".summary.json.elsewhere.{dead.pid}.i9j0k1l2.tmp"
        for temporary in (live_tmp, dead_tmp, other_host):
            temporary.write_text("{")
        atomic.write_json(path, {"rounds": []})
        assert live_tmp.exists() and other_host.exists()  # a live writer's, and one this host cannot judge
        assert not dead_tmp.exists()  # left by a writer that has ended
        assert json.loads(path.read_text()) == {"rounds": []}
    finally:
        live.kill()
        live.wait()


_WRITER = ("import sys\n"
           "from tf_lottery import atomic\n"
           "for i in range(400):\n"
           "    atomic.write_json(sys.argv[1], {'writer': sys.argv[2], 'i': i, 'pad': 'x' * 20000})\n")


def test_two_processes_writing_one_file_both_finish(tmp_path):
    path = tmp_path / "summary.json"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name], cwd=REPO,
                                stderr=subprocess.PIPE, text=True) for name in "ab"]
    errors = [w.communicate(timeout=120)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert json.loads(path.read_text())["i"] == 399
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
