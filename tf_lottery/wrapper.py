"""LotteryWrapper: a Keras layer wrapper that holds a mask and a snapshot per weight."""

import inspect

import keras
from keras import ops

# Checked in order: SeparableConv and DepthwiseConv subclass the generic conv base.
_PRUNABLE_BY_TYPE = (
    (keras.layers.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel")),
    (keras.layers.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel")),
    (keras.layers.DepthwiseConv1D, ("kernel",)),
    (keras.layers.DepthwiseConv2D, ("kernel",)),
    (keras.layers.Conv1D, ("kernel",)),
    (keras.layers.Conv2D, ("kernel",)),
    (keras.layers.Conv3D, ("kernel",)),
    (keras.layers.Dense, ("kernel",)),
    (keras.layers.Embedding, ("embeddings",)),
)


def is_tf_keras_object(obj):
    """True for objects from tf_keras (Keras 2), which tf_lottery cannot wrap."""
    return type(obj).__module__.split(".")[0] == "tf_keras"


def default_prunable(layer):
    """Names of the weights of `layer` that are pruned by default (kernels, embeddings)."""
    for layer_type, names in _PRUNABLE_BY_TYPE:
        if isinstance(layer, layer_type):
            return names
    return ()


@keras.saving.register_keras_serializable(package="tf_lottery")
class LotteryWrapper(keras.layers.Wrapper):
    """Runs the wrapped layer on `weight * mask` for each prunable weight.

    For every prunable weight the wrapper owns a non-trainable float32 `mask`
    (ones at first); for every weight of the inner layer (prunable or not, so
    that biases reset too) it owns a non-trainable `snapshot`, taken when the
    wrapper is built: theta_0. Masked positions get exactly zero gradient.

    Args:
        layer: the Keras 3 layer to wrap.
        prunable: names of the inner layer's weight attributes to mask
            (default: the kernel of Dense/Conv layers, the embeddings of
            Embedding).
    """

    def __init__(self, layer, prunable=None, **kwargs):
        if is_tf_keras_object(layer):
            raise TypeError(
                f"layer '{getattr(layer, 'name', layer)}' is a tf_keras (Keras 2) layer; "
                "tf_lottery wraps Keras 3 layers (import keras, not tf_keras)")
        if isinstance(layer, LotteryWrapper):
            raise ValueError(f"layer '{layer.name}' is already a LotteryWrapper")
        prunable = tuple(prunable) if prunable is not None else default_prunable(layer)
        if not prunable:
            raise ValueError(
                f"layer '{layer.name}' ({type(layer).__name__}) has no prunable weight; "
                "pass prunable=(...) to name its weight attributes")
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.prunable = prunable
        self._forward_training = "training" in inspect.signature(layer.call).parameters
        self.supports_masking = layer.supports_masking

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._masked = []
        for attr in self.prunable:
            weight = getattr(self.layer, attr, None)
            if not isinstance(weight, keras.Variable):
                raise ValueError(
                    f"layer '{self.layer.name}' has no weight attribute '{attr}'")
            mask = self.add_weight(name=f"{attr}_mask", shape=weight.shape,
                                   initializer="ones", dtype="float32", trainable=False)
            # An attribute, so that tf.train.Checkpoint tracks it by name.
            setattr(self, f"{attr}_mask", mask)
            self._masked.append((attr, weight, mask))
        self._snapshots = []
        for weight in self.layer.trainable_weights:
            snapshot = self.add_weight(
                name=f"{weight.name}_snapshot", shape=weight.shape, dtype=weight.dtype,
                initializer=lambda shape, dtype, w=weight: ops.convert_to_tensor(w),
                trainable=False)
            setattr(self, f"{weight.name}_snapshot", snapshot)
            self._snapshots.append((weight, snapshot))
        self.built = True

    def call(self, inputs, training=None):
        mapping = [(w, w * ops.cast(m, w.dtype)) for _, w, m in self._masked]
        kwargs = {"training": training} if self._forward_training else {}
        with keras.StatelessScope(state_mapping=mapping):
            return self.layer(inputs, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        return {**super().get_config(), "prunable": list(self.prunable)}

    @property
    def masked_weights(self):
        """(key, weight, mask) triples; key is 'layer_name/attribute'."""
        return [(f"{self.name}/{attr}", w, m) for attr, w, m in self._masked]

    def effective_weights(self):
        """{key: weight * mask} as tensors."""
        return {key: w * ops.cast(m, w.dtype) for key, w, m in self.masked_weights}

    def take_snapshot(self):
        """Copies the current weights into the snapshot (theta_0, or theta_k when rewinding)."""
        for weight, snapshot in self._snapshots:
            snapshot.assign(weight)

    def reset(self):
        """Sets every weight of the inner layer back to its snapshot; masks are untouched."""
        for weight, snapshot in self._snapshots:
            weight.assign(snapshot)

    @property
    def snapshots(self):
        """(weight, snapshot) pairs for every trainable weight of the inner layer."""
        return list(self._snapshots)
