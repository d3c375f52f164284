"""EinsumDense and MultiHeadAttention under LotteryWrapper; prunable= for any layer; unwrapped layers."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import LotteryWrapper


def _random_masks(model, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (rng.random(v.shape) < 0.5).astype("float32") for k, v in tfl.get_masks(model).items()}


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_einsum_dense_wraps_by_default():
    inputs = keras.Input((5, 8))
    outputs = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d",
                                       name="ed")(inputs)
    wrapped = tfl.wrap(keras.Model(inputs, outputs))
    assert sorted(tfl.get_masks(wrapped)) == ["ed/kernel"]
    masks = _random_masks(wrapped)
    tfl.set_masks(wrapped, masks)
    layer = wrapped.get_layer("ed").layer
    x = _x((2, 5, 8))
    expected = x @ (layer.kernel.numpy() * masks["ed/kernel"]) + layer.bias.numpy()
    np.testing.assert_allclose(wrapped(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def _attention_model():
    inputs = keras.Input((6, 8))
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inputs, inputs)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(attended))
    return keras.Model(inputs, outputs)


def test_multi_head_attention_masks_its_four_kernels():
    model = _attention_model()
    wrapped = tfl.wrap(model)
    assert sorted(tfl.get_masks(wrapped)) == ["head/kernel", "mha/key_dense.kernel",
                                              "mha/output_dense.kernel", "mha/query_dense.kernel",
                                              "mha/value_dense.kernel"]
    x = _x((3, 6, 8))
    np.testing.assert_allclose(wrapped(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
    masks = _random_masks(wrapped)
    tfl.set_masks(wrapped, masks)
    stripped = tfl.strip(wrapped)
    np.testing.assert_allclose(stripped(x).numpy(), wrapped(x).numpy(), rtol=1e-5, atol=1e-5)
    items = tfl.masked_weights(wrapped)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapped(x) ** 2)
    for (key, _, _), grad in zip(items, tape.gradient(loss, [w for _, w, _ in items])):
        assert np.all(grad.numpy()[masks[key] == 0] == 0), key
        assert np.count_nonzero(grad.numpy()[masks[key] == 1]) > 0, key


def test_prunable_picks_attention_kernels_and_hand_wrapping_needs_a_built_layer():
    wrapped = tfl.wrap(_attention_model(), prunable={"mha": ("query_dense.kernel", "query_dense.bias")})
    assert sorted(tfl.get_masks(wrapped)) == ["head/kernel", "mha/query_dense.bias", "mha/query_dense.kernel"]

    x = _x((2, 6, 8))
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")
    with pytest.raises(ValueError, match="'attention'.*several inputs.*build it"):
        LotteryWrapper(mha)(x, x)
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")
    expected = mha(x, x).numpy()
    wrapper = LotteryWrapper(mha)
    np.testing.assert_allclose(wrapper(x, x).numpy(), expected, rtol=1e-6, atol=1e-6)
    assert len(wrapper.masked_weights) == 4


def test_prunable_works_for_any_layer_with_weights():
    wrapper = LotteryWrapper(keras.layers.BatchNormalization(name="bn"), prunable=("gamma",))
    x = _x((16, 4)) * 3 + 1
    wrapper.build(x.shape)
    _, gamma, mask = wrapper.masked_weights[0]
    mask.assign(np.array([1, 0, 1, 0], "float32"))
    out = wrapper(x, training=True).numpy()
    assert np.all(out[:, 1] == wrapper.layer.beta.numpy()[1])
    assert not np.allclose(wrapper.layer.moving_mean.numpy(), 0)  # the statistics update


def test_large_unwrapped_layer_gets_a_warning():
    def model():
        inputs = keras.Input((4, 8, 16))
        x = keras.layers.ConvLSTM1D(32, 3, name="up")(inputs)
        return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))

    message = "layer 'up' \\(ConvLSTM1D, 18,560 parameters\\) is not wrapped"
    with pytest.warns(UserWarning, match=message):
        tfl.wrap(model())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*is not wrapped")
        tfl.wrap(model(), exclude=["up"])
