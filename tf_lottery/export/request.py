"""An export request checked without TensorFlow: formats, tolerance, export folder and round choice.

`prepare` returns a Job or raises ConfigError (or DataError) naming the bad
input before anything is written or TensorFlow is imported.
"""

import dataclasses
import pathlib

from tf_lottery import experiment
from tf_lottery import results
from tf_lottery import writable
from tf_lottery.settings import ConfigError

FORMATS = ("saved_model", "keras", "tflite")
REPORT = "export_report.json"  # written into export_dir beside the formats


class ExportError(RuntimeError):
    """An exported file failed its check; nothing was left in the export folder."""


@dataclasses.dataclass(frozen=True)
class Job:
    """A checked export request: the experiment, the chosen round and where the files go."""
    prepared: experiment.Prepared
    round: int
    record: dict
    selection: dict
    export_dir: pathlib.Path
    formats: tuple
    shrink: bool
    overwrite: bool
    sparse: bool = False
    sparse_batch: int = 1


def parse_round(value):
    """A round number (int >= 0) or 'best'; ConfigError naming `round` otherwise."""
    if isinstance(value, str) and value.strip().lower() == "best":
        return "best"
    try:
        index = int(str(value).strip())
    except ValueError:
        index = -1
    if isinstance(value, bool) or index < 0:
        raise ConfigError("round", f"must be a round number or 'best', got {value!r}")
    return index


def _check_tolerance(tolerance):
    if not 0 <= tolerance <= 100:  # NaN fails too
        raise ConfigError("tolerance", f"must be >= 0 and <= 100 percentage points, got {tolerance}")


def select_round(records, round="best", tolerance=0.5):
    """(round index, selection details) from summary.json's round records.

    'best' is the sparsest finished round whose early-stop test accuracy is
    within `tolerance` percentage points of round 0's; ties go to the higher
    accuracy, then the earlier round. Failed rounds are never chosen.
    """
    requested = parse_round(round)
    _check_tolerance(tolerance)
    finished = {r["round"]: r for r in records if not r.get("failed")}
    if requested != "best":
        return requested, {"requested": requested}
    if 0 not in finished:
        raise ConfigError("round", "'best' compares with round 0, which has not finished (or failed)")
    baseline = finished[0]["early_stop_test_accuracy"]
    threshold = baseline - tolerance / 100
    good = [r for r in finished.values() if r["early_stop_test_accuracy"] >= threshold - 1e-12]
    best = min(good, key=lambda r: (r["remaining_fraction"], -r["early_stop_test_accuracy"], r["round"]))
    return best["round"], {"requested": "best", "tolerance_points": tolerance,
                           "round0_early_stop_test_accuracy": baseline,
                           "threshold": threshold, "eligible_rounds": sorted(r["round"] for r in good)}


MAX_SPARSE_BATCH = 4096


def check_sparse_batch(value):
    """The batch size the fast path is measured at: an int from 1 to MAX_SPARSE_BATCH."""
    try:
        batch = int(str(value).strip())
    except ValueError:
        batch = 0
    if isinstance(value, bool) or isinstance(value, float) or not 1 <= batch <= MAX_SPARSE_BATCH:
        raise ConfigError("sparse_batch", f"must be a whole number from 1 to {MAX_SPARSE_BATCH}, got {value!r}")
    return batch


def check_export_dir(export_dir, experiment_dir, overwrite):
    """The resolved export folder: not the experiment folder or above it, one that can be made and
    written, empty unless `overwrite`."""
    if not export_dir:
        raise ConfigError("export_dir", "is required")
    out = pathlib.Path(export_dir).resolve()
    source = pathlib.Path(experiment_dir).resolve()
    if out == source or out in source.parents:
        raise ConfigError("export_dir", f"{out} holds the experiment folder {source}; choose another")
    if out.exists() and not out.is_dir():
        raise ConfigError("export_dir", f"{out} exists and is not a folder")
    writable.check_folder(out, "export_dir")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError("export_dir", f"{out} exists and is not empty; pass --overwrite to replace it")
    return out


def prepare(experiment_dir, export_dir, round="best", formats=FORMATS, shrink=False, overwrite=False,
            tolerance=0.5, data_dir=None, sparse=False, sparse_batch=1):
    """Checks everything that can be checked without TensorFlow; returns a Job. Writes nothing."""
    if isinstance(formats, str):
        formats = formats.split(",")
    formats = tuple(dict.fromkeys(f.strip() for f in formats if f.strip()))
    if not formats or any(f not in FORMATS for f in formats):
        raise ConfigError("format", f"must be names from {', '.join(FORMATS)}, got {','.join(formats)!r}")
    requested = parse_round(round)
    _check_tolerance(tolerance)
    sparse_batch = check_sparse_batch(sparse_batch)
    if not experiment_dir:
        raise ConfigError("experiment_dir", "is required")
    out = check_export_dir(export_dir, experiment_dir, overwrite)
    prepared = experiment.load_experiment(experiment_dir, data_dir=data_dir)
    records = results.read_summary(prepared.directory)["rounds"]
    index, selection = select_round(records, requested, tolerance)
    directory = results.round_dir(prepared.directory, index)
    if not results.is_finished(directory):
        done = sorted(r["round"] for r in records if not r.get("failed"))
        raise ConfigError("round", f"{directory} is not a finished round "
                                   f"(finished: {', '.join(map(str, done)) or 'none'})")
    record = results.read_record(directory)
    if record.get("failed"):
        raise ConfigError("round", f"round {index} failed ({record.get('error')}); choose another")
    return Job(prepared, index, record, selection, out, formats, bool(shrink), bool(overwrite), bool(sparse),
               sparse_batch)
