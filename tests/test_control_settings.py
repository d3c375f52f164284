"""A control's settings are part of what its rounds computed: recorded in its folder, checked on resume."""

import json

from tf_lottery import results

from conftest import run_binary

SMALL = ["--dataset=mnist_small", "--validation_size=500", "--hidden=32,16", "--train_steps=30",
         "--eval_every=10", "--checkpoint_every=10", "--rounds=1"]


def test_a_changed_control_setting_is_refused_and_the_record_keeps_what_trained(tmp_path):
    exp = tmp_path / "exp"
    first = run_binary("lottery", *SMALL, f"--experiment_dir={exp}", "--controls=grasp,random_reinit",
                       "--grasp_temperature=200")
    assert first.returncode == 0, first.stderr
    recorded = json.loads((exp / "controls" / "grasp" / "control.json").read_text())
    assert recorded == {"control": "grasp", "settings": {"grasp_temperature": 200.0, "saliency_batches": 2}}
    config_before = (exp / "config.json").read_text()
    summary_before = (exp / "summary.json").read_text()

    changed = run_binary("lottery", *SMALL, f"--experiment_dir={exp}", "--controls=grasp,random_reinit",
                         "--grasp_temperature=1")
    assert changed.returncode == 2
    assert changed.stderr.strip().splitlines()[-1] == (
        f"lottery: error: --grasp_temperature: the grasp control in {exp} was trained with grasp_temperature=200.0, "
        "now 1.0; give the recorded value or use another folder")
    assert (exp / "config.json").read_text() == config_before   # no record says 1.0
    assert (exp / "summary.json").read_text() == summary_before

    # Left out of --controls, the finished grasp rounds still hold the folder to their settings.
    other = run_binary("lottery", *SMALL, f"--experiment_dir={exp}", "--controls=random_reinit",
                       "--saliency_batches=3")
    assert other.returncode == 2 and "--saliency_batches: the grasp control" in other.stderr
    # A setting no control in the folder reads may change; the control that reads it records it.
    fine = run_binary("lottery", *SMALL, f"--experiment_dir={exp}", "--controls=grasp,random_reinit,synflow",
                      "--synflow_iterations=5")
    assert fine.returncode == 0, fine.stderr
    assert json.loads((exp / "controls" / "synflow" / "control.json").read_text())["settings"] == {
        "synflow_iterations": 5}
    assert sorted(results.read_summary(exp)["controls"]) == ["grasp", "random_reinit", "synflow"]


def test_a_folder_from_before_the_record_is_checked_against_its_config(tmp_path):
    exp = tmp_path / "exp"
    first = run_binary("lottery", *SMALL, f"--experiment_dir={exp}", "--controls=snip", "--saliency_batches=2")
    assert first.returncode == 0, first.stderr
    (exp / "controls" / "snip" / "control.json").unlink()   # as written before control.json existed
    changed = run_binary("lottery", *SMALL, f"--experiment_dir={exp}", "--controls=snip", "--saliency_batches=4")
    assert changed.returncode == 2
    assert "--saliency_batches: the snip control in" in changed.stderr and "trained with saliency_batches=2" \
        in changed.stderr
