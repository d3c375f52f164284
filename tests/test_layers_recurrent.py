"""LSTM, GRU, SimpleRNN, Bidirectional and TimeDistributed layers under LotteryWrapper."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import LotteryWrapper


def _random_masks(model, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (rng.random(v.shape) < 0.5).astype("float32") for k, v in tfl.get_masks(model).items()}


def _check_masked(model, wrapped, x):
    """Wrapped == unwrapped with all-ones masks; with random masks wrapped == stripped and pruned
    positions get exactly zero gradient."""
    np.testing.assert_allclose(wrapped(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
    masks = _random_masks(wrapped)
    tfl.set_masks(wrapped, masks)
    stripped = tfl.strip(wrapped)
    np.testing.assert_allclose(stripped(x).numpy(), wrapped(x).numpy(), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(stripped(x).numpy() - model(x).numpy())) > 1e-3
    items = tfl.masked_weights(wrapped)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapped(x, training=True) ** 2)
    for (key, _, _), grad in zip(items, tape.gradient(loss, [w for _, w, _ in items])):
        grad = keras.ops.convert_to_numpy(grad)
        assert np.all(grad[masks[key] == 0] == 0), key
        assert np.count_nonzero(grad[masks[key] == 1]) > 0, key


@pytest.mark.parametrize("make, keys", [
    (lambda: keras.layers.LSTM(5, return_sequences=True, name="rnn"),
     ["rnn/cell.kernel", "rnn/cell.recurrent_kernel"]),
    (lambda: keras.layers.GRU(5, name="rnn"), ["rnn/cell.kernel", "rnn/cell.recurrent_kernel"]),
    (lambda: keras.layers.SimpleRNN(5, name="rnn"), ["rnn/cell.kernel", "rnn/cell.recurrent_kernel"]),
    (lambda: keras.layers.Bidirectional(keras.layers.LSTM(5), name="rnn"),
     ["rnn/backward_layer.cell.kernel", "rnn/backward_layer.cell.recurrent_kernel",
      "rnn/forward_layer.cell.kernel", "rnn/forward_layer.cell.recurrent_kernel"]),
    (lambda: keras.layers.TimeDistributed(keras.layers.Dense(5), name="rnn"), ["rnn/layer.kernel"]),
])
def test_recurrent_and_wrapper_layers_wrap_by_default(make, keys):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((7, 3))
    model = keras.Model(inputs, make()(inputs))
    wrapped = tfl.wrap(model)
    assert sorted(tfl.get_masks(wrapped)) == keys
    _check_masked(model, wrapped, np.random.default_rng(0).normal(size=(4, 7, 3)).astype("float32"))


def test_time_distributed_with_prunable_and_an_input_mask():
    inputs = keras.Input((6,), dtype="int32")
    embedded = keras.layers.Embedding(20, 4, mask_zero=True, name="embed")(inputs)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(3), name="td")(embedded)
    model = keras.Model(inputs, outputs)
    wrapped = tfl.wrap(model, prunable={"td": ("layer.kernel",)})
    assert sorted(tfl.get_masks(wrapped)) == ["embed/embeddings", "td/layer.kernel"]
    _check_masked(model, wrapped, np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]], "int32"))

    layer = LotteryWrapper(keras.layers.TimeDistributed(keras.layers.Dense(3), name="td2"),
                           prunable=("layer.kernel",))
    out = layer(keras.layers.Embedding(20, 4, mask_zero=True)(inputs))
    assert out.shape == (None, 6, 3)


def test_lstm_dropout_state_advances_inside_the_wrapper():
    wrapper = LotteryWrapper(keras.layers.LSTM(4, dropout=0.5, seed=3))
    x = np.ones((2, 5, 3), "float32")
    wrapper.build(x.shape)
    first = wrapper(x, training=True).numpy()
    second = wrapper(x, training=True).numpy()
    assert not np.allclose(first, second)
