"""launches.json: each start or resume of an experiment folder, with its code, versions and machine."""

import pathlib
import subprocess

from tf_lottery.results import launches

REPO = pathlib.Path(__file__).resolve().parents[1]


def _git(*args):
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()


def test_each_launch_appends_its_command_commit_versions_and_machine(tmp_path):
    first = launches.record(tmp_path / "exp", "python -m binaries.lottery --rounds=1")
    second = launches.record(tmp_path / "exp")
    assert launches.read(tmp_path / "exp") == [first, second]
    assert (first["command"], second["command"]) == ("python -m binaries.lottery --rounds=1", "python API")
    if (REPO / ".git").exists():
        dirty = "-dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""
        assert first["commit"] == _git("rev-parse", "HEAD") + dirty
    else:
        assert first["commit"] is None
    assert set(first["packages"]) == {"tensorflow", "keras", "tensorflow-model-optimization"}
    assert first["cpus"] >= 1 and first["python"].startswith("3.")


def test_a_folder_without_launches_reads_as_none(tmp_path):
    assert launches.read(tmp_path) == []
