"""TensorBoard event files from evaluation curves and round records.

  tb/round_XX                one run per IMP round: per-evaluation scalars, step = iteration
  tb/rounds                  the IMP rounds: per-round scalars, step = round
  tb/controls/NAME/round_XX  the same for each control's rounds
  tb/controls/NAME           and for its per-round scalars

Scalars are written with tf.summary.write and the scalars plugin's metadata,
so the tensorboard package is needed to view them but not to write them.
Each function replaces the event files of the run it writes, so writing a
run again (after a resume, or from binaries/analyze) never duplicates points.
The rounds' files are read through `tf_lottery.results`.
"""

import pathlib

import tensorflow as tf

from tf_lottery import results
from tf_lottery.learning_rates import WarmupPiecewise
from tf_lottery.config import ExperimentConfig
from tf_lottery.settings import ConfigError

CURVE_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "test_loss": "loss/test",
    "val_accuracy": "accuracy/val",
    "test_accuracy": "accuracy/test",
    "learning_rate": "learning_rate",
}
REMAINING_TAG = "sparsity/remaining_percent"
ROUND_TAGS = {
    "early_stop_test_accuracy": "rounds/early_stop_test_accuracy",
    "final_test_accuracy": "rounds/final_test_accuracy",
    "early_stop_iteration": "rounds/early_stop_iteration",
}
ROUND_REMAINING_TAG = "rounds/remaining_percent"


def _scalar_metadata():
    metadata = tf.compat.v1.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.data_class = tf.compat.v1.SummaryMetadata.DESCRIPTOR.fields_by_name[
        "data_class"].enum_type.values_by_name["DATA_CLASS_SCALAR"].number
    return metadata


def write_scalars(logdir, points):
    """Replaces the event files in `logdir` with one holding the scalars [(tag, step, value)]."""
    logdir = pathlib.Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    for old in logdir.glob("events.out.tfevents.*"):
        old.unlink()
    metadata = _scalar_metadata()
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for tag, step, value in points:
            tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step),
                             metadata=metadata)
    writer.close()
    return logdir


def learning_rates(training_config, iterations):
    """The learning rate the optimizer uses at each iteration under `training_config`."""
    c = training_config
    if not (c.lr_milestones or c.warmup_steps):
        return [float(c.learning_rate)] * len(iterations)
    schedule = WarmupPiecewise(c.learning_rate, c.warmup_steps, c.lr_milestones, c.lr_gamma)
    return [float(schedule(i)) for i in iterations]


def write_curve_scalars(logdir, records, training_config=None, remaining_fraction=None):
    """Writes one run of per-evaluation scalars from a curve ([{iteration, train_loss, ...}]).

    Tags: loss/{train,val,test}, accuracy/{val,test}, learning_rate (from the
    records, or from `training_config`'s schedule if given) and
    sparsity/remaining_percent (if `remaining_fraction` is given).
    """
    records = list(records)
    if training_config is not None and not any("learning_rate" in r for r in records):
        rates = learning_rates(training_config, [r["iteration"] for r in records])
        records = [{**r, "learning_rate": rate} for r, rate in zip(records, rates)]
    points = []
    for record in records:
        step = record["iteration"]
        points += [(tag, step, record[field]) for field, tag in CURVE_TAGS.items()
                   if record.get(field) is not None]
        if remaining_fraction is not None:
            points.append((REMAINING_TAG, step, 100 * remaining_fraction))
    return write_scalars(logdir, points)


def write_round_scalars(logdir, round_records):
    """Writes one run of per-round scalars (step = round): accuracies, early-stop iteration, sparsity."""
    points = []
    for record in round_records:
        step = record["round"]
        points.append((ROUND_REMAINING_TAG, step, 100 * record["remaining_fraction"]))
        if not record.get("failed"):
            points += [(tag, step, record[field]) for field, tag in ROUND_TAGS.items()
                       if record.get(field) is not None]
    return write_scalars(logdir, points)


def tb_dir(experiment_dir, round_index=None, control=None):
    """The TensorBoard run folder of a round, or of the per-round scalars (round_index None).

    tb/ mirrors the results folder: tb/round_XX, tb/controls/NAME/round_XX;
    the per-round runs are tb/rounds and tb/controls/NAME.
    """
    base = results.tensorboard_dir(experiment_dir)
    if round_index is not None:
        return results.round_dir(base, round_index, control)
    return results.control_dir(base, control) if control else base / "rounds"


def saved_training_config(experiment_dir):
    """The TrainingConfig of experiment_dir/config.json, or None if there is no readable one."""
    try:
        return ExperimentConfig.from_flat(results.read_config(experiment_dir)).resolved_training()
    except (OSError, ValueError, TypeError, ConfigError):
        return None


def write_round(experiment_dir, round_index, training_config=None, control=None):
    """Writes tb/[controls/NAME/]round_XX from the round's curve.json and metrics.json.

    `training_config` gives the learning rates (default: the one in config.json).
    Returns the run folder, or None for a round without a curve (failed or unfinished).
    """
    directory = results.round_dir(experiment_dir, round_index, control)
    if not (results.is_finished(directory) and results.curve_path(directory).is_file()):
        return None
    if training_config is None:
        training_config = saved_training_config(experiment_dir)
    remaining = results.read_record(directory)["remaining_fraction"]
    return write_curve_scalars(tb_dir(experiment_dir, round_index, control),
                               results.read_curve(directory), training_config, remaining)


def write_rounds(experiment_dir, control=None):
    """Writes tb/rounds (or tb/controls/NAME) from the records in summary.json."""
    summary = results.read_summary(experiment_dir)
    records = summary["controls"].get(control, []) if control else summary["rounds"]
    return write_round_scalars(tb_dir(experiment_dir, control=control), records)


def log_round(experiment_dir, round_index, training_config=None, control=None):
    """After a round (of a control) is recorded: writes its curve run and rewrites the per-round run."""
    write_round(experiment_dir, round_index, training_config, control)
    write_rounds(experiment_dir, control)


def write_tensorboard(experiment_dir):
    """(Re)writes every TensorBoard run of an experiment folder from its results files; returns tb/."""
    summary = results.read_summary(experiment_dir)
    training_config = saved_training_config(experiment_dir)
    write_rounds(experiment_dir)
    for record in summary["rounds"]:
        write_round(experiment_dir, record["round"], training_config)
    for name, records in summary["controls"].items():
        write_rounds(experiment_dir, control=name)
        for record in records:
            write_round(experiment_dir, record["round"], training_config, control=name)
    return results.tensorboard_dir(experiment_dir)


def read_scalars(logdir):
    """{tag: [(step, value), ...]} of the scalars in `logdir`'s event files (not its subfolders)."""
    scalars = {}
    for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                          else value.simple_value)
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars
