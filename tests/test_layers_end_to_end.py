"""Wrap, prune, fit, save, load and strip a text classifier (Embedding + LSTM) and a transformer block."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl


def _text_classifier():
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(40, 8, mask_zero=True, name="embed")(inputs)
    x = keras.layers.LSTM(6, name="lstm")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    return keras.Model(inputs, outputs, name="text_classifier")


def _transformer_block():
    inputs = keras.Input((10,), dtype="int32")
    x = keras.layers.Embedding(40, 16, name="embed")(inputs)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(x, x)
    x = keras.layers.LayerNormalization(name="norm1")(keras.layers.Add()([x, attended]))
    hidden = keras.layers.Dense(32, activation="relu", name="ffn1")(x)
    x = keras.layers.LayerNormalization(name="norm2")(
        keras.layers.Add()([x, keras.layers.Dense(16, name="ffn2")(hidden)]))
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    return keras.Model(inputs, outputs, name="transformer_block")


def _tokens(length, n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 40, size=(n, length)).astype("int32")
    for row, pad in zip(x, rng.integers(0, length // 2, size=n)):
        row[length - pad:] = 0
    return x, rng.integers(0, 2, size=n)


def _zero_at_pruned(values, masks):
    for key, mask in masks.items():
        assert np.all(values[key][mask == 0] == 0), key


@pytest.mark.parametrize("build, length, keys", [
    (_text_classifier, 12, ["embed/embeddings", "lstm/cell.kernel", "lstm/cell.recurrent_kernel",
                            "out/kernel"]),
    (_transformer_block, 10, ["embed/embeddings", "ffn1/kernel", "ffn2/kernel", "mha/key_dense.kernel",
                              "mha/output_dense.kernel", "mha/query_dense.kernel", "mha/value_dense.kernel",
                              "out/kernel"]),
])
def test_wrap_prune_fit_save_strip(build, length, keys, tmp_path):
    keras.utils.set_random_seed(0)
    model = build()
    x, y = _tokens(length)
    wrapped = tfl.wrap(model)
    assert sorted(tfl.get_masks(wrapped)) == keys
    np.testing.assert_allclose(wrapped(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)

    masks = tfl.prune(tfl.effective_weights(wrapped), tfl.get_masks(wrapped), {k: 0.5 for k in keys})
    tfl.set_masks(wrapped, {k: np.asarray(v) for k, v in masks.items()})
    masks = tfl.get_masks(wrapped)
    variables = [w for _, w, _ in tfl.masked_weights(wrapped)]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapped(x, training=True) ** 2)
    gradients = tape.gradient(loss, variables)
    _zero_at_pruned({key: keras.ops.convert_to_numpy(g) for (key, _, _), g
                     in zip(tfl.masked_weights(wrapped), gradients)}, masks)

    before = tfl.raw_weights(wrapped)
    wrapped.compile(optimizer=keras.optimizers.Adam(1e-2),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped.fit(x, y, batch_size=len(x) // 2, epochs=1, verbose=0)  # two steps
    after = tfl.raw_weights(wrapped)
    for key, mask in masks.items():
        np.testing.assert_array_equal(after[key][mask == 0], before[key][mask == 0], err_msg=key)
        assert np.any(after[key][mask == 1] != before[key][mask == 1]), key
    for key, mask in tfl.get_masks(wrapped).items():
        np.testing.assert_array_equal(mask, masks[key])

    wrapped.save(tmp_path / "ticket.keras")
    loaded = keras.models.load_model(tmp_path / "ticket.keras")
    np.testing.assert_array_equal(loaded(x).numpy(), wrapped(x).numpy())
    for key, mask in tfl.get_masks(loaded).items():
        np.testing.assert_array_equal(mask, masks[key])
    path = tf.train.Checkpoint(model=wrapped).write(str(tmp_path / "ckpt"))
    restored = tfl.wrap(build())
    tf.train.Checkpoint(model=restored).read(path).expect_partial().assert_existing_objects_matched()
    np.testing.assert_array_equal(restored(x).numpy(), wrapped(x).numpy())
    for a, b in zip(wrapped.weights, restored.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))

    stripped = tfl.strip(wrapped)
    assert not tfl.wrappers(stripped)
    np.testing.assert_allclose(stripped(x).numpy(), wrapped(x).numpy(), rtol=1e-5, atol=1e-5)
    effective = tfl.effective_weights(wrapped)
    for wrapper in tfl.wrappers(wrapped):
        plain = stripped.get_layer(wrapper.name)
        baked = {id(w): keras.ops.convert_to_numpy(v) for w, v in zip(wrapper.layer.weights, plain.weights)}
        for key, weight, mask in wrapper.masked_weights:
            np.testing.assert_array_equal(baked[id(weight)], effective[key])
            assert np.count_nonzero(baked[id(weight)]) <= int(masks[key].sum())
    _zero_at_pruned(effective, masks)

    again = tfl.prune(tfl.effective_weights(wrapped), masks, {k: 0.5 for k in keys})
    for key, mask in again.items():
        assert np.all(np.asarray(mask)[masks[key] == 0] == 0), key
