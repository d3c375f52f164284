"""The bounds of the settings that need more than a value: rounds that still prune, the data, the built
model, the study's options, a folder that can be written. Each is a ConfigError naming the flag."""

import pytest

from tf_lottery import bounds
from tf_lottery import writable
from tf_lottery.config import ConfigError, ExperimentConfig
from tf_lottery.study import grid
from tf_lottery.study import options

BASE = ExperimentConfig.from_flat(dataset="mnist_small", validation_size=500, hidden=[16, 8],
                                  train_steps=20, eval_every=10, rounds=1)


def test_rounds_stop_where_pruning_would_remove_nothing_or_empty_a_tensor():
    # 20 weights at 0.5 (halves round up): 10, 5, 2, 1, and round 5 would remove the last one.
    assert bounds.pruning_rounds([("a", 20, 0.5)]) == (4, "round 5 would leave a without weights")
    # 20 at 0.2: 16, 13, 10, 8, 6, 5, 4, 3, 2; then 0.2 * 2 rounds to 0 (b is not pruned).
    assert bounds.pruning_rounds([("a", 20, 0.2), ("b", 5, 0.0)]) == (
        9, "round 10 would remove nothing (a at 2 weights)")
    assert bounds.pruning_rounds([("a", 2**31, 0.2), ("b", 2**31, 0.1)])[0] == 188


def test_the_rounds_of_any_model_are_bounded_before_it_is_known():
    with pytest.raises(ConfigError) as error:
        BASE.replace(rounds=189, prune_fraction=0.2)
    assert str(error.value) == (
        "rounds: must be at most 188 with these pruning rates and kernels of up to 2,147,483,648 weights: "
        "round 189 would remove nothing (a tensor pruned at 0.1 at 4, a tensor pruned at 0.2 at 2 weights), "
        "got 189")
    assert BASE.replace(rounds=5, schedule="polynomial").lottery.rounds == 5


@pytest.mark.parametrize("entry, message", [
    ("batch_size=60,1000000", "batch_size: must be at most the 7,500 training examples of 'mnist_small', "
                              "got 1000000"),
    ("validation_size=500,8000", "validation_size: must be below the 8,000 training examples of "
                                 "'mnist_small', got 8000"),
    ("train_size=100,7501", "train_size: must be at most the 7,500 training examples of 'mnist_small' left "
                            "after the validation hold-out, got 7501"),
    ("exclude=fc1;fc9", "exclude: fc9 is not a layer of LeNet (its layers: fc1, fc2, output), got fc9"),
    ("rounds=1,42", "rounds: must be at most 38 with these pruning rates and this LeNet's kernels: round 39 "
                    "would remove nothing (fc1/kernel at 2, fc2/kernel at 2, output/kernel at 4 weights), "
                    "got 42"),
])
def test_a_study_checks_the_bounds_that_need_the_data_before_anything_runs(tmp_path, entry, message):
    with pytest.raises(ConfigError) as error:
        grid.plan(BASE, [entry], tmp_path / "s")
    assert str(error.value) == f"grid: {entry}: {message}"
    assert not (tmp_path / "s").exists()


def test_a_study_leaves_data_it_cannot_read_to_its_points(tmp_path):
    plan = grid.plan(BASE.replace(dataset="mnist", data_dir=str(tmp_path / "absent"), batch_size=10**6),
                     ["seed=0,1"], tmp_path / "s")
    assert [p.error for p in plan.points] == [None, None]


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 5}, "workers: must be in [1, 4] (the study's points; more never run at once), got 5"),
    ({"experiments_per_worker": -1}, "experiments_per_worker: must be in [0, 4] (0: no limit; the study has 4 "
                                     "points), got -1"),
    ({"max_retries": -1}, "max_retries: must be in [0, 100], got -1"),
    ({"cpus_per_experiment": 10**6}, f"cpus_per_experiment: must be at most the {options.cores()} cores of the "
                                     "local Ray, got 1000000"),
    ({"gpus_per_experiment": 1.5}, "gpus_per_experiment: must be in [0, 16], whole above 1 (as Ray requires), "
                                   "got 1.5"),
    ({"gpus_per_experiment": float("nan")}, "gpus_per_experiment: must be in [0, 16], whole above 1 (as Ray "
                                            "requires), got nan"),
    ({"ray_address": "/proc/x"}, "ray_address: must be auto, host:port or ray://host:port, got '/proc/x'"),
    ({"ray_address": "ray://127.0.0.1:1"}, "ray_address: cannot connect to ray://127.0.0.1:1 (Connection "
                                           "refused within 10 s): is a Ray cluster running there?"),
])
def test_study_options_are_checked_before_ray_starts(kwargs, message):
    with pytest.raises(ConfigError) as error:
        options.check(4, **kwargs)
    assert str(error.value) == message


def test_an_address_that_does_not_answer_is_refused_after_the_timeout(monkeypatch):
    def silent(address, timeout):
        assert address == ("10.1.2.3", 6379) and timeout == 10
        raise TimeoutError("timed out")
    monkeypatch.setattr(options.socket, "create_connection", silent)
    with pytest.raises(ConfigError) as error:
        options.check_address("10.1.2.3:6379")
    assert str(error.value) == ("ray_address: cannot connect to 10.1.2.3:6379 (timed out within 10 s): is a Ray "
                                "cluster running there?")


def test_a_folder_must_be_one_that_can_be_made_and_written(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert writable.check_folder(tmp_path / "new" / "child", "root_dir") == tmp_path / "new" / "child"
    assert not (tmp_path / "new").exists() and sorted(tmp_path.iterdir()) == [afile]
    for path, message in [(afile, f"{afile} is a file, not a folder"),
                          (afile / "x", f"{afile / 'x'}: {afile} is a file, not a folder"),
                          ("/proc/x", "/proc/x: cannot create folders in /proc (No such file or directory)")]:
        with pytest.raises(ConfigError) as error:
            writable.check_folder(path, "root_dir")
        assert str(error.value) == f"root_dir: {message}"


def test_a_built_model_is_checked_before_its_folder_is_written(tmp_path):
    from tf_lottery import experiment
    config = BASE.replace(model="conv2", width=0.125, structure="block", block_shape="1x999",
                          experiment_dir=str(tmp_path / "e"))
    prepared = experiment.prepare(config)  # not a LeNet: its kernels are known once it is built
    with pytest.raises(ConfigError) as error:
        experiment.run_imp(prepared)
    assert str(error.value) == ("block_shape: 1x999 is longer than every kernel of conv2_w0.125 in one side "
                                "(the largest [fan_in, out] views have 1,568 rows and 32 columns), got 1x999")
    assert not (tmp_path / "e").exists()


def test_the_model_summary_refuses_a_lenet_too_large_before_building_it():
    from tf_lottery import experiment
    with pytest.raises(ConfigError, match=r"^hidden: LeNet 784-100000000-10 has 79,500,000,010 weights"):
        experiment.describe_model(BASE.replace(hidden=(10**8,)))
