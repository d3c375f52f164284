"""Studies on a real local Ray: a 2 x 2 grid of tiny experiments on 2 workers, a killed driver and its
rerun, a point with a corrupt data file, and the report.

One local Ray (execution.connect, 2 CPUs) serves the in-process tests of the module; the
kill test runs `python -m binaries.study` in a subprocess with its own local
Ray. No Ray process may outlive the module.
"""

import gzip
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tf_lottery import data
from tf_lottery import results
from tf_lottery.config import ExperimentConfig
from tf_lottery.study import execution
from tf_lottery.study import folder
from tf_lottery.study import runner

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--dataset=mnist_small", "--validation_size=500", "--hidden=16,8", "--train_steps=20",
        "--eval_every=10", "--checkpoint_every=10", "--rounds=1", "--eval_batch_size=500",
        "--nojit_compile"]
BASE = ExperimentConfig.from_flat(dataset="mnist_small", validation_size=500, hidden=[16, 8],
                                  train_steps=20, eval_every=10, checkpoint_every=10, rounds=1,
                                  eval_batch_size=500, jit_compile=False)
GRID = ["seed=0,1", "prune_scope=layer,global"]


def _ray_processes():
    found = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    before = set(_ray_processes())
    session = execution.connect(workers=2)  # the study's own local Ray, as a driver starts it
    try:
        yield
    finally:
        execution.disconnect(session)
        deadline = time.monotonic() + 30
        while set(_ray_processes()) - before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not set(_ray_processes()) - before, "Ray processes left behind"


def _records(study_dir):
    """{point values: summary.json without timings} of every point of a study."""
    _, study = folder.read_study(study_dir)

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "wall_seconds"}
        return [strip(v) for v in obj] if isinstance(obj, list) else obj
    return {json.dumps(e["values"], sort_keys=True): strip(results.read_summary(study_dir / e["folder"]))
            for e in study["points"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    study_dir = tmp_path_factory.mktemp("reference")
    outcome = runner.run(BASE, GRID, study_dir, workers=2, progress=False)
    return study_dir, outcome


def test_a_grid_of_four_runs_on_two_workers_and_a_rerun_skips_it(reference):
    study_dir, outcome = reference
    assert outcome.ok, outcome.points
    _, study = folder.read_study(study_dir)
    assert study["counts"]["finished"] == 4
    for entry in study["points"]:
        lottery = BASE.replace(root_dir=str(study_dir), **entry["values"])
        assert study_dir / entry["folder"] == lottery.directory()
        assert results.finished_rounds(lottery.directory()) == [0, 1]
        assert folder.log_path(lottery.directory()).read_text()
    metrics = {p: p.stat().st_mtime_ns for p in study_dir.glob("*/round_*/" + results.METRICS)}
    again = runner.run(BASE, GRID, study_dir, workers=2, progress=False)
    assert again.ok and {p: p.stat().st_mtime_ns for p in metrics} == metrics


# About 35 s on 2 cores: run by hand with -m slow (the grid, kill, retry and SIGTERM tests stay).
@pytest.mark.slow
def test_a_worker_process_runs_points_in_turn_with_the_numbers_of_fresh_ones(reference, tmp_path):
    one = runner.run(BASE, GRID, tmp_path / "one", workers=1, progress=False)
    fresh = runner.run(BASE, GRID, tmp_path / "fresh", workers=1, experiments_per_worker=1,
                       progress=False)
    assert one.ok and fresh.ok
    assert len({e["worker"] for e in one.points}) == 1
    assert len({e["worker"] for e in fresh.points}) == 4
    assert _records(tmp_path / "one") == _records(tmp_path / "fresh") == _records(reference[0])


def _descendants(pid):
    """Every process below `pid` (from /proc), so that only what the test started is killed."""
    children = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _cmdline(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_killed_worker_is_retried_and_its_point_resumes(tmp_path):
    box = {}
    study = threading.Thread(target=lambda: box.update(outcome=runner.run(
        BASE, ["seed=3"], tmp_path / "s", workers=1, max_retries=1, progress=False)))
    study.start()
    directory = BASE.replace(seed=3, root_dir=str(tmp_path / "s")).directory()
    deadline = time.monotonic() + 120
    while not results.config_path(directory).is_file():
        assert time.monotonic() < deadline and study.is_alive()
        time.sleep(0.05)
    workers = [pid for pid in _descendants(os.getpid()) if "ray::ExperimentWorker" in _cmdline(pid)]
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    study.join(timeout=240)
    entry, = box["outcome"].points
    assert entry["state"] == "finished" and entry["attempts"] == 2, entry
    assert entry["errors"][0].startswith("ActorDiedError"), entry["errors"]
    assert results.finished_rounds(directory) == [0, 1]


def _study_command(study_dir):
    return [sys.executable, "-m", "binaries.study", *TINY, *(f"--grid={g}" for g in GRID),
            f"--study_dir={study_dir}", "--workers=2"]


# About 20 s on 2 cores: run by hand with -m slow (a killed worker's retry and SIGTERM stay in the default suite).
@pytest.mark.slow
def test_a_killed_driver_loses_nothing_the_rerun_cannot_finish(reference, tmp_path):
    study_dir = tmp_path / "killed"
    log = open(tmp_path / "driver.log", "w")
    below = []
    driver = subprocess.Popen(_study_command(study_dir), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                counts = json.loads(folder.study_path(study_dir).read_text())["counts"]
            except (OSError, ValueError):
                counts = {}
            if counts.get("finished", 0) >= 1 and counts.get("running", 0) >= 1:
                break
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()
            time.sleep(0.1)
        else:
            pytest.fail("the study never had a finished and a running point")
        below = _descendants(driver.pid)  # its Ray: killed below, by process id
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        log.close()
        driver.kill()
        driver.wait()
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _, study = folder.read_study(study_dir)
    finished = [study_dir / e["folder"] for e in study["points"] if e["state"] == "finished"]
    assert finished and any(e["state"] == "running" for e in study["points"])
    kept = {p: p.stat().st_mtime_ns for d in finished for p in d.glob("round_*/" + results.METRICS)}
    rerun = subprocess.run(_study_command(study_dir), cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert _records(study_dir) == _records(reference[0])


def test_sigterm_stops_the_study_cleanly(tmp_path):
    study_dir = tmp_path / "stopped"
    driver = subprocess.Popen(_study_command(study_dir), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(study_dir.glob("*/" + results.CONFIG)):
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    below = _descendants(driver.pid)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 128 + signal.SIGTERM, out + err
    assert "interrupted; every folder is resumable: rerun the same command" in err
    _, study = folder.read_study(study_dir)
    assert {e["state"] for e in study["points"]} <= {"interrupted", "pending", "finished"}
    assert any(e["state"] == "interrupted" for e in study["points"])
    deadline = time.monotonic() + 30
    while any(pathlib.Path(f"/proc/{pid}").exists() for pid in below) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in below if pathlib.Path(f"/proc/{pid}").exists()]


def _idx_folders(tmp_path):
    """An MNIST IDX folder (the bundled subset under the original names) and a copy with a truncated file."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    names = {"train_images.idx3": "train-images-idx3-ubyte", "train_labels.idx1": "train-labels-idx1-ubyte",
             "test_images.idx3": "t10k-images-idx3-ubyte", "test_labels.idx1": "t10k-labels-idx1-ubyte"}
    for small, original in names.items():
        shutil.copy(data.bundled_dir() / f"{small}.gz", good / f"{original}.gz")
    shutil.copytree(good, bad)
    raw = gzip.decompress((good / "train-images-idx3-ubyte.gz").read_bytes())
    (bad / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return good, bad


def test_a_point_with_a_corrupt_data_file_fails_alone(tmp_path):
    good, bad = _idx_folders(tmp_path)
    grid = [f"data_dir:seed={good}:0,{bad}:0,{good}:1"]
    outcome = runner.run(BASE.replace(dataset="mnist"), grid, tmp_path / "s", workers=2, progress=False)
    states = [(e["values"]["data_dir"], e["state"]) for e in outcome.points]
    assert states == [(str(good), "finished"), (str(bad), "failed"), (str(good), "finished")]
    failed = outcome.failed[0]
    assert failed["error"].startswith("DataError: ") and "truncated" in failed["error"]
    assert failed["attempts"] == 1  # the experiment's own error is not retried
    _, study = folder.read_study(tmp_path / "s")
    assert study["points"][1]["error"] == failed["error"]


def test_the_study_report_of_the_grid(reference):
    study_dir, _ = reference
    result = subprocess.run([sys.executable, "-m", "binaries.analyze", "study", f"--study_dir={study_dir}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = results.report_path(study_dir).read_text()
    assert "## Group: prune_scope=layer" in text and "### prune_scope=global minus prune_scope=layer" in text
    assert (results.plots_dir(study_dir) / "study_accuracy_vs_remaining.png").is_file()
