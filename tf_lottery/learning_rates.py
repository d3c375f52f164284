"""WarmupPiecewise: the learning-rate schedule of the trainer's optimizers, registered with Keras.

Its own module so that `import_hooks` can register it when Keras is imported
without loading the trainer: a `.keras` file compiled with it then loads after
`import tf_lottery` alone.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tf_lottery")
class WarmupPiecewise(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 over `warmup_steps`, then `rate` times `gamma` per milestone passed."""

    def __init__(self, rate, warmup_steps=0, milestones=(), gamma=0.1):
        self.rate = rate
        self.warmup_steps = warmup_steps
        self.milestones = tuple(milestones)
        self.gamma = gamma
        self.offset = None  # an int64 variable added to the step (the Trainer's lr_offset), if set

    def __call__(self, step):
        if self.offset is not None:
            step = tf.cast(step, tf.int64) + self.offset
        step = tf.cast(step, tf.float32)
        passed = sum(tf.cast(step > m, tf.float32) for m in self.milestones) if self.milestones else 0.0
        rate = self.rate * tf.pow(self.gamma, passed)
        if self.warmup_steps:
            rate *= tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return rate

    def get_config(self):
        return {"rate": self.rate, "warmup_steps": self.warmup_steps,
                "milestones": list(self.milestones), "gamma": self.gamma}
