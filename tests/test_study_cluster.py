"""Cluster mode: a one-node Ray cluster on loopback (`ray start --head`), a study run on it with
--ray_address, and the shared-storage check refusing a folder the cluster cannot see.

The head runs in its own mount namespace (`unshare`), where an empty tmpfs
covers one folder of the test: the driver can write there, the cluster's
tasks see nothing, as with a folder on the driver's local disk. The head is
started with --block and stopped by its process id; no Ray process may
outlive the module.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tf_lottery import results
from tf_lottery.study import folder

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--dataset=mnist_small", "--validation_size=500", "--hidden=16,8", "--train_steps=20",
        "--eval_every=10", "--checkpoint_every=10", "--rounds=1", "--eval_batch_size=500",
        "--nojit_compile"]
# An explicit address needs the token mode said. Ray replaces 127.0.0.1, given as the head's address
# or as the address to join, with this machine's network address, except where it runs no clusters:
# its switch for that keeps the head and the driver on the loopback address.
ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _raylets():
    found = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_unshare():
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                          capture_output=True).returncode == 0 if shutil.which("unshare") else False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, hidden folder or None): a one-node cluster on loopback, stopped after the module."""
    root = tmp_path_factory.mktemp("cluster")
    hidden = root / "hidden" if _can_unshare() else None
    port = _free_port()
    ray = str(pathlib.Path(sys.executable).parent / "ray")
    start = (f"{ray} start --head --block --port={port} --node-ip-address=127.0.0.1 --num-cpus=2 "
             "--disable-usage-stats --include-dashboard=false")
    if hidden:
        hidden.mkdir()
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                   f"mount -t tmpfs tmpfs {hidden} && exec {start}"]
    else:
        command = start.split()
    before = _raylets()
    log = open(root / "head.log", "w")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (root / "head.log").read_text():
            assert head.poll() is None and time.monotonic() < deadline, (root / "head.log").read_text()
            time.sleep(0.5)
        listening = [c.laddr.ip for p in psutil.Process(head.pid).children(recursive=True)
                     for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening), listening
        yield f"127.0.0.1:{port}", hidden
    finally:
        head.send_signal(signal.SIGTERM)  # ray start --block stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
        deadline = time.monotonic() + 30
        while _raylets() - before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _raylets() - before, "Ray processes left behind"


def _study(*args):
    return subprocess.run([sys.executable, "-m", "binaries.study", *TINY, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=ENV)


def test_a_study_runs_on_an_existing_cluster(cluster, tmp_path):
    address, _ = cluster
    result = _study("--grid=seed=0,1", f"--study_dir={tmp_path / 's'}", f"--ray_address={address}")
    assert result.returncode == 0, result.stdout + result.stderr
    _, study = folder.read_study(tmp_path / "s")
    assert [e["state"] for e in study["points"]] == ["finished", "finished"]
    for entry in study["points"]:
        assert results.finished_rounds(tmp_path / "s" / entry["folder"]) == [0, 1]
    no_gpu = _study("--grid=seed=0,1", f"--study_dir={tmp_path / 'gpu'}", f"--ray_address={address}",
                    "--gpus_per_experiment=1")
    assert no_gpu.returncode == 2
    assert "study: error: --gpus_per_experiment: no Ray node has 1 GPUs" in no_gpu.stderr


def test_a_study_folder_the_cluster_cannot_see_is_refused(cluster):
    address, hidden = cluster
    if hidden is None:
        pytest.skip("unshare (user and mount namespaces) is not available to hide a folder")
    result = _study("--grid=seed=0,1", f"--study_dir={hidden / 's'}", f"--ray_address={address}")
    assert result.returncode == 2
    assert (f"study: error: --study_dir: {hidden / 's'} is not visible at the same path from Ray node"
            in result.stderr)
    assert "storage every node mounts at the same path" in result.stderr
    assert not (hidden / "s").exists()
