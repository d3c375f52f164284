"""Every flag of every binary with bad values (numbers at 0, -1, NaN, inf and huge; empty text; a file, a
missing folder's child, paths under a file and under /proc): each case ends in a one-line error naming
the flag or the value, exit status 2, nothing written; or it is on the reviewed list of values that are
valid. A traceback, a hang, another exit status or a silent acceptance fails the test.

The cases run in-process, one process per binary (tests/flag_fuzz.py), all six at once.
"""

import collections
import json
import pathlib
import subprocess
import sys

import pytest

from tf_lottery.config import ExperimentConfig
from tf_lottery.study import folder
from tf_lottery.study import grid

from test_plots import small_experiment

REPO = pathlib.Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "flag_fuzz.py"
SMALL = ["--dataset=mnist_small", "--validation_size=500", "--hidden=32,16", "--train_steps=60",
         "--eval_every=20", "--checkpoint_every=20", "--eval_batch_size=1000", "--rounds=2"]
HUGE = str(10**30)

# (binary, command, flag, value) -> why the value is valid. Nothing else may be accepted.
_EVERY_EXPERIMENT_BINARY = {
    ("seed", "0"): "seed 0 is the default",
    ("data_seed", "0"): "data order seed 0",
    ("validation_size", "0"): "no validation split (early stopping on the last iteration)",
    ("rounds", "0"): "round 0 only: a dense training",
    ("dropout", "0"): "no dropout, the default",
    ("momentum", "0"): "SGD without momentum",
    ("weight_decay", "0"): "no weight decay, the default",
    ("warmup_steps", "0"): "no warmup, the default",
    ("rewind_step", "0"): "reset to theta_0, the default",
    ("gmp_begin_step", "0"): "gmp starts pruning at once",
    ("output_prune_fraction", "0"): "the output layer is not pruned",
    ("conv_prune_fraction", "0"): "convolution kernels are not pruned",
    ("controls", ""): "no controls, the default",
    ("exclude", ""): "no layer left out, the default",
    ("lr_milestones", ""): "a constant learning rate, the default",
    ("learning_rate", "1e30"): "finite and > 0; a diverging loss is --on_nan's to handle",
    ("weight_decay", "1e30"): "finite and >= 0; a diverging loss is --on_nan's to handle",
    ("power", "1e30"): "finite and > 0: the polynomial schedule jumps to its sparsity at round 1",
    ("grasp_temperature", "1e30"): "finite and > 0: grasp's logits scaled to near zero",
    ("supermask_logit_scale", "1e30"): "finite and > 0: the supermask's probabilities saturate",
    **{(flag, HUGE): f"{HUGE} is read as the float 1e30, as --{flag}=1e30" for flag in (
        "learning_rate", "weight_decay", "power", "grasp_temperature", "supermask_logit_scale")},
}
# Folders a run makes: a number is a folder of that name in the working folder, and a missing folder's
# child is made with its parents.
_NEW_FOLDERS = {value: "a new folder" for value in ("0", "-1", "nan", "inf", "1e30", HUGE)}
_FOLDER_FLAGS = {("lottery", "root_dir"), ("lottery", "experiment_dir"), ("train", "root_dir"),
                 ("train", "experiment_dir"), ("study", "study_dir"), ("study", "root_dir"),
                 ("export", "export_dir")}
ALLOWED = {
    **{(binary, "", flag, value): why for binary in ("lottery", "train", "study")
       for (flag, value), why in _EVERY_EXPERIMENT_BINARY.items()},
    **{(binary, "", flag, value): why for binary, flag in _FOLDER_FLAGS for value, why in _NEW_FOLDERS.items()},
    **{(binary, "", flag, "{sandbox}/missing/child"): "made with its parents" for binary, flag in _FOLDER_FLAGS},
    ("analyze", "plots", "rounds_to_plot", "0"): "round 0 is a finished round",
    ("analyze", "plots", "rounds_to_plot", ""): "the default choice of rounds",
    ("study", "", "max_retries", "0"): "a point whose worker dies is not retried",
    ("study", "", "experiments_per_worker", "0"): "no limit, the default",
    ("study", "", "gpus_per_experiment", "0"): "no GPU, the default",
    ("export", "", "round", "0"): "round 0 (the dense network) is a finished round",
    ("export", "", "tolerance", "0"): "only rounds at least as accurate as round 0",
    ("analyze", "lmc", "round", "0"): "the dense network's stability",
    ("analyze", "rewind_search", "round", "0"): "the dense network's rewind points",
    ("analyze", "rewind_search", "candidates", "0"): "rewinding to iteration 0",
    ("analyze", "overlap", "round", "0"): "round 0's mask against round 2's (--round_b)",
    ("analyze", "overlap", "round_b", "0"): "round 1's mask against round 0's",
    ("analyze", "stability", "rewind_steps", "0"): "rewinding to iteration 0 only",
    ("analyze", "stability", "controls", ""): "IMP's mask only, the default",
    ("analyze", "stability", "accuracy_tolerance", "0"): "the accuracy pick is the best rewind point",
    ("analyze", "stability", "distance_tolerance", "0"): "a distance's pick is its smallest distance's point",
}


def _commands(sandbox, experiment_dir, study_dir):
    return {
        "lottery": {"": [*SMALL, f"--root_dir={sandbox}/out"]},
        "train": {"": [*SMALL, f"--root_dir={sandbox}/out"]},
        "study": {"": [*SMALL, f"--root_dir={sandbox}/out", "--grid=seed=0,1"]},
        "branch": {"": [f"--experiment_dir={experiment_dir}", "--controls=random_prune"]},
        "export": {"": [f"--experiment_dir={experiment_dir}", f"--export_dir={sandbox}/export"]},
        "analyze": {
            "plots": [f"--experiment_dir={experiment_dir}"],
            "lmc": [f"--experiment_dir={experiment_dir}", "--round=1", "--points=3"],
            "rewind_search": [f"--experiment_dir={experiment_dir}", "--round=1", "--points=3",
                              "--candidates=0,20"],
            "overlap": [f"--experiment_dir={experiment_dir}", "--round=1", "--round_b=2"],
            "study": [f"--study_dir={study_dir}"],
            "taxonomy": [f"--experiment_dir={experiment_dir}"],
            "stability": [f"--experiment_dir={experiment_dir}", "--round=1", "--points=3", "--rewind_steps=0,20",
                          "--controls=random_prune"],
            "stability_report": [f"--experiment_dir={experiment_dir}"],
        },
    }


def _study_folder(path):
    """A study folder with its two files (no point has run): what `analyze study` checks first."""
    base = ExperimentConfig.from_flat(dataset="mnist_small", validation_size=500, hidden=[16, 8],
                                      train_steps=20, eval_every=10, rounds=1)
    study = folder.Study(grid.plan(base, ["seed=0,1"], path))
    path.mkdir(parents=True)
    study.write_spec()
    study.write()
    return path


def run_fuzz(tmp_path, experiment_dir, cases=None):
    """{binary: driver output} of every binary, run at once; `cases` {binary: [(command, flag, value)]}
    limits them to those cases."""
    study_dir = _study_folder(tmp_path / "study")
    processes = {}
    for binary in ("lottery", "train", "study", "branch", "export", "analyze"):
        if cases is not None and binary not in cases:
            continue
        sandbox = tmp_path / f"sandbox_{binary}"
        sandbox.mkdir()
        spec = {"sandbox": str(sandbox), "commands": _commands(sandbox, experiment_dir, study_dir)[binary],
                "cases": (cases or {}).get(binary)}
        processes[binary] = subprocess.Popen([sys.executable, str(DRIVER), binary], cwd=REPO, text=True,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE)
        processes[binary].stdin.write(json.dumps(spec))
        processes[binary].stdin.close()
    found = {}
    for binary, process in processes.items():
        out, err = process.stdout.read(), process.stderr.read()
        assert process.wait(timeout=600) == 0, f"{binary} driver failed:\n{err[-3000:]}"
        found[binary] = json.loads(out)
    return found


def _names_it(case):
    line = case["detail"]
    return f"--{case['flag']}" in line or (case["value"] and case["value"] in line)


def verdicts(found):
    """(counts, problems): counts of inputs, one-line errors, allowed acceptances, tracebacks, silent
    acceptances and other failures; problems lists each case that is not as it must be."""
    counts, problems = collections.Counter(), []
    for binary, result in found.items():
        for case in result["outcomes"]:
            key = (binary, case["command"], case["flag"], case["value"].replace(result["sandbox"], "{sandbox}"))
            counts["inputs"] += 1
            outcome = case["outcome"]
            if case["wrote"]:
                problems.append((key, f"wrote {case['wrote']}"))
            if outcome == "error":
                counts["one-line errors"] += 1
                if not _names_it(case):
                    problems.append((key, f"error does not name the flag: {case['detail']}"))
            elif outcome == "accepted":
                counts["allowed" if key in ALLOWED else "silently accepted"] += 1
                if key not in ALLOWED:
                    problems.append((key, "silently accepted"))
            else:
                counts["tracebacks" if outcome == "traceback" else "other failures"] += 1
                problems.append((key, f"{outcome}: {case['detail'].strip().splitlines()[-1:]}"))
    return counts, problems


def summary(counts):
    return ", ".join(f"{counts[k]} {k}" for k in ("inputs", "one-line errors", "allowed", "tracebacks",
                                                  "silently accepted", "other failures"))


def test_every_flag_of_every_binary_refuses_bad_values_in_one_line(tmp_path_factory, tmp_path):
    found = run_fuzz(tmp_path, small_experiment(tmp_path_factory))
    counts, problems = verdicts(found)
    print(f"\nflag fuzz: {summary(counts)}")
    for binary, result in found.items():
        print(f"  {binary}: {len(result['outcomes'])} inputs over {len(result['flags'])} flags "
              f"(bool flags, not fuzzed: {', '.join(result['skipped']) or 'none'})")
    assert not problems, f"flag fuzz: {summary(counts)}\n" + "\n".join(map(str, problems))
    assert counts["inputs"] > 1500
    unused = set(ALLOWED) - {(b, c["command"], c["flag"], c["value"].replace(r["sandbox"], "{sandbox}"))
                             for b, r in found.items() for c in r["outcomes"]}
    assert not unused, f"allowed cases that were not tried: {sorted(unused)}"


def _item_9_cases(tmp_path, experiment_dir):
    """{binary: [(command, flag, value, more flags)]} and {(binary, flag, value): the expected line}."""
    def file_in(binary):
        return str(tmp_path / f"sandbox_{binary}" / "a_file")
    lottery = f"{file_in('lottery')}/imp_lenet_mnist_small_init_1dc4e3d7"
    expected = {
        ("lottery", "batch_size", "100000000"):
            "--batch_size: must be at most the 7,500 training examples of 'mnist_small', got 100000000",
        ("lottery", "validation_size", "7999"):
            "--validation_size: leaves 1 training examples, fewer than batch_size=60; hold out at most 7,940, "
            "got 7999",
        ("lottery", "train_size", "1"):
            "--train_size: must be at least batch_size=60 (the training batches are drawn from it), got 1",
        ("lottery", "seed", "99999999999999999999"):
            "--seed: must be at most 4,294,967,295, got 99999999999999999999",
        ("lottery", "hidden", "100000000"):
            "--hidden: LeNet 784-100000000-10 has 79,500,000,010 weights and biases, about 2,544 GB to train",
        ("lottery", "block_shape", "1x999999"):
            "--block_shape: 1x999999 is longer than every kernel of this LeNet in one side (the largest "
            "[fan_in, out] views have 784 rows and 32 columns), got 1x999999",
        ("lottery", "train_steps", "1e23ep"): "--train_steps: must be at most 16,777,216 iterations, got ",
        ("lottery", "train_steps", str(10**23)):
            f"--train_steps: must be at most 16,777,216 iterations, got {10**23}",
        ("lottery", "rounds", "1000000"): "--rounds: must be at most 4,095, got 1000000",
        ("lottery", "rounds", "42"):
            "--rounds: must be at most 41 with these pruning rates and this LeNet's kernels: round 42 would "
            "remove nothing (fc1/kernel at 2, fc2/kernel at 2, output/kernel at 4 weights), got 42",
        ("lottery", "experiment_dir", ""):
            "--experiment_dir: must not be empty (leave the flag out for its default)",
        ("lottery", "learning_rate", "inf"): "--learning_rate: must be a finite number, got inf",
        ("lottery", "root_dir", file_in("lottery")):
            f"--root_dir: {lottery}: {file_in('lottery')} is a file, not a folder",
        ("study", "max_retries", "-1"): "--max_retries: must be in [0, 100], got -1",
        ("study", "study_dir", file_in("study")): f"--study_dir: {file_in('study')} is a file, not a folder",
        ("study", "ray_address", "127.0.0.1:1"):
            "--ray_address: cannot connect to 127.0.0.1:1 (Connection refused within 10 s): is a Ray cluster "
            "running there?",
        ("export", "tolerance", "nan"): "--tolerance: must be >= 0 and <= 100 percentage points, got nan",
        ("export", "tolerance", "inf"): "--tolerance: must be >= 0 and <= 100 percentage points, got inf",
        ("analyze", "points", "100000000"):
            "--points: must be at most 1,001 (steps of 0.001 along the line), got 100000000",
        ("analyze", "experiment_dir", str(experiment_dir)):
            f"--experiment_dir: {experiment_dir} is given twice (as {experiment_dir})",
    }
    commands = {"points": "lmc", "experiment_dir": "plots"}
    more = {"block_shape": ["--structure=block"], "experiment_dir": [f"--experiment_dir={experiment_dir}"]}
    cases = collections.defaultdict(list)
    for binary, flag, value in expected:
        extra = more.get(flag, []) if binary in ("lottery", "analyze") else []
        cases[binary].append((commands.get(flag, "") if binary == "analyze" else "", flag, value, extra))
    return cases, expected


def test_the_flags_of_item_9_fail_before_any_work_in_one_line(tmp_path_factory, tmp_path):
    """Issue 32 item 9: each of these was a traceback, a silent acceptance or a hang."""
    experiment_dir = small_experiment(tmp_path_factory)
    cases, expected = _item_9_cases(tmp_path, experiment_dir)
    found = run_fuzz(tmp_path, experiment_dir, cases)
    seen = {}
    for binary, result in found.items():
        for case in result["outcomes"]:
            assert not case["wrote"], case
            seen[(binary, case["flag"], case["value"])] = (case["outcome"], case["detail"])
    wrong = [(key, seen[key]) for key, message in expected.items()
             if seen[key][0] != "error" or not seen[key][1].startswith(f"{key[0]}: error: {message}")]
    assert not wrong, "\n".join(map(str, wrong))
