"""launches.json: each start or resume of an experiment folder, with its code, versions and machine."""

import json
import pathlib
import subprocess
from unittest import mock

import pytest

from tf_lottery import experiment
from tf_lottery import numerics
from tf_lottery import results
from tf_lottery.config import ExperimentConfig
from tf_lottery.results import launches
from tf_lottery.settings import ConfigError

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


XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8 avx512ifma
processor\t: 1
model name\t: ignored
"""


def test_the_numerics_identity_names_the_cpu_its_features_versions_and_threads(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(XEON)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    xeon = numerics.identity(str(cpuinfo))
    assert xeon["cpu"] == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    assert xeon["isa"] == ["amx_bf16", "amx_int8", "amx_tile", "avx", "avx2", "avx512_bf16", "avx512_fp16",
                           "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "fma", "sse4_2"]
    assert set(xeon["packages"]) == {"tensorflow", "keras", "numpy"} and xeon["packages"]["numpy"]
    assert xeon["environment"]["TF_NUM_INTRAOP_THREADS"] == "1" and "XLA_FLAGS" not in xeon["environment"]
    assert xeon["key"] == numerics.identity(str(cpuinfo))["key"] != numerics.identity()["key"]
    assert xeon["key"] == numerics.key(xeon) and len(xeon["key"]) == 12


def test_each_launch_records_its_numerics_and_the_rounds_finished_before_it(tmp_path):
    exp = tmp_path / "exp"
    first = launches.record(exp)
    _finish(exp, 0), _finish(exp, 1)
    second = launches.record(exp)
    _finish(exp, 2), _finish(exp, 0, "random_reinit")
    assert first["numerics"] == second["numerics"] == numerics.identity()
    assert first["finished"] == {"rounds": [], "controls": {}}
    assert second["finished"] == {"rounds": [0, 1], "controls": {}}
    assert launches.rounds_by_launch(exp) == [
        (first, {"rounds": [0, 1], "controls": {}}),
        (second, {"rounds": [2], "controls": {"random_reinit": [0]}})]


def _finish(exp, index, control=None):
    directory = results.round_dir(exp, index, control)
    directory.mkdir(parents=True)
    results.metrics_path(directory).write_text("{}")


def _launched_elsewhere(exp):
    launch = launches.record(exp)
    launch["numerics"] = {**launch["numerics"], "cpu": "Intel Xeon", "isa": ["avx", "avx2", "avx512f"],
                          "key": "0123456789ab"}
    results.launches_path(exp).write_text(json.dumps([launch]))


def test_a_resume_under_another_numerics_identity_warns_naming_both(tmp_path):
    exp = tmp_path / "exp"
    launches.record(exp)
    assert launches.check_numerics(exp) == ""
    _launched_elsewhere(exp)
    here = numerics.identity()
    with mock.patch.object(launches.logging, "warning") as warning:
        changed = launches.check_numerics(exp)
    assert changed == (f"cpu Intel Xeon [avx avx2 avx512f] -> {here['cpu']} [{' '.join(here['isa'])}]")
    assert warning.call_count == 1 and changed in warning.call_args.args
    assert launches.check_numerics(tmp_path / "never_launched") == ""


def test_strict_numerics_refuses_the_resume_before_any_work(tmp_path):
    config = ExperimentConfig.from_flat(dataset="mnist_small", validation_size=1000, rounds=1,
                                        train_steps=10, experiment_dir=str(tmp_path / "exp"),
                                        strict_numerics=True)
    results.write_config(tmp_path / "exp", config)
    _launched_elsewhere(tmp_path / "exp")
    before = sorted(p.name for p in (tmp_path / "exp").iterdir())
    launched = results.launches_path(tmp_path / "exp").read_text()
    with pytest.raises(ConfigError) as refused:
        experiment.prepare_replicates(config)
    assert refused.value.field == "strict_numerics"
    assert str(refused.value).startswith(f"strict_numerics: {tmp_path / 'exp'} was last run under another "
                                         "numerics identity (cpu Intel Xeon [avx avx2 avx512f] -> ")
    assert "\n" not in str(refused.value)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == before
    assert results.launches_path(tmp_path / "exp").read_text() == launched
    # Without the flag the same resume is prepared (with a warning).
    assert experiment.prepare_replicates(config.replace(strict_numerics=False))[0].directory == tmp_path / "exp"


def test_a_python_resume_under_another_numerics_identity_warns_too(tmp_path, splits):
    import tf_lottery as tfl
    from tf_lottery import imp

    from conftest import tiny_model, tiny_training

    def run():
        imp.run_rounds(tfl.wrap(tiny_model()), splits, rounds=0, training_config=tiny_training(train_steps=10),
                       experiment_dir=tmp_path / "exp")

    run()
    entries = json.loads((tmp_path / "exp" / "launches.json").read_text())
    entries[-1]["numerics"] = {**entries[-1]["numerics"], "cpu": "Another CPU", "key": "0123456789ab"}
    (tmp_path / "exp" / "launches.json").write_text(json.dumps(entries))
    with mock.patch.object(launches.logging, "warning") as warning:
        run()
    assert warning.call_count == 1 and "cpu Another CPU" in warning.call_args.args[2]
