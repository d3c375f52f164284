"""The TensorFlow side of the results folder: a round's checkpoints and the experiment's reset point."""

from absl import logging
from etils import epy

from tf_lottery import atomic
from tf_lottery import results

with epy.lazy_imports():
    import keras
    import tensorflow as tf

    from tf_lottery import model_ops


def latest(directory):
    """The path of the latest checkpoint of the round in `directory`, or None."""
    return tf.train.latest_checkpoint(str(results.checkpoint_dir(directory)))


def has_checkpoint(directory):
    """Whether the round in `directory` has started (has a checkpoint to continue from)."""
    return latest(directory) is not None


def restore_model(model, directory):
    """Loads the model variables of the latest checkpoint of the round in `directory`."""
    path = latest(directory)
    if path is None:
        raise FileNotFoundError(f"{directory}: no checkpoint to continue from")
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()


class ResetPoint:
    """Snapshots (in the wrappers) plus the unwrapped layers' weights, saved beside the rounds."""

    def __init__(self, model, experiment_dir):
        self.model = model
        self.path = results.reset_point_path(experiment_dir)
        self.variables = model_ops.unwrapped_variables(model)

    def capture(self, iteration=0):
        model_ops.snapshot(self.model)
        atomic.write_npz(self.path, {k: keras.ops.convert_to_numpy(v)
                                     for k, v in self.variables.items()})
        logging.info("reset point captured at iteration %d", iteration)

    def restore(self):
        model_ops.reset(self.model)
        if self.variables:
            values = atomic.read_npz(self.path)
            for key, variable in self.variables.items():
                variable.assign(values[key])
