"""Precision policies and tf.distribute strategies, as far as a CPU-only machine allows."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import atomic, imp, results, training

from conftest import tiny_model, tiny_training

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--dataset=mnist_small", "--validation_size=500", "--hidden=32,16", "--train_steps=20",
         "--eval_every=10", "--checkpoint_every=10", "--eval_batch_size=1000", "--rounds=1"]


@pytest.fixture
def policy():
    def set_policy(name):
        keras.mixed_precision.set_global_policy(name)
    yield set_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_round_keeps_pruned_weights_at_zero(policy, precision, splits, tmp_path):
    policy(precision)
    training.configure_runtime(0)
    model = tfl.wrap(tiny_model())
    records = imp.run_rounds(model, splits, rounds=1, training_config=tiny_training(train_steps=20),
                             pruning_config=tfl.PruningConfig(fraction=0.5, output_fraction=0.5),
                             experiment_dir=tmp_path)
    assert np.isfinite(records[1]["final_test_accuracy"])
    for wrapper in tfl.wrappers(model):
        assert wrapper.layer.compute_dtype == precision.split("_")[1]
        for _, weight, mask in wrapper.masked_weights:
            assert weight.dtype == "float32" and mask.dtype == "float32"
            effective = (weight * keras.ops.cast(mask, wrapper.layer.compute_dtype)).numpy()
            assert np.all(effective[mask.numpy() == 0] == 0)
            assert 0 < mask.numpy().mean() < 1
    trainer = training.Trainer(model, splits, tiny_training())
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")


_MIRRORED = """
import sys, json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, "tests")
import numpy as np, tf_lottery as tfl
from tf_lottery import imp, training, atomic
from conftest import make_splits, tiny_model, tiny_training
out = {}
for name in ("default", "mirrored"):
    training.configure_runtime(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if name == "mirrored" else tf.distribute.get_strategy()
    with strategy.scope():
        model = tfl.wrap(tiny_model())
    imp.run_rounds(model, make_splits(), rounds=1, training_config=tiny_training(train_steps=20),
                   pruning_config=tfl.PruningConfig(fraction=0.3, output_fraction=0.1),
                   experiment_dir=sys.argv[1] + "/" + name, strategy=strategy)
    out[name] = strategy.num_replicas_in_sync
print(json.dumps(out))
"""


def test_mirrored_over_two_cpus_prunes_like_one_device(tmp_path):
    result = subprocess.run([sys.executable, "-c", _MIRRORED, str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"default": 1, "mirrored": 2}
    for r in (0, 1):
        one = atomic.read_npz(results.round_dir(tmp_path / "default", r) / "mask.npz")
        two = atomic.read_npz(results.round_dir(tmp_path / "mirrored", r) / "mask.npz")
        for key in one:
            np.testing.assert_array_equal(one[key], two[key])
    a = json.loads((tmp_path / "default" / "summary.json").read_text())["rounds"]
    b = json.loads((tmp_path / "mirrored" / "summary.json").read_text())["rounds"]
    assert abs(a[1]["final_test_accuracy"] - b[1]["final_test_accuracy"]) <= 0.05


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes_hold_identical_masks_and_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                     "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "binaries.lottery", *SMALL, "--strategy=multi_worker",
             "--batch_size=20", f"--experiment_dir={tmp_path / 'exp'}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()  # a worker whose peer died would otherwise wait for it forever
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    chief, worker = tmp_path / "exp", tmp_path / "exp" / "workers" / "worker_1"
    for r in (0, 1):
        a = atomic.read_npz(results.round_dir(chief, r) / "mask.npz")
        b = atomic.read_npz(results.round_dir(worker, r) / "mask.npz")
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    summary_a = json.loads((chief / "summary.json").read_text())["rounds"]
    summary_b = json.loads((worker / "summary.json").read_text())["rounds"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rs]
    assert strip(summary_a) == strip(summary_b)  # same weights give the same evaluations


def test_tpu_without_a_tpu_is_a_clear_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "binaries.lottery", *SMALL, "--strategy=tpu",
                             "--tpu=grpc://127.0.0.1:1", f"--experiment_dir={tmp_path / 'exp'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lottery: error: --tpu: no TPU reachable at grpc://127.0.0.1:1")
    assert not (tmp_path / "exp").exists()
