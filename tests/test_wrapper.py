"""LotteryWrapper: masked forward pass, zero gradients at pruned positions, serialisation, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import LotteryWrapper


def _random_mask(shape, seed=0, keep=0.5):
    return (np.random.default_rng(seed).random(shape) < keep).astype("float32")


def test_variables_masks_and_snapshots():
    wrapper = LotteryWrapper(keras.layers.Dense(3, name="fc"))
    wrapper.build((None, 4))
    assert [v.name for v in wrapper.trainable_weights] == ["kernel", "bias"]
    names = sorted(v.name for v in wrapper.non_trainable_weights)
    assert names == ["bias_snapshot", "kernel_mask", "kernel_snapshot"]
    assert np.all(keras.ops.convert_to_numpy(wrapper.masked_weights[0][2]) == 1)
    for weight, snapshot in wrapper.snapshots:
        np.testing.assert_array_equal(snapshot.numpy(), weight.numpy())
    assert wrapper.masked_weights[0][0] == "fc/kernel"
    assert wrapper.name == "fc"


def test_forward_uses_weight_times_mask():
    wrapper = LotteryWrapper(keras.layers.Dense(3, bias_initializer="ones"))
    wrapper.build((None, 4))
    _, kernel, mask = wrapper.masked_weights[0]
    mask.assign(_random_mask((4, 3)))
    x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    expected = x @ (kernel.numpy() * mask.numpy()) + 1.0
    np.testing.assert_allclose(wrapper(x).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_gradient_is_exactly_zero_at_pruned_positions():
    wrapper = LotteryWrapper(keras.layers.Dense(6))
    wrapper.build((None, 5))
    _, kernel, mask = wrapper.masked_weights[0]
    mask.assign(_random_mask((5, 6), seed=3))
    x = tf.random.normal((8, 5), seed=1)

    @tf.function
    def grad():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(wrapper(x) ** 2)
        return tape.gradient(loss, kernel)

    g = grad().numpy()
    assert np.all(g[mask.numpy() == 0] == 0.0)
    assert np.count_nonzero(g[mask.numpy() == 1]) > 0


@pytest.mark.parametrize("layer, shape, attrs", [
    (keras.layers.Conv1D(3, 2), (None, 6, 2), ("kernel",)),
    (keras.layers.Conv2D(3, 2), (None, 5, 5, 2), ("kernel",)),
    (keras.layers.Conv3D(2, 2), (None, 4, 4, 4, 1), ("kernel",)),
    (keras.layers.DepthwiseConv2D(2), (None, 5, 5, 3), ("kernel",)),
    (keras.layers.SeparableConv2D(4, 2), (None, 5, 5, 3), ("depthwise_kernel", "pointwise_kernel")),
])
def test_conv_layers_match_inner_layer_on_masked_kernels(layer, shape, attrs):
    wrapper = LotteryWrapper(layer)
    wrapper.build(shape)
    assert wrapper.prunable == attrs
    x = np.random.default_rng(0).normal(size=(2,) + shape[1:]).astype("float32")
    for i, (_, weight, mask) in enumerate(wrapper.masked_weights):
        mask.assign(_random_mask(weight.shape, seed=i))
    masked_out = wrapper(x).numpy()
    for _, weight, mask in wrapper.masked_weights:
        weight.assign(weight.numpy() * mask.numpy())
    np.testing.assert_allclose(masked_out, layer(x).numpy(), rtol=1e-5, atol=1e-5)


def test_embedding_is_masked():
    wrapper = LotteryWrapper(keras.layers.Embedding(10, 4))
    wrapper.build((None, 3))
    _, table, mask = wrapper.masked_weights[0]
    mask.assign(np.zeros((10, 4), "float32"))
    out = wrapper(np.array([[1, 2, 3]])).numpy()
    assert wrapper.prunable == ("embeddings",)
    assert np.all(out == 0)


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((6,))
    outputs = LotteryWrapper(keras.layers.Dense(3, name="fc"))(inputs)
    model = keras.Model(inputs, outputs)
    wrapper = model.get_layer("fc")
    _, kernel, mask = wrapper.masked_weights[0]
    mask.assign(_random_mask((6, 3), seed=4))
    kernel.assign(kernel.numpy() + 1.0)  # snapshot now differs from the weight
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert isinstance(loaded.get_layer("fc"), LotteryWrapper)
    assert [w.name for w in loaded.weights] == [w.name for w in model.weights]
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("frozen", ["wrapper", "inner layer"])
def test_keras_file_round_trip_of_a_frozen_wrapper(tmp_path, frozen):
    # Freezing after wrapping moves the inner weights between Keras' trainable and non-trainable
    # lists; loading rebuilds the layer frozen, so the saved layout must not depend on that order.
    inputs = keras.Input((6,))
    model = keras.Model(inputs, LotteryWrapper(keras.layers.Dense(3, name="fc"))(inputs))
    wrapper = model.get_layer("fc")
    _, kernel, mask = wrapper.masked_weights[0]
    mask.assign(_random_mask((6, 3), seed=4))
    kernel.assign(kernel.numpy() + 1.0)
    (wrapper if frozen == "wrapper" else wrapper.layer).trainable = False
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    saved = {w.name: w.numpy() for w in model.weights}
    assert sorted(saved) == sorted(w.name for w in loaded.weights)
    for w in loaded.weights:
        np.testing.assert_array_equal(w.numpy(), saved[w.name], err_msg=w.name)
    assert not loaded.get_layer("fc").trainable_weights


def test_keras_file_in_the_numbered_layout_of_0_1_0_still_loads(tmp_path, monkeypatch):
    inputs = keras.Input((6,))
    model = keras.Model(inputs, LotteryWrapper(keras.layers.Dense(3, name="fc"))(inputs))
    model.get_layer("fc").masked_weights[0][2].assign(_random_mask((6, 3), seed=5))
    with monkeypatch.context() as patch:
        patch.setattr(LotteryWrapper, "save_own_variables", keras.layers.Layer.save_own_variables)
        model.save(tmp_path / "old.keras")
    loaded = keras.models.load_model(tmp_path / "old.keras")
    x = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    np.testing.assert_array_equal(loaded.get_layer("fc").masked_weights[0][2].numpy(),
                                  model.get_layer("fc").masked_weights[0][2].numpy())


def test_wrapping_a_wrapper_is_an_error():
    wrapper = LotteryWrapper(keras.layers.Dense(2, name="fc"))
    with pytest.raises(ValueError, match="'fc' is already a LotteryWrapper"):
        LotteryWrapper(wrapper)


def test_layer_without_prunable_weights_is_an_error():
    with pytest.raises(ValueError, match="'bn'.*BatchNormalization.*no prunable weight"):
        LotteryWrapper(keras.layers.BatchNormalization(name="bn"))


def test_unknown_weight_attribute_is_an_error():
    wrapper = LotteryWrapper(keras.layers.Dense(2, name="fc"), prunable=("kernal",))
    with pytest.raises(ValueError, match="'fc' has no weight attribute 'kernal'"):
        wrapper.build((None, 3))


def test_tf_keras_layer_is_an_error():
    import tf_keras
    with pytest.raises(TypeError, match="tf_keras \\(Keras 2\\)"):
        LotteryWrapper(tf_keras.layers.Dense(2))


def test_reset_restores_snapshot_and_keeps_mask():
    wrapper = LotteryWrapper(keras.layers.Dense(3))
    wrapper.build((None, 4))
    _, kernel, mask = wrapper.masked_weights[0]
    theta0 = kernel.numpy().copy()
    mask.assign(_random_mask((4, 3)))
    kept_mask = mask.numpy().copy()
    kernel.assign(np.full((4, 3), 7.0, "float32"))
    wrapper.layer.bias.assign(np.full((3,), 2.0, "float32"))
    wrapper.reset()
    np.testing.assert_array_equal(kernel.numpy(), theta0)
    np.testing.assert_array_equal(wrapper.layer.bias.numpy(), np.zeros(3))
    np.testing.assert_array_equal(mask.numpy(), kept_mask)


def test_tf_checkpoint_carries_masks_and_snapshots(tmp_path):
    source = LotteryWrapper(keras.layers.Dense(3))
    source.build((None, 4))
    _, kernel, mask = source.masked_weights[0]
    mask.assign(_random_mask((4, 3), seed=9))
    for _, snapshot in source.snapshots:
        snapshot.assign(snapshot.numpy() + 5.0)
    path = tf.train.Checkpoint(layer=source).save(str(tmp_path / "ckpt"))
    target = LotteryWrapper(keras.layers.Dense(3))
    target.build((None, 4))
    tf.train.Checkpoint(layer=target).restore(path).assert_existing_objects_matched()
    assert len(target.weights) == 5
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.fixture
def global_policy():
    """Yields a setter for the global dtype policy and restores the previous one afterwards."""
    previous = keras.mixed_precision.global_policy()
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_wrapper_keeps_the_inner_layers_dtype_policy(policy, global_policy):
    global_policy(policy)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(16, activation="relu", name="fc")(inputs)
    outputs = keras.layers.Dense(3, dtype="float32", name="out")(hidden)
    model = keras.Model(inputs, outputs)
    wrapped = tfl.wrap(model)
    assert wrapped.get_layer("out").dtype_policy.name == "float32"
    assert wrapped.get_layer("fc").dtype_policy.name == policy
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    np.testing.assert_array_equal(wrapped(x).numpy(), model(x).numpy())
    tfl.set_masks(wrapped, {k: _random_mask(v.shape, seed=i)
                            for i, (k, v) in enumerate(tfl.get_masks(wrapped).items())})
    stripped = tfl.strip(wrapped)
    assert wrapped(x).dtype == "float32"
    np.testing.assert_allclose(stripped(x).numpy(), wrapped(x).numpy(), rtol=1e-6, atol=1e-6)
    for wrapper in tfl.wrappers(wrapped):
        assert all(v.dtype == "float32" for v in wrapper.non_trainable_weights)


def test_nan_at_a_pruned_position_stays_out_of_outputs_gradients_and_strip():
    wrapper = LotteryWrapper(keras.layers.Dense(3, name="fc"))
    wrapper.build((None, 4))
    _, kernel, mask = wrapper.masked_weights[0]
    pruned = np.ones((4, 3), "float32")
    pruned[1, 2] = 0
    mask.assign(pruned)
    raw = kernel.numpy()
    raw[1, 2] = np.nan
    kernel.assign(raw)
    x = tf.random.normal((5, 4), seed=2)
    with tf.GradientTape() as tape:
        out = wrapper(x)
        loss = tf.reduce_sum(out ** 2)
    grad = tape.gradient(loss, kernel).numpy()
    assert np.all(np.isfinite(out.numpy()))
    assert np.all(np.isfinite(grad)) and grad[1, 2] == 0
    effective = wrapper.effective_weights()["fc/kernel"].numpy()
    assert effective[1, 2] == 0 and np.all(np.isfinite(effective))

    inputs = keras.Input((4,))
    model = keras.Model(inputs, wrapper(inputs))
    stripped = tfl.strip(model)
    baked = stripped.get_layer("fc").kernel.numpy()
    assert baked[1, 2] == 0 and np.all(np.isfinite(baked))
    np.testing.assert_allclose(stripped(x).numpy(), out.numpy(), rtol=1e-6, atol=1e-6)


def test_count_params_leaves_out_masks_and_snapshots():
    wrapper = LotteryWrapper(keras.layers.Dense(3, name="fc"))
    wrapper.build((None, 4))
    assert wrapper.count_params() == 4 * 3 + 3
    model = tfl.wrap(keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="a"),
                                       keras.layers.Dense(2, name="b")]))
    lines = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    rows = {line.split()[1]: line for line in "".join(lines).splitlines()
            if line.strip("│ ").startswith(("a ", "b "))}
    assert "40" in rows["a"].split("│")[3] and "18" in rows["b"].split("│")[3]
    assert sum(layer.count_params() for layer in model.layers) == 40 + 18
