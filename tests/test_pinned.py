"""Results pinned before the settings, registries and round loop were rebuilt: same names, same numbers."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from tf_lottery import flags as setting_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
PINNED = REPO / "tests" / "data"


def _config_of(flagfile):
    values = flags.FlagValues()
    setting_flags.define_experiment_flags(values)
    values(["prog", f"--flagfile={flagfile}"])
    return setting_flags.config_from_flags(values)


@pytest.mark.parametrize("flagfile", sorted(p.relative_to(REPO).as_posix()
                                            for p in (REPO / "configs").glob("*.cfg")))
def test_every_config_keeps_its_folder_name(flagfile, monkeypatch):
    monkeypatch.chdir(REPO)
    pinned = json.loads((PINNED / "pinned_folder_names.json").read_text())[flagfile]
    config = _config_of(flagfile)
    assert config.name() == pinned["imp"]
    assert config.in_iterations(45000).name() == pinned["imp_45000_train_examples"]
    assert config.name("train") == pinned["train"]


def _mask_digest(path):
    digest = hashlib.sha256()
    with np.load(path) as masks:
        for key in sorted(masks.files):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(masks[key]).tobytes())
    return digest.hexdigest()[:16]


def _without_time(records):
    return [{k: v for k, v in record.items() if k != "wall_seconds"} for record in records]


RUNS = json.loads((PINNED / "pinned_summaries.json").read_text())


@pytest.mark.parametrize("name", sorted(RUNS))
def test_runs_are_bit_identical_to_the_recorded_ones(name, tmp_path):
    """3-round quickstart, rewind with all three controls, neuron structure with random_prune."""
    pinned = RUNS[name]
    subprocess.run([sys.executable, "-m", "binaries.lottery", *pinned["args"],
                    f"--root_dir={tmp_path}"], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    directory = tmp_path / name
    summary = json.loads((directory / "summary.json").read_text())
    assert _without_time(summary["rounds"]) == pinned["rounds"]
    assert {c: _without_time(r) for c, r in summary["controls"].items()} == pinned["controls"]
    masks = {str(p.relative_to(directory).parent): _mask_digest(p)
             for p in sorted(directory.rglob("mask.npz"))}
    assert masks == pinned["masks"]


def test_the_full_quickstart_prints_the_readme_table(tmp_path):
    """configs/quickstart.cfg (8 rounds x 2,000 iterations, about a minute) gives README.md's table,
    under the numerics identity docs/quickstart_numerics.json records (the failure names both)."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import quickstart_table
    finally:
        sys.path.remove(str(REPO / "tools"))
    directory = quickstart_table.run(tmp_path)
    assert len(quickstart_table.readme_rows()) == 9
    assert quickstart_table.mismatch(directory) == ""
