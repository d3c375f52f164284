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
    """Loads the model variables of the latest checkpoint of the round in `directory`.

    That is the end of a finished round: an unreadable one is DamagedFile, which
    says how to have the round trained again (from its previous checkpoint if it has one).
    """
    state = results.checkpoint_dir(directory) / "checkpoint"
    try:
        path = latest(directory)
    except ValueError as error:  # an empty or garbled checkpoint state file
        raise results.DamagedFile(state, results.reason(error), results.retrain_round(directory)) from None
    if path is None:
        if state.is_file():
            raise results.DamagedFile(state, "names no readable checkpoint",
                                      results.retrain_round(directory))
        raise FileNotFoundError(f"{directory}: no checkpoint to continue from")
    try:
        _restore(model, path)
    except _unreadable() as error:
        saved = tf.train.get_checkpoint_state(str(results.checkpoint_dir(directory)))
        older = [p for p in saved.all_model_checkpoint_paths if p != saved.model_checkpoint_path]
        remedy = (f"it holds the round's trained weights: delete {results.metrics_path(directory)} "
                  "and rerun the experiment, which trains the round on from its previous checkpoint"
                  if any(_readable(model, p) for p in older) else results.retrain_round(directory))
        raise results.DamagedFile(path, results.reason(error), remedy) from None


def _unreadable():
    """What restoring a torn or corrupt checkpoint raises."""
    return tf.errors.OpError, IndexError, OSError


def _restore(model, path):
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()


def _readable(model, path):
    try:
        _restore(model, path)
    except _unreadable():
        return False
    return True


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
        """Resets the wrapped weights to their snapshots and the unwrapped ones to the saved values.

        The saved values are found by variable path, or in order when every
        path differs in name only (the model built again in one process, where
        Keras numbers layer names anew).
        """
        model_ops.reset(self.model)
        if self.variables:
            values = results.read_arrays(self.path, "it holds the weights every round resets to: "
                                                    "run the experiment again in another folder")
            if set(values) != set(self.variables) and len(values) == len(self.variables):
                values = dict(zip(self.variables, values.values()))
            for key, variable in self.variables.items():
                variable.assign(values[key])
