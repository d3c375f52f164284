"""Packs a finished experiment's small results for the repository, and unpacks them into a folder.

  python tools/pack_results.py pack [--without_masks|--without_rounds] EXPERIMENT_DIR docs/results/data/NAME
  python tools/pack_results.py unpack docs/results/data/NAME OUT_DIR   # then analyze plots OUT_DIR

A study folder (binaries.study) packs the same way: its study_config.json and
study.json, and each finished point packed under its folder name (a point
already packed with the same summary.json and analysis records is left as it
is, so packing again as more points finish rewrites nothing finished). Unpacked, it is a study
folder again: `analyze study` reads it, and the study command resumes it.

A pack holds config.json, summary.json, launches.json, every finished round's metrics.json
(controls included), the curves gzipped (curves.json.gz) and the masks as bits
(masks.npz: one packed array per round and weight; a control round whose mask
is IMP's is not stored twice) and the analyses' records (analysis/*.json, such
as stability_round_RR.json; a record over MAX_RECORD_BYTES is left out with a
message); no checkpoints, and none of the arrays the analyses cache or train
(analysis/rewind_points/, analysis/stability/). Unpacking writes the folder
layout back, with each round's curve.json and mask.npz, so plots and reports
can be rebuilt from the repository.

`--without_masks` leaves the masks out (no masks.npz, no mask_shapes.json): the
records and curves are all `analyze study`, `analyze plots`' accuracy figures and
tools/pages.py read, and a study of many points' masks is megabytes. Unpacked, such
a pack has no mask.npz, so nothing that reads the masks (their figures and analyses) runs on it.

`--without_rounds` packs config.json, summary.json, launches.json and the analysis records only
(no round folders, curves or masks): for analyses of experiments whose rounds are packed elsewhere.
Unpacked, `analyze stability_report` reads it (it needs config.json and the stability records).
"""

import gzip
import json
import pathlib
import shutil
import sys

import numpy as np

from tf_lottery import atomic
from tf_lottery import results
from tf_lottery.study import folder

MASKS = "masks.npz"
CURVES = "curves.json.gz"
ANALYSIS = "analysis"  # results.analysis_dir's name
MAX_RECORD_BYTES = 1_000_000  # an analysis record above this is left out of a pack
OPTIONS = {"--without_masks": "masks", "--without_rounds": "rounds"}


def _round_dirs(experiment_dir):
    summary = results.read_summary(experiment_dir)
    dirs = [results.round_dir(experiment_dir, r["round"]) for r in summary["rounds"]]
    for control, records in summary["controls"].items():
        dirs += [results.round_dir(experiment_dir, r["round"], control) for r in records]
    return [d for d in dirs if results.is_finished(d)]


def analysis_records(experiment_dir):
    """(the analysis records of a folder a pack carries, those it leaves out): analysis/*.json up to
    MAX_RECORD_BYTES each, a larger one left out; nothing in analysis/'s subfolders."""
    found = sorted(results.analysis_dir(experiment_dir).glob("*.json"))
    return ([p for p in found if p.stat().st_size <= MAX_RECORD_BYTES],
            [p for p in found if p.stat().st_size > MAX_RECORD_BYTES])


def pack(experiment_dir, out, masks=True, rounds=True):
    """Writes the pack of `experiment_dir` into `out` (replaced if it exists); without `masks`,
    its records and curves only; without `rounds`, its top-level files and analysis records only."""
    experiment_dir, out = pathlib.Path(experiment_dir), pathlib.Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for path in (results.config_path(experiment_dir), results.summary_path(experiment_dir),
                 results.launches_path(experiment_dir)):
        if path.is_file():
            shutil.copyfile(path, out / path.name)
    kept, too_big = analysis_records(experiment_dir)
    for path in too_big:
        print(f"pack_results.py: left out {path} ({path.stat().st_size:,} bytes; an analysis record is "
              f"packed up to {MAX_RECORD_BYTES:,} bytes)", file=sys.stderr)
    for path in kept:
        (out / ANALYSIS).mkdir(exist_ok=True)
        shutil.copyfile(path, out / ANALYSIS / path.name)
    if rounds:
        _pack_rounds(experiment_dir, out, masks)


def _pack_rounds(experiment_dir, out, masks):
    """The finished rounds' records, their curves gzipped and (with `masks`) their masks as bits."""
    packed, shapes, curves, imp_masks = {}, {}, {}, {}
    for directory in _round_dirs(experiment_dir):
        relative = directory.relative_to(experiment_dir)
        (out / relative).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results.metrics_path(directory), out / relative / results.METRICS)
        if results.search_path(directory).is_file():
            shutil.copyfile(results.search_path(directory), out / relative / results.SEARCH)
        if results.curve_path(directory).is_file():
            curves[relative.as_posix()] = json.loads(results.curve_path(directory).read_text())
        if not masks:
            continue
        round_masks = atomic.read_npz(results.mask_path(directory))
        if len(relative.parts) == 1:
            imp_masks[relative.name] = round_masks
        for key, mask in round_masks.items():
            same = imp_masks.get(relative.name, {}).get(key)
            if len(relative.parts) > 1 and same is not None and np.array_equal(same, mask):
                continue  # a control trained on IMP's own mask
            name = f"{relative.as_posix()}|{key}"
            packed[name] = np.packbits(mask.astype(bool).ravel())
            shapes[name] = list(mask.shape)
    if masks:
        atomic.write_npz(out / MASKS, packed)
        atomic.write_json(out / "mask_shapes.json", shapes)
    with gzip.open(out / CURVES, "wt") as f:
        json.dump(curves, f)


def unpack(pack_dir, out, masks=True):
    """Writes the experiment folder a pack describes (without checkpoints) into `out`; without
    `masks`, only its records and curves (enough for reports and tables)."""
    pack_dir, out = pathlib.Path(pack_dir), pathlib.Path(out)
    shutil.copytree(pack_dir, out, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(MASKS, CURVES, "mask_shapes.json"))
    if (pack_dir / CURVES).is_file():
        with gzip.open(pack_dir / CURVES, "rt") as f:
            for relative, curve in json.load(f).items():
                atomic.write_json(results.curve_path(out / relative), curve)
    if not masks or not (pack_dir / MASKS).is_file():
        return
    shapes = json.loads((pack_dir / "mask_shapes.json").read_text())
    unpacked = {}
    for name, bits in atomic.read_npz(pack_dir / MASKS).items():
        relative, key = name.split("|", 1)
        size = int(np.prod(shapes[name]))
        unpacked.setdefault(relative, {})[key] = np.unpackbits(bits)[:size].reshape(shapes[name]).astype(np.float32)
    for metrics in sorted(out.rglob(results.METRICS)):
        relative = metrics.parent.relative_to(out)
        own = unpacked.get(relative.as_posix(), {})
        imp = unpacked.get(relative.name, {})  # a control round's IMP round has the same folder name
        atomic.write_npz(results.mask_path(out / relative), {**imp, **own} if own or imp else {})


def _same_records(point, packed):
    """Whether a point's pack holds its summary.json and analysis records as they are now."""
    if not (results.summary_path(packed).is_file()
            and results.read_summary(packed) == results.read_summary(point)):
        return False
    have = sorted(p.name for p in (packed / ANALYSIS).glob("*.json"))
    now = analysis_records(point)[0]
    return have == [p.name for p in now] and all(
        (packed / ANALYSIS / p.name).read_bytes() == p.read_bytes() for p in now)


def pack_study(study_dir, out, masks=True, rounds=True):
    """Packs a study folder into `out`: its two study files and every finished point's pack
    (without `masks` or `rounds`: see pack)."""
    study_dir, out = pathlib.Path(study_dir), pathlib.Path(out)
    _, study = folder.read_study(study_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path in (folder.spec_path(study_dir), folder.study_path(study_dir)):
        shutil.copyfile(path, out / path.name)
    for entry in study["points"]:
        point, packed = study_dir / entry["folder"], out / entry["folder"]
        if entry["state"] != "finished":
            continue
        if _same_records(point, packed):
            continue
        pack(point, packed, masks, rounds)


def unpack_study(pack_dir, out, masks=True):
    """Writes the study folder a study pack describes into `out` (without `masks`: see unpack)."""
    pack_dir, out = pathlib.Path(pack_dir), pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for path in (folder.spec_path(pack_dir), folder.study_path(pack_dir)):
        shutil.copyfile(path, out / path.name)
    for point in sorted(p for p in pack_dir.iterdir() if p.is_dir()):
        unpack(point, out / point.name, masks)


def _is_study(directory):
    return folder.spec_path(directory).is_file()


def main(argv):
    """The command line (without the program's name); returns the exit status."""
    options = [a for a in argv if a.startswith("--")]
    words = [a for a in argv if not a.startswith("--")]
    if len(words) != 3 or words[0] not in ("pack", "unpack"):
        print(__doc__.strip().splitlines()[0], "\nusage: python tools/pack_results.py "
              "pack [--without_masks|--without_rounds] DIR OUT | unpack PACK OUT", file=sys.stderr)
        return 2
    for option in options:
        if option not in OPTIONS or words[0] != "pack":
            print(f"pack_results.py: unknown option {option} (pack takes {' or '.join(OPTIONS)})", file=sys.stderr)
            return 2
    command, source, target = words
    if command == "pack":
        (pack_study if _is_study(source) else pack)(
            source, target, **{name: option not in options for option, name in OPTIONS.items()})
    else:
        (unpack_study if _is_study(source) else unpack)(source, target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
