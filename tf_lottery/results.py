"""The results folder of an experiment: its layout, its summary and the per-round table.

  config.json            the resolved ExperimentConfig
  summary.json           {"rounds": [record, ...], "controls": {name: [record, ...]}},
                         rewritten atomically after every round
  reset_point.npz        weights of unwrapped layers (e.g. batch norm) at the reset point
  round_XX/mask.npz      the 0/1 masks trained in round XX, keyed 'layer/attribute'
  round_XX/curve.json    the evaluation curve of round XX
  round_XX/metrics.json  the round's record; its presence marks the round finished
  round_XX/ckpt/         tf.train checkpoints of model, optimizer and iteration
  round_XX/progress.json the evaluation curve up to the latest checkpoint
  controls/NAME/round_XX the same files for a control (random_reinit, random_prune, one_shot)

Nothing here imports TensorFlow.
"""

import pathlib

from tf_lottery import atomic


class RoundFailed(RuntimeError):
    """A round stopped on a non-finite loss; the message names the round and the iterations."""


def round_dir(experiment_dir, round_index):
    """Folder of one round."""
    return pathlib.Path(experiment_dir) / f"round_{round_index:02d}"


def control_dir(experiment_dir, control):
    """Folder of one control's rounds."""
    return pathlib.Path(experiment_dir) / "controls" / control


def read_summary(experiment_dir):
    """summary.json as a dict ({"rounds": [], "controls": {}} if there is none yet)."""
    path = pathlib.Path(experiment_dir) / "summary.json"
    summary = atomic.read_json(path) if path.exists() else {}
    return {"rounds": summary.get("rounds", []), "controls": summary.get("controls", {})}


def update_summary(experiment_dir, records, control=None):
    """Rewrites summary.json atomically with new records for the IMP rounds or for one control."""
    summary = read_summary(experiment_dir)
    if control is None:
        summary["rounds"] = records
    else:
        summary["controls"][control] = records
    atomic.write_json(pathlib.Path(experiment_dir) / "summary.json", summary)


def format_table(records):
    """A plain-text per-round table: remaining %, early-stop iteration, test accuracies, time."""
    lines = [f"{'round':>5}  {'remaining %':>11}  {'early-stop it':>13}  "
             f"{'test acc @es':>12}  {'final test acc':>14}  {'seconds':>8}"]
    for rec in records:
        if rec.get("failed"):
            lines.append(f"{rec['round']:>5}  {100 * rec['remaining_fraction']:>11.2f}  "
                         f"failed: {rec['error']}")
            continue
        lines.append(f"{rec['round']:>5}  {100 * rec['remaining_fraction']:>11.2f}  "
                     f"{rec['early_stop_iteration']:>13}  {rec['early_stop_test_accuracy']:>12.4f}  "
                     f"{rec['final_test_accuracy']:>14.4f}  {rec['wall_seconds']:>8.1f}")
    return "\n".join(lines)


def format_summary(summary):
    """format_table of the IMP rounds, then one table per control."""
    parts = [format_table(summary["rounds"])]
    for name, records in summary.get("controls", {}).items():
        parts.append(f"\ncontrol: {name}\n{format_table(records)}")
    return "\n".join(parts)
