"""The Bernoulli supermask: masks sampled from learned probabilities on frozen weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import data, edge_popup, model_ops, supermask, training

from conftest import tiny_model, tiny_training


def test_a_sample_is_bernoulli_of_keep_with_the_gradient_straight_through():
    keep = tf.Variable([0.0, 0.1, 0.5, 0.9, 1.0])
    draws = np.stack([supermask.sample(keep, tf.constant([i, 7])).numpy() for i in range(4000)])
    assert set(np.unique(draws)) == {0.0, 1.0}
    frequency = draws.mean(axis=0)
    bound = 4 * np.sqrt(keep.numpy() * (1 - keep.numpy()) / 4000) + 1e-9
    assert np.all(np.abs(frequency - keep.numpy()) <= bound), frequency
    weights = tf.constant([1.0, -2.0, 3.0, 0.5, 4.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(weights * supermask.sample(keep, tf.constant([1, 2])))
    np.testing.assert_array_equal(tape.gradient(loss, keep).numpy(), weights.numpy())


def test_rescaled_probabilities_have_the_density_as_mean():
    keep = tf.constant([0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(supermask.rescaled(keep, 0.25).numpy(), [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    assert supermask.rescaled(tf.constant([0.9, 0.1]), 0.9).numpy().max() == 1.0  # clipped


def _model(logit_scale=100.0):
    x = keras.Input((6,))
    h = keras.layers.Dense(20, activation="relu", name="h",
                           kernel_initializer=keras.initializers.GlorotNormal(seed=1))(x)
    return supermask.wrap(keras.Model(x, keras.layers.Dense(3, name="out")(h)), logit_scale=logit_scale)


def test_training_passes_sample_near_the_density_and_inference_uses_the_ticket():
    model = _model()
    supermask.start(model, {"h/kernel": 0.25, "out/kernel": 0.5}, seed=3)
    score, _ = edge_popup.scores(model)["h/kernel"]
    np.testing.assert_allclose(1 / (1 + np.exp(-100 * score.numpy())), 0.25, rtol=1e-5)  # logit(density)
    score.assign(np.random.default_rng(0).normal(size=score.shape).astype(np.float32) / 100)
    wrapper, kernel = model.get_layer("h"), model.get_layer("h").layer.kernel
    samples = []
    for _ in range(300):
        with keras.StatelessScope(state_mapping=wrapper._used_weights(training=True)) as scope:
            samples.append(scope.get_current_value(kernel).numpy() != 0)
    samples = np.array(samples)
    assert abs(samples.mean() - 0.25) < 0.01  # 36,000 draws around the density
    assert not np.all(samples == samples[0])  # a new sample every pass
    # Outside training: the ticket, the top quarter of sigmoid(scale * score), also in the mask variable.
    inference = model.get_layer("h")._used_weights(training=False)[0][1].numpy()
    keep = score.numpy().ravel()
    expected = keep >= np.sort(keep)[::-1][int(round(0.25 * keep.size)) - 1]
    np.testing.assert_array_equal(inference.ravel() != 0, expected)
    np.testing.assert_array_equal(model_ops.get_masks(model)["h/kernel"].ravel(), expected)


def test_scores_alone_train_a_frozen_random_network_and_its_samples_are_seeded():
    splits = data.load("mnist_small", validation_size=500)
    results = []
    for seed in (1, 1, 2):
        model = supermask.wrap(tfl.models.build("lenet", (28, 28, 1), 10, hidden=(64, 32)))
        weights = model_ops.raw_weights(model)
        supermask.start(model, {key: 0.3 for key, _, _ in model_ops.masked_weights(model)}, seed=seed)
        config = tfl.TrainingConfig(train_steps=300, eval_every=300, eval_batch_size=1000)
        curve = training.Trainer(model, splits, config).train().curve
        assert curve[0]["test_accuracy"] < 0.2 and curve[-1]["test_accuracy"] > 0.7
        for key, value in model_ops.raw_weights(model).items():
            np.testing.assert_array_equal(value, weights[key])  # the weights never train
        masks = model_ops.get_masks(model)
        assert all(m.sum() == round(0.3 * m.size) for m in masks.values())
        results.append(masks["fc1/kernel"])
    np.testing.assert_array_equal(results[0], results[1])  # same seed, same samples, same ticket
    assert not np.array_equal(results[0], results[2])


class _Kill(Exception):
    pass


def test_an_interrupted_supermask_run_resumes_to_the_same_ticket(splits, tmp_path):
    def fresh(seed):
        model = supermask.wrap(tiny_model(seed))
        supermask.start(model, {key: 0.4 for key, _, _ in model_ops.masked_weights(model)}, seed=seed)
        return model

    straight = fresh(0)
    expected = training.Trainer(straight, splits, tiny_training()).train(directory=tmp_path / "a")

    def kill(step):
        raise _Kill(step)

    interrupted = fresh(0)
    with pytest.raises(_Kill):
        training.Trainer(interrupted, splits, tiny_training()).train(directory=tmp_path / "b", hooks={30: kill})
    resumed = fresh(9)  # other weights and sample seed: everything must come from the checkpoint
    result = training.Trainer(resumed, splits, tiny_training()).train(directory=tmp_path / "b")
    for a, b in zip(straight.variables, resumed.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert result.curve == expected.curve
