"""Shared fixtures: tiny synthetic data and models, so tests run in seconds without downloads."""

import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import data, training

REPO = pathlib.Path(__file__).resolve().parents[1]
# A small LeNet on the bundled data, for runs of binaries.lottery.
SMALL_LOTTERY = ["--dataset=mnist_small", "--validation_size=500", "--hidden=32,16", "--eval_every=20",
                 "--checkpoint_every=20"]


def run_binary(module, *args):
    """Runs `python -m binaries.MODULE ARGS` from the repository; the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", f"binaries.{module}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def make_splits(n_train=240, n_val=60, n_test=60, shape=(8, 8, 1), classes=4, seed=0):
    """Synthetic uint8 images whose label is the brightest quadrant: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def split(n):
        x = rng.integers(0, 120, size=(n,) + shape, dtype=np.uint8)
        y = rng.integers(0, classes, size=n).astype(np.int64)
        h, w = shape[0] // 2, shape[1] // 2
        for i, label in enumerate(y):
            r, c = divmod(int(label), 2)
            x[i, r * h:(r + 1) * h, c * w:(c + 1) * w] += 120
        return x, y

    (tx, ty), (vx, vy), (sx, sy) = split(n_train), split(n_val), split(n_test)
    mean = float(tx.mean() / 255.0)
    std = float((tx / 255.0).std())
    return data.Splits("synthetic", tx, ty, vx, vy, sx, sy, classes, mean, std)


def tiny_model(seed=0, hidden=(16, 8), shape=(8, 8, 1), classes=4):
    return tfl.models.build("lenet", input_shape=shape, num_classes=classes, seed=seed, hidden=hidden)


def tiny_training(**overrides):
    values = dict(train_steps=40, batch_size=20, eval_every=10, eval_batch_size=64,
                  checkpoint_every=20, steps_per_call=10, learning_rate=1e-2)
    values.update(overrides)
    return tfl.TrainingConfig(**values)


@pytest.fixture(scope="session")
def splits():
    return make_splits()


class Kill(Exception):
    """Stands for a SIGKILL inside a test process."""


def killed_after_save(monkeypatch, count, run):
    """Runs `run()` with the Trainer raising Kill right after its `count`-th checkpoint save
    (a kill mid-round); checks that it was killed and restores the normal save."""
    original_save = training._Run._save
    saves = {"n": 0}

    def save_then_kill(self, progress):
        original_save(self, progress)
        saves["n"] += 1
        if saves["n"] == count:
            raise Kill()

    monkeypatch.setattr(training._Run, "_save", save_then_kill)
    with pytest.raises(Kill):
        run()
    monkeypatch.setattr(training._Run, "_save", original_save)
