"""wrap / strip / masks / snapshot / reset over whole models."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery import LotteryWrapper

from conftest import tiny_model


def _x(n=5, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype("float32")


def test_wrap_keeps_weights_names_and_outputs():
    model = tiny_model()
    wrapped = tfl.wrap(model)
    assert [l.name for l in wrapped.layers] == [l.name for l in model.layers]
    assert [w.name for w in tfl.wrappers(wrapped)] == ["fc1", "fc2", "output"]
    np.testing.assert_array_equal(wrapped(_x()).numpy(), model(_x()).numpy())
    for wrapper in tfl.wrappers(wrapped):
        original = model.get_layer(wrapper.name)
        for (weight, snapshot), source in zip(wrapper.snapshots, original.weights):
            np.testing.assert_array_equal(weight.numpy(), source.numpy())
            np.testing.assert_array_equal(snapshot.numpy(), source.numpy())


def test_wrap_is_a_copy():
    model = tiny_model()
    before = [w.numpy().copy() for w in model.weights]
    wrapped = tfl.wrap(model)
    for wrapper in tfl.wrappers(wrapped):
        wrapper.layer.kernel.assign(wrapper.layer.kernel.numpy() * 0)
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_exclude_leaves_layer_unwrapped():
    wrapped = tfl.wrap(tiny_model(), exclude=["output"])
    assert not isinstance(wrapped.get_layer("output"), LotteryWrapper)
    assert sorted(tfl.get_masks(wrapped)) == ["fc1/kernel", "fc2/kernel"]


def test_exclude_unknown_name_is_an_error():
    with pytest.raises(ValueError, match="no layer named 'fc9'"):
        tfl.wrap(tiny_model(), exclude=["fc9"])


def test_wrap_twice_is_an_error():
    with pytest.raises(ValueError, match="already wrapped \\(layer 'fc1'\\)"):
        tfl.wrap(tfl.wrap(tiny_model()))


def test_model_without_prunable_layer_is_an_error():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs), name="bn_only")
    with pytest.raises(ValueError, match="'bn_only' has no prunable layer"):
        tfl.wrap(model)


def test_tf_keras_model_is_an_error():
    import tf_keras
    model = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,))])
    with pytest.raises(TypeError, match="tf_keras \\(Keras 2\\) model"):
        tfl.wrap(model)


def test_sequential_and_nested_models():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="a")], name="block")
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    wrapped = tfl.wrap(model)
    assert sorted(tfl.get_masks(wrapped)) == ["a/kernel", "head/kernel"]
    x = np.ones((3, 6), "float32")
    np.testing.assert_allclose(wrapped(x).numpy(), model(x).numpy(), rtol=1e-6)
    stripped = tfl.strip(wrapped)
    np.testing.assert_allclose(stripped(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_strip_bakes_masks_in():
    wrapped = tfl.wrap(tiny_model())
    rng = np.random.default_rng(0)
    masks = {k: (rng.random(v.shape) < 0.3).astype("float32") for k, v in tfl.get_masks(wrapped).items()}
    tfl.set_masks(wrapped, masks)
    stripped = tfl.strip(wrapped)
    assert not tfl.wrappers(stripped)
    assert not any("mask" in w.name or "snapshot" in w.name for w in stripped.weights)
    np.testing.assert_allclose(stripped(_x()).numpy(), wrapped(_x()).numpy(), rtol=1e-6, atol=1e-6)
    for key, mask in masks.items():
        kernel = stripped.get_layer(key.split("/")[0]).kernel.numpy()
        assert np.all(kernel[mask == 0] == 0)
        assert np.count_nonzero(kernel) == int(mask.sum())


def test_set_masks_checks_before_assigning():
    wrapped = tfl.wrap(tiny_model())
    good = {k: np.zeros_like(v) for k, v in tfl.get_masks(wrapped).items()}
    with pytest.raises(ValueError, match="mask for 'fc1/kernel' has shape \\(2, 2\\)"):
        tfl.set_masks(wrapped, {**good, "fc1/kernel": np.ones((2, 2))})
    with pytest.raises(ValueError, match="'fc2/kernel' holds values other than 0 and 1"):
        tfl.set_masks(wrapped, {**good, "fc2/kernel": np.full((16, 8), 0.5)})
    with pytest.raises(ValueError, match="no masked weight named fc7/kernel"):
        tfl.set_masks(wrapped, {**good, "fc7/kernel": np.ones(1)})
    with pytest.raises(ValueError, match="masks missing for output/kernel"):
        tfl.set_masks(wrapped, {k: v for k, v in good.items() if k != "output/kernel"})
    assert all(np.all(m == 1) for m in tfl.get_masks(wrapped).values())


def test_snapshot_and_reset():
    wrapped = tfl.wrap(tiny_model())
    theta0 = [w.numpy().copy() for w in wrapped.trainable_weights]
    for w in wrapped.trainable_weights:
        w.assign(w.numpy() + 1.0)
    theta_k = [w.numpy().copy() for w in wrapped.trainable_weights]
    tfl.reset(wrapped)
    for a, w in zip(theta0, wrapped.trainable_weights):
        np.testing.assert_array_equal(a, w.numpy())
    for w, v in zip(wrapped.trainable_weights, theta_k):
        w.assign(v)
    tfl.snapshot(wrapped)
    for w in wrapped.trainable_weights:
        w.assign(w.numpy() * 0)
    tfl.reset(wrapped)
    for a, w in zip(theta_k, wrapped.trainable_weights):
        np.testing.assert_array_equal(a, w.numpy())


def test_sparsity_report_counts():
    wrapped = tfl.wrap(tiny_model())
    masks = tfl.get_masks(wrapped)
    masks["fc1/kernel"][:10] = 0          # 10 rows of 16
    tfl.set_masks(wrapped, masks)
    report = tfl.sparsity_report(wrapped)
    assert report["layers"]["fc1/kernel"] == {"size": 1024, "remaining": 864,
                                              "remaining_fraction": 864 / 1024}
    assert report["size"] == 1024 + 128 + 32
    assert report["remaining"] == 864 + 128 + 32


def _bn_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(4, name="out")(x)
    return keras.Model(inputs, outputs, name="bn_net")


def _fit(model, steps=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8 * steps, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 4, size=8 * steps)
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_reset_restores_every_weight_and_batch_norm_statistics():
    wrapped = tfl.wrap(_bn_model())
    theta0 = {v.path: v.numpy().copy() for v in wrapped.weights}
    _fit(wrapped)
    bn = wrapped.get_layer("bn")
    assert not np.array_equal(bn.moving_mean.numpy(), theta0[bn.moving_mean.path])
    assert not np.array_equal(bn.gamma.numpy(), theta0[bn.gamma.path])
    tfl.reset(wrapped)
    for v in wrapped.weights:
        np.testing.assert_array_equal(v.numpy(), theta0[v.path], err_msg=v.path)

    _fit(wrapped, seed=1)
    tfl.snapshot(wrapped)
    theta_k = {v.path: v.numpy().copy() for v in wrapped.weights}
    _fit(wrapped, seed=2)
    tfl.reset(wrapped)
    for v in wrapped.weights:
        np.testing.assert_array_equal(v.numpy(), theta_k[v.path], err_msg=v.path)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.fc = LotteryWrapper(keras.layers.Dense(16, activation="relu", name="fc"))
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.out = LotteryWrapper(keras.layers.Dense(4, name="out"))

    def call(self, x):
        return self.out(self.norm(self.fc(x)))


def test_strip_of_a_subclassed_model_bakes_the_masks_in_place():
    model = _Subclassed()
    x = _x(shape=(6,))
    model(x)
    masks = {k: _random_mask_like(v, seed=i) for i, (k, v) in enumerate(tfl.get_masks(model).items())}
    tfl.set_masks(model, masks)
    kernel = model.fc.layer.kernel
    raw = kernel.numpy()
    raw[masks["fc/kernel"] == 0] = np.nan  # pruned positions may hold anything
    kernel.assign(raw)
    expected = model(x).numpy()
    effective = tfl.effective_weights(model)
    stripped = tfl.strip(model)
    np.testing.assert_array_equal(stripped(x).numpy(), expected)
    for key, mask in masks.items():
        baked = stripped.get_layer(key.split("/")[0]).layer.kernel.numpy()
        np.testing.assert_array_equal(baked, effective[key])
        assert np.all(baked[mask == 0] == 0)
    # The baked weights alone compute the same function: a plain twin of the model agrees.
    plain = keras.Sequential([keras.layers.Dense(16, activation="relu"), keras.layers.LayerNormalization(),
                              keras.layers.Dense(4)])
    plain(x)
    plain.set_weights([stripped.fc.layer.kernel.numpy(), stripped.fc.layer.bias.numpy(),
                       *stripped.norm.get_weights(), stripped.out.layer.kernel.numpy(),
                       stripped.out.layer.bias.numpy()])
    np.testing.assert_allclose(plain(x).numpy(), expected, rtol=1e-6, atol=1e-6)


def _random_mask_like(mask, seed=0):
    return (np.random.default_rng(seed).random(mask.shape) < 0.5).astype("float32")


@pytest.mark.parametrize("operation", ["sparsity_report", "get_masks", "reset", "snapshot", "summary"])
def test_operations_on_an_unwrapped_model_are_an_error(operation):
    model = tiny_model()
    with pytest.raises(ValueError, match=f"model '{model.name}' has no LotteryWrapper; call tfl.wrap"):
        getattr(tfl, operation)(model)


@pytest.mark.parametrize("bad", [2.0, np.nan])
def test_masks_other_than_zero_and_one_are_an_error(bad):
    wrapped = tfl.wrap(tiny_model())
    masks = tfl.get_masks(wrapped)
    masks["fc2/kernel"][0, 0] = bad
    with pytest.raises(ValueError, match="'fc2/kernel' holds values other than 0 and 1"):
        tfl.set_masks(wrapped, masks)
    with pytest.raises(ValueError, match="'fc2/kernel' holds values other than 0 and 1"):
        tfl.prune(tfl.effective_weights(wrapped), masks, {k: 0.2 for k in masks})


def test_summary_table_of_masked_weights():
    wrapped = tfl.wrap(tiny_model())
    masks = tfl.get_masks(wrapped)
    masks["fc1/kernel"][:10] = 0
    tfl.set_masks(wrapped, masks)
    printed = []
    text = tfl.summary(wrapped, print_fn=printed.append)
    assert printed == [text]
    lines = text.splitlines()
    assert lines[0].split() == ["weight", "shape", "size", "remaining", "remaining", "%"]
    assert lines[1].split() == ["fc1/kernel", "(64,", "16)", "1,024", "864", "84.38%"]
    assert lines[2].split() == ["fc2/kernel", "(16,", "8)", "128", "128", "100.00%"]
    assert lines[-1].split() == ["total", "1,184", "1,024", "86.49%"]
