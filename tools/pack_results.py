"""Packs a finished experiment's small results for the repository, and unpacks them into a folder.

  python tools/pack_results.py pack EXPERIMENT_DIR docs/results/data/NAME
  python tools/pack_results.py unpack docs/results/data/NAME OUT_DIR   # then analyze plots OUT_DIR

A pack holds config.json, summary.json, every finished round's curve.json and
metrics.json (controls included) and the masks of every round as bits
(masks.npz: one packed array per round and weight); no checkpoints. Unpacking
writes the folder layout back, with each round's mask.npz, so plots and
reports can be rebuilt from the repository.
"""

import json
import pathlib
import shutil
import sys

import numpy as np

from tf_lottery import atomic
from tf_lottery import results

MASKS = "masks.npz"


def _round_dirs(experiment_dir):
    summary = results.read_summary(experiment_dir)
    dirs = [results.round_dir(experiment_dir, r["round"]) for r in summary["rounds"]]
    for control, records in summary["controls"].items():
        dirs += [results.round_dir(experiment_dir, r["round"], control) for r in records]
    return [d for d in dirs if results.is_finished(d)]


def pack(experiment_dir, out):
    """Writes the pack of `experiment_dir` into `out` (replaced if it exists)."""
    experiment_dir, out = pathlib.Path(experiment_dir), pathlib.Path(out)
    if out.exists():
        shutil.rmtree(out)
    for path in (results.config_path(experiment_dir), results.summary_path(experiment_dir)):
        (out / path.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / path.name)
    packed, shapes = {}, {}
    for directory in _round_dirs(experiment_dir):
        relative = directory.relative_to(experiment_dir)
        for path in (results.curve_path(directory), results.metrics_path(directory)):
            if path.is_file():
                (out / relative).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out / relative / path.name)
        for key, mask in atomic.read_npz(results.mask_path(directory)).items():
            name = f"{relative.as_posix()}|{key}"
            packed[name] = np.packbits(mask.astype(bool).ravel())
            shapes[name] = list(mask.shape)
    atomic.write_npz(out / MASKS, packed)
    atomic.write_json(out / "mask_shapes.json", shapes)


def unpack(pack_dir, out):
    """Writes the experiment folder a pack describes (without checkpoints) into `out`."""
    pack_dir, out = pathlib.Path(pack_dir), pathlib.Path(out)
    shutil.copytree(pack_dir, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MASKS, "mask_shapes.json"))
    shapes = json.loads((pack_dir / "mask_shapes.json").read_text())
    masks = {}
    for name, bits in atomic.read_npz(pack_dir / MASKS).items():
        relative, key = name.split("|", 1)
        size = int(np.prod(shapes[name]))
        mask = np.unpackbits(bits)[:size].reshape(shapes[name]).astype(np.float32)
        masks.setdefault(relative, {})[key] = mask
    for relative, round_masks in masks.items():
        atomic.write_npz(results.mask_path(out / relative), round_masks)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    {"pack": pack, "unpack": unpack}[sys.argv[1]](sys.argv[2], sys.argv[3])
