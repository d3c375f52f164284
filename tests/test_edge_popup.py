"""Edge-popup: top-k masks of scores on frozen weights, with straight-through gradients."""

import keras
import numpy as np
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import data, edge_popup, model_ops, training


def test_top_fraction_keeps_exactly_the_largest():
    scores = tf.constant([[0.3, -2.0, 0.1, 0.9], [0.5, 0.05, 1.5, 0.2]])
    mask = edge_popup.top_fraction(tf.abs(scores), tf.constant(0.25)).numpy()
    np.testing.assert_array_equal(mask, [[0, 1, 0, 0], [0, 0, 1, 0]])
    assert edge_popup.top_fraction(tf.abs(scores), tf.constant(0.0)).numpy().sum() == 1  # at least one
    assert edge_popup.top_fraction(tf.abs(scores), tf.constant(1.0)).numpy().sum() == 8


def _plain(seed=0):
    x = keras.Input((3,))
    h = keras.layers.Dense(4, activation="tanh", name="h",
                           kernel_initializer=keras.initializers.GlorotNormal(seed=seed))(x)
    return keras.Model(x, keras.layers.Dense(2, name="out")(h))


def test_scores_get_the_straight_through_gradient_and_weights_stay_frozen():
    plain = _plain()
    model = edge_popup.wrap(plain)
    assert sorted(v.path.split("/")[-1] for v in model.trainable_variables) == ["kernel_score", "kernel_score"]
    (score, density), _ = (edge_popup.scores(model)[k] for k in ("h/kernel", "out/kernel"))
    density.assign(0.5)
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x) ** 2)
    grad = tape.gradient(loss, score).numpy()
    # The same network with the chosen mask baked in: d loss / d (used weight), times the weight.
    kernel = model.get_layer("h").layer.kernel
    mask = model_ops.get_masks(model)["h/kernel"]
    assert mask.sum() == 6
    used = tf.Variable(kernel.numpy() * mask)
    with tf.GradientTape() as tape:
        hidden = tf.tanh(x @ used + model.get_layer("h").layer.bias)
        out = model.get_layer("out")
        outputs = hidden @ (out.layer.kernel * model_ops.get_masks(model)["out/kernel"]) + out.layer.bias
        reference = tf.reduce_sum(outputs ** 2)
    np.testing.assert_allclose(reference.numpy(), loss.numpy(), rtol=1e-6)
    # The choice is by |score|, so the gradient reaches score with the sign of score.
    expected = tape.gradient(reference, used).numpy() * kernel.numpy() * np.sign(score.numpy())
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_scores_alone_train_a_frozen_random_network():
    splits = data.load("mnist_small", validation_size=500)
    model = edge_popup.wrap(tfl.models.build("lenet", (28, 28, 1), 10, hidden=(64, 32)))
    for _, density in edge_popup.scores(model).values():
        density.assign(0.5)
    config = tfl.TrainingConfig(train_steps=300, eval_every=300, eval_batch_size=1000)
    curve = training.Trainer(model, splits, config).train().curve
    assert curve[0]["test_accuracy"] < 0.2 and curve[-1]["test_accuracy"] > 0.7


def test_kth_largest_equals_the_sorted_value_for_every_k():
    rng = np.random.default_rng(3)
    tensors = [np.abs(rng.normal(size=(37, 11))).astype(np.float32),
               rng.integers(0, 4, size=(50,)).astype(np.float32),  # many ties, and zeros
               np.array([0.0, 1e-30, 3e-38, 7.0, np.float32(3.4e38)], np.float32)]
    for values in tensors:
        descending = np.sort(values.ravel())[::-1]
        for k in range(1, values.size + 1):
            assert edge_popup.kth_largest(tf.constant(values), tf.constant(k)).numpy() == descending[k - 1]
