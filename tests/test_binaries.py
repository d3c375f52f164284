"""The absl binaries end to end: a small IMP run, resume, and one-line usage errors with exit status 2."""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--dataset=mnist_small", "--validation_size=500", "--hidden=32,16", "--train_steps=60",
         "--eval_every=20", "--checkpoint_every=20", "--eval_batch_size=1000"]


def _run(module, *args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", f"binaries.{module}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_lottery_runs_prints_table_and_resumes(tmp_path):
    args = [*SMALL, "--rounds=2", f"--root_dir={tmp_path}"]
    first = _run("lottery", *args)
    assert first.returncode == 0, first.stderr
    table = first.stdout.split("results:")[0]
    lines = table.strip().splitlines()
    assert lines[0].split()[:2] == ["round", "remaining"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1", "2"]
    # 784x32, 32x16, 16x10 kernels: 25760 -> 20070+410+144 = 20624 -> 16056+328+130 = 16514
    assert [line.split()[1] for line in lines[1:]] == ["100.00", "80.06", "64.11"]
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("imp_lenet_mnist_small_init_")
    summary = json.loads((folder / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    for r in range(3):
        for name in ("mask.npz", "metrics.json", "curve.json"):
            assert (folder / f"round_{r:02d}" / name).is_file()
    assert json.loads((folder / "config.json").read_text())["rounds"] == 2
    second = _run("lottery", *args)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split("results:")[0].splitlines()[1:] == table.splitlines()[1:]


def test_flagfile_and_train_binary(tmp_path):
    flagfile = tmp_path / "small.cfg"
    flagfile.write_text("\n".join(SMALL) + "\n")
    result = _run("train", f"--flagfile={flagfile}", f"--root_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp_path / "out").iterdir()
    assert folder.name.startswith("train_lenet_mnist_small_")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["train_steps"] == 60 and metrics["final_test_accuracy"] > 0.5


@pytest.mark.parametrize("args, message", [
    (["--prune_fraction=1.5"], "--prune_fraction: must be in (0, 1), got 1.5"),
    (["--model=alexnet"], "--model: must be one of lenet, conv2, conv4, conv6, vgg16, vgg19, resnet20"),
    (["--dataset=cifar7"], "--dataset: must be one of"),
    (["--reset=rewind", "--rewind_step=70", "--train_steps=60"], "--rewind_step: must be in [0, train_steps=60]"),
    (["--hidden=300,x"], "--hidden: must be a comma-separated list of integers"),
    (["--rounds=abc"], "--rounds"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--dataset=mnist", "--data_dir=/nonexistent/mnist"], "/nonexistent/mnist"),
    (["--dataset=imagenet2012", "--model=resnet50"],
     "dataset 'imagenet2012' needs --data_dir with a prepared TFDS folder"),
    (["--dataset=imagenet2012", "--data_dir=/tmp"], "/tmp holds no prepared TFDS data"),
    (["--image_size=64"], "--image_size: must be >= 32 and only applies to imagenet2012, image_folder, got 64"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    result = _run("lottery", *SMALL, f"--root_dir={tmp_path / 'out'}", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
