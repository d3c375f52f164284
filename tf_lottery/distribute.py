"""tf.distribute strategies and dtype policies for the trainer, by name."""

import os
import pathlib
import socket

import keras
import tensorflow as tf

from tf_lottery import results
from tf_lottery.settings import ConfigError


def set_precision(precision):
    """Sets the global Keras dtype policy: float32, mixed_float16 or mixed_bfloat16.

    Variables (weights, masks, snapshots) stay float32 under every policy;
    layers compute in the policy's compute dtype.
    """
    keras.mixed_precision.set_global_policy(precision)


def make_strategy(name, tpu=None):
    """The tf.distribute strategy called `name`; a ConfigError says why one cannot be made."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy", "multi_worker needs the TF_CONFIG environment variable "
                                          "describing the cluster and this worker's task")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        _check_reachable(tpu)
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError("tpu", f"no TPU reachable at {tpu or 'the default address'} "
                                     f"({first_line})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError("strategy", f"unknown strategy '{name}'")


def _check_reachable(tpu):
    """Fails fast on a grpc:// TPU address that does not accept connections."""
    if not tpu or not tpu.startswith("grpc://"):
        return
    host, _, port = tpu[len("grpc://"):].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as error:
        raise ConfigError("tpu", f"no TPU reachable at {tpu} ({error})") from None


def worker_directory(directory, strategy):
    """Where this worker writes: the experiment folder for the chief, a private subfolder otherwise.

    Every worker runs the same rounds and takes the same pruning decisions;
    only the chief's files are the experiment's.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return pathlib.Path(directory)
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    if chief:
        return pathlib.Path(directory)
    return results.worker_dir(directory, task_type, task_id)
