"""LotteryWrapper: a Keras layer wrapper that holds a mask and a snapshot per weight."""

import contextlib
import contextvars
import inspect

import keras
from keras import ops

# True while Keras counts parameters (parameters.py): the wrappers' `weights` leave out masks and snapshots.
_COUNTING = contextvars.ContextVar("tf_lottery_counting_parameters", default=False)


@contextlib.contextmanager
def counting_parameters():
    """Within it, every LotteryWrapper's `weights` are its layer's parameters only (no masks, snapshots),
    so Keras' count_params() and summary() totals count what the model computes with."""
    token = _COUNTING.set(True)
    try:
        yield
    finally:
        _COUNTING.reset(token)


# Checked in order: SeparableConv and DepthwiseConv subclass the generic conv base.
_PRUNABLE_BY_TYPE = (
    (keras.layers.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel")),
    (keras.layers.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel")),
    (keras.layers.DepthwiseConv1D, ("kernel",)),
    (keras.layers.DepthwiseConv2D, ("kernel",)),
    (keras.layers.Conv1D, ("kernel",)),
    (keras.layers.Conv2D, ("kernel",)),
    (keras.layers.Conv3D, ("kernel",)),
    (keras.layers.Conv1DTranspose, ("kernel",)),
    (keras.layers.Conv2DTranspose, ("kernel",)),
    (keras.layers.Conv3DTranspose, ("kernel",)),
    (keras.layers.Dense, ("kernel",)),
    (keras.layers.EinsumDense, ("kernel",)),
    (keras.layers.Embedding, ("embeddings",)),
    (keras.layers.MultiHeadAttention,
     ("query_dense.kernel", "key_dense.kernel", "value_dense.kernel", "output_dense.kernel")),
)
_RECURRENT_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)


def is_tf_keras_object(obj):
    """True for objects from tf_keras (Keras 2), which tf_lottery cannot wrap."""
    return type(obj).__module__.split(".")[0] == "tf_keras"


def default_prunable(layer):
    """Names of the weights of `layer` that are pruned by default.

    Kernels of Dense, EinsumDense and Conv layers (transposed ones included),
    embeddings of Embedding, the query, key, value and output kernels of
    MultiHeadAttention, the input and recurrent kernels of LSTM, GRU and
    SimpleRNN, and the same through Bidirectional (both directions) and
    TimeDistributed. A dotted name is an attribute path from the layer to the
    weight ('cell.kernel').
    """
    if isinstance(layer, keras.layers.Bidirectional):
        return (tuple(f"forward_layer.{name}" for name in default_prunable(layer.forward_layer))
                + tuple(f"backward_layer.{name}" for name in default_prunable(layer.backward_layer)))
    if isinstance(layer, keras.layers.TimeDistributed):
        return tuple(f"layer.{name}" for name in default_prunable(layer.layer))
    if isinstance(layer, keras.layers.RNN) and isinstance(layer.cell, _RECURRENT_CELLS):
        return ("cell.kernel", "cell.recurrent_kernel")
    for layer_type, names in _PRUNABLE_BY_TYPE:
        if isinstance(layer, layer_type):
            return names
    return ()


def builds_from_several_shapes(layer):
    """Whether `layer.build` needs the shapes of several inputs (MultiHeadAttention: query and value)."""
    required = [p for p in inspect.signature(layer.build).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return len(required) > 1


def weight_at(layer, path):
    """The attribute of `layer` at a dotted `path` ('cell.kernel'), None if there is none."""
    value = layer
    for name in path.split("."):
        value = getattr(value, name, None)
    return value


def _variable_name(path):
    return path.replace(".", "_")


def _snapshot_names(weights):
    """Snapshot variable names: the weights' names, or their paths below the layer where names repeat."""
    names = [weight.name for weight in weights]
    if len(set(names)) == len(names):
        return names
    parts = [weight.path.split("/") for weight in weights]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return ["_".join(p[common:]) for p in parts]


@keras.saving.register_keras_serializable(package="tf_lottery")
class LotteryWrapper(keras.layers.Wrapper):
    """Runs the wrapped layer on `where(mask, weight, 0)` for each prunable weight.

    For every prunable weight the wrapper owns a non-trainable float32 `mask`
    (ones at first); for every weight of the inner layer (prunable or not, so
    that biases and batch-norm statistics reset too) it owns a non-trainable
    `snapshot`, taken when the wrapper is built: theta_0. Masked positions get
    exactly zero gradient, and whatever a pruned position holds (even NaN) never
    reaches the output. The wrapper takes the inner layer's dtype policy, so a
    float32 layer in a mixed-precision model still computes in float32.

    The inner layer runs with its variables read through a `keras.StatelessScope`,
    so any layer works, whatever its inputs (MultiHeadAttention takes query and
    value: `wrapper(query, value)`); updates the inner layer makes to its state
    (batch-norm statistics, dropout seeds) are applied after the call.

    Args:
        layer: the Keras 3 layer to wrap. A layer whose build needs the shapes of
            several inputs (MultiHeadAttention) must be built first.
        prunable: names of the inner layer's weight attributes to mask; a dotted
            name reaches into sublayers ('cell.kernel', 'query_dense.kernel').
            Default: `default_prunable(layer)`.
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
        if len(set(map(_variable_name, prunable))) != len(prunable):
            raise ValueError(f"layer '{layer.name}': prunable names a weight twice: {prunable}")
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.prunable = prunable
        self._forward_training = "training" in inspect.signature(layer.call).parameters
        self.supports_masking = layer.supports_masking

    def build(self, input_shape=None):
        if not self.layer.built:
            if builds_from_several_shapes(self.layer):
                raise ValueError(
                    f"layer '{self.layer.name}' ({type(self.layer).__name__}) takes several inputs: "
                    "build it (call it once, or call its build()) before wrapping it")
            self.layer.build(input_shape)
        self._masked = []
        for attr in self.prunable:
            weight = weight_at(self.layer, attr)
            if not isinstance(weight, keras.Variable):
                raise ValueError(
                    f"layer '{self.layer.name}' has no weight attribute '{attr}'")
            if any(weight is w for _, w, _ in self._masked):
                raise ValueError(f"layer '{self.layer.name}': prunable names the weight of '{attr}' twice")
            name = f"{_variable_name(attr)}_mask"
            mask = self.add_weight(name=name, shape=weight.shape,
                                   initializer="ones", dtype="float32", trainable=False)
            # An attribute, so that tf.train.Checkpoint tracks it by name.
            setattr(self, name, mask)
            self._masked.append((attr, weight, mask))
        self._snapshots = []
        weights = self.layer.weights
        for weight, name in zip(weights, _snapshot_names(weights)):
            snapshot = self.add_weight(
                name=f"{name}_snapshot", shape=weight.shape, dtype=weight.dtype,
                initializer=lambda shape, dtype, w=weight: ops.convert_to_tensor(w),
                trainable=False)
            setattr(self, f"{name}_snapshot", snapshot)
            self._snapshots.append((weight, snapshot))
        # A frozenset: Keras would track the variables of a list as the wrapper's own.
        self._masked_ids = frozenset(id(w) for _, w, _ in self._masked)
        self.built = True

    def call(self, inputs, *args, training=None, **kwargs):
        # No `mask` parameter: Keras would record mask=None in the functional graph, which the
        # stripped layer may not accept; the inner layer takes its mask from `inputs` itself.
        if self._forward_training:
            kwargs["training"] = training
        with keras.StatelessScope(state_mapping=self._used_weights(training)) as scope:
            outputs = self.layer(inputs, *args, **kwargs)
        for variable in self.layer.variables:
            value = scope.get_current_value(variable)
            if value is not None and id(variable) not in self._masked_ids:
                variable.assign(value)
        return outputs

    def _used_weights(self, training=None):
        """[(weight, the value the inner layer computes with)] for every masked weight."""
        return [(w, ops.where(m, w, 0)) for _, w, m in self._masked]

    def compute_output_spec(self, inputs, *args, training=None, **kwargs):
        if self._forward_training:
            kwargs["training"] = training
        return self.layer.compute_output_spec(inputs, *args, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def count_params(self):
        """Parameters of the inner layer: masks and snapshots are bookkeeping, not parameters."""
        return self.layer.count_params()

    @property
    def weights(self):
        """Keras' weights (masks and snapshots included), or without them inside counting_parameters()."""
        weights = super().weights
        if not _COUNTING.get():
            return weights
        hidden = {id(v) for v in self.bookkeeping_variables}
        return [w for w in weights if id(w) not in hidden]

    @property
    def bookkeeping_variables(self):
        """The masks and snapshots: the wrapper's state that is not a parameter of the model."""
        return ([m for _, _, m in getattr(self, "_masked", ())]
                + [s for _, s in getattr(self, "_snapshots", ())])

    def get_config(self):
        return {**super().get_config(), "prunable": list(self.prunable)}

    def _own_variables(self):
        """{name: variable} of the wrapper's own variables (masks, snapshots, ...), not the inner layer's."""
        inner = {id(v) for v in self.layer.variables}
        own = [v for v in self._trainable_variables + self._non_trainable_variables if id(v) not in inner]
        by_name = {v.name: v for v in own}
        if len(by_name) != len(own):
            raise ValueError(f"layer '{self.name}': two of its variables share a name: "
                             f"{sorted(v.name for v in own)}")
        return by_name

    def save_own_variables(self, store):
        # By name: Keras' default numbers the variables in trainable-first order, which freezing
        # the layer after wrapping changes; the inner layer saves its own weights.
        for name, variable in self._own_variables().items():
            store[name] = variable

    def load_own_variables(self, store):
        if "0" in store:  # saved by tf_lottery 0.1.0 in Keras' numbered layout
            super().load_own_variables(store)
            return
        own = self._own_variables()
        if sorted(store.keys()) != sorted(own):
            raise ValueError(f"layer '{self.name}': the file holds variables {sorted(store.keys())}, "
                             f"the layer has {sorted(own)}")
        for name, variable in own.items():
            variable.assign(store[name])

    @property
    def masked_weights(self):
        """(key, weight, mask) triples; key is 'layer_name/attribute'."""
        return [(f"{self.name}/{attr}", w, m) for attr, w, m in self._masked]

    def effective_weights(self):
        """{key: where(mask, weight, 0)} as tensors: what the inner layer computes with."""
        return {key: ops.where(m, w, 0) for key, w, m in self.masked_weights}

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
        """(weight, snapshot) pairs for every weight of the inner layer."""
        return list(self._snapshots)
