"""A study's own local Ray: it listens on the loopback address only, its agent refuses a job without the
token, it is not started without token authentication, and it goes away with its driver, even killed.

Each test starts at most one real local Ray (about 10 s) and stops it; no Ray process may outlive a test.
"""

import http.client
import ipaddress
import json
import pathlib
import subprocess
import sys
import time

import psutil
import pytest
import ray

from tf_lottery.settings import ConfigError
from tf_lottery.study import execution
from tf_lottery.study import local_ray

REPO = pathlib.Path(__file__).resolve().parents[1]
AGENT_HTTP_PORT = 52365  # Ray's default port of the dashboard agent's HTTP server (its job API)


def _loopback(ip):
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def _listening(processes):
    """(ip, port, name) of every TCP socket the processes listen on."""
    found = []
    for process in processes:
        try:
            name = process.name() if not process.cmdline()[0].startswith("ray::") else process.cmdline()[0]
            found += [(c.laddr.ip, c.laddr.port, name) for c in process.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
        except (psutil.Error, IndexError):
            pass
    return found


def _post_job(ip, port, entrypoint):
    """The HTTP status of a job POST to the agent's job API at ip:port; None if no HTTP answers there."""
    connection = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        connection.request("POST", "/api/job_agent/jobs/", body=json.dumps({"entrypoint": entrypoint}),
                           headers={"Content-Type": "application/json"})
        return connection.getresponse().status
    except (http.client.HTTPException, OSError):
        return None
    finally:
        connection.close()


def _alive(processes):
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            pass
    return alive


def _wait_gone(processes, seconds):
    deadline = time.monotonic() + seconds
    while _alive(processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(processes)


def _kill(processes):
    for process in _alive(processes):
        try:
            process.kill()
        except psutil.Error:
            pass


def test_a_local_study_ray_listens_on_loopback_only_and_its_agent_refuses_a_job(tmp_path):
    assert not ray.is_initialized()
    session = execution.connect(workers=1)
    tree = psutil.Process().children(recursive=True)
    try:
        sockets = _listening([psutil.Process()] + tree)
        names = {name for _, _, name in sockets}
        assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, sockets
        assert [s for s in sockets if not _loopback(s[0])] == []
        marker = tmp_path / "the_job_ran"
        answers = {(ip, port): _post_job(ip, port, f"touch {marker}")
                   for ip, port, name in sockets if name == "ray::DashboardAgent"}
        assert set(answers.values()) <= {None, 401}, answers  # 401: no token, no job
        if any(port == AGENT_HTTP_PORT for _, port in answers):  # its job API (unless the port was taken)
            assert 401 in answers.values()
        time.sleep(1)
        assert not marker.exists()
    finally:
        execution.disconnect(session)
    assert _wait_gone(tree, 5) == []


def test_a_local_ray_without_token_authentication_is_refused(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    try:
        with pytest.raises(ConfigError) as error:
            execution.connect(workers=1)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert str(error.value) == (
        "ray_address: not given, so the study starts a local Ray, which it refuses to start without "
        "token authentication (RAY_AUTH_MODE=disabled); unset RAY_AUTH_MODE or set it to token")
    with pytest.raises(ConfigError) as error:
        local_ray.check(version="2.58.0", environ={})
    assert str(error.value) == (
        "ray_address: not given, so the study starts a local Ray, which needs Ray >= 2.59 (token "
        "authentication on by default); Ray 2.58.0 is installed: pip install -U 'ray[default]>=2.59,<3'")
    local_ray.check(version="2.59.0", environ={"RAY_AUTH_MODE": "Token"})


def test_the_local_ray_of_a_killed_driver_goes_with_it():
    script = ("from tf_lottery.study import execution\n"
              "execution.connect(workers=1)\n"
              "print('connected', flush=True)\n"
              "import time; time.sleep(300)\n")
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    tree = []
    try:
        assert driver.stdout.readline().strip() == "connected"
        tree = psutil.Process(driver.pid).children(recursive=True)
        assert {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= {p.cmdline()[0] for p in tree}
        driver.kill()
        driver.wait()
        left = _wait_gone(tree, 20)  # Ray's agents alone would keep listening for 40 to 90 s
        assert left == [], [p.cmdline()[0] for p in left]
    finally:
        driver.kill()
        driver.wait()
        driver.stdout.close()
        _kill(tree)
