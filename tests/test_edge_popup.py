"""Edge-popup: top-k masks of scores on frozen weights, with straight-through gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import data, edge_popup, model_ops, top_k, training

from conftest import tiny_model, tiny_training


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


def _hard_tensors():
    rng = np.random.default_rng(3)
    return [np.abs(rng.normal(size=63)).astype(np.float32),
            rng.integers(0, 4, size=(50,)).astype(np.float32),  # many ties, and zeros
            np.array([0.0, 1e-45, 1e-30, 3e-38, 7.0, np.float32(3.4e38), np.inf], np.float32),  # tiny, huge
            np.array([5.0], np.float32),  # a single entry
            np.zeros(6, np.float32),
            np.array([1e-45, -0.0, 2.0, 1e-45, 2.0], np.float32)]


# (bit pattern of the last answer, spread): cold, absurd, far off, negative, the largest int32.
_HINTS = [(0, 0), (12345, 7), (top_k.INF_BITS, 1 << 20), (1, 1), (-5, -3), (2**31 - 1, 2**31 - 1)]


def test_kth_largest_and_threshold_are_exact_for_every_k_whatever_the_hint():
    hint = top_k.Hint()
    signature = [tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)]
    kth = tf.function(lambda v, k: top_k.kth_largest(v, k, hint), input_signature=signature)
    threshold = tf.function(lambda v, k: top_k.threshold(v, k, hint), input_signature=signature)
    calls = 0
    for values in _hard_tensors():
        descending = np.sort(values)[::-1]
        for k in range(1, values.size + 1):
            expected = descending[k - 1]
            # threshold() leaves the hint at the last k's answer: a stale start for this k.
            chosen = values >= threshold(tf.constant(values), tf.constant(k)).numpy()
            np.testing.assert_array_equal(chosen, values >= expected)
            start, spread = (_HINTS + [(int(expected.view(np.int32)), 100)])[calls % (len(_HINTS) + 1)]
            hint.variable.assign([start, spread])
            calls += 1
            assert kth(tf.constant(values), tf.constant(k)).numpy() == expected, (values, k, start, spread)
    assert edge_popup.kth_largest(tf.constant([0.5, 2.0, 1.0]), tf.constant(2)).numpy() == 1.0  # eager


def test_threshold_compiled_by_xla_chooses_the_top_k_for_every_k():
    values = np.random.default_rng(5).integers(0, 5, size=(40,)).astype(np.float32) ** 3  # ties
    hint = top_k.Hint()
    every_k = tf.function(lambda v: tf.map_fn(lambda k: top_k.threshold(v, k, hint), tf.range(1, v.shape[0] + 1),
                                              fn_output_signature=tf.float32), jit_compile=True)
    thresholds = every_k(tf.constant(values)).numpy()
    descending = np.sort(values)[::-1]
    for k, t in enumerate(thresholds, start=1):
        np.testing.assert_array_equal(values >= t, values >= descending[k - 1])


def test_the_hint_follows_training_outside_the_weights_and_checkpoints(tmp_path):
    model = edge_popup.wrap(_plain())
    for _, density in edge_popup.scores(model).values():
        density.assign(0.5)
    wrapper = model.get_layer("h")
    variables = len(model.variables)
    assert not any("hint" in v.path for v in model.variables)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    assert not any("hint" in name for name, _ in tf.train.list_variables(path))
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
    model(x, training=False)
    np.testing.assert_array_equal(wrapper._hints[0].variable.numpy(), [0, 0])  # inference: no hint
    model(x, training=True)
    score = np.abs(wrapper.scores["h/kernel"][0].numpy())
    start, spread = wrapper._hints[0].variable.numpy()
    assert spread > 0 and np.sum(score >= np.int32(start).view(np.float32)) == 6
    assert len(model.variables) == variables


def _fresh(seed):
    model = edge_popup.wrap(tiny_model(seed))
    for index, (score, density) in enumerate(edge_popup.scores(model).values()):
        score.assign(keras.initializers.HeUniform(seed=seed + index)(score.shape))
        density.assign(0.3)
    return model


def _set_hints(model, value):
    for wrapper in model_ops.wrappers(model):
        for hint in wrapper._hints:
            hint.variable.assign(value)


def test_the_same_steps_from_any_hints_give_bit_identical_scores(splits):
    model = _fresh(0)
    trainer = training.Trainer(model, splits, tiny_training())
    assert trainer.fused  # the XLA chunk of steps, as the controls train
    state = [v.numpy() for v in model.variables + trainer.optimizer.variables + [trainer.iteration]]
    for step in (0, 10):  # chunks of steps_per_call
        trainer.train_chunk(step, 10, batches=None)
    first = [v.numpy() for v in model.variables]
    warm = [h.variable.numpy() for w in model_ops.wrappers(model) for h in w._hints]
    assert all(spread > 0 for _, spread in warm)  # the training passes used and updated their hints
    for variable, value in zip(model.variables + trainer.optimizer.variables + [trainer.iteration], state):
        variable.assign(value)
    _set_hints(model, [2**31 - 1, 3])  # far from every threshold
    for step in (0, 10):
        trainer.train_chunk(step, 10, batches=None)
    for a, b in zip(first, model.variables):
        np.testing.assert_array_equal(a, b.numpy())


class _Kill(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_edge_popup_run_resumes_to_the_same_masks_whatever_its_hints(splits, tmp_path):
    straight = _fresh(0)
    expected = training.Trainer(straight, splits, tiny_training()).train(directory=tmp_path / "a")

    def kill(step):
        raise _Kill(step)

    with pytest.raises(_Kill):
        training.Trainer(_fresh(0), splits, tiny_training()).train(directory=tmp_path / "b", hooks={30: kill})
    resumed = _fresh(9)  # other weights and scores: everything must come from the checkpoint
    _set_hints(resumed, [2**31 - 1, 3])  # and hints far from every threshold (they are not checkpointed)
    result = training.Trainer(resumed, splits, tiny_training()).train(directory=tmp_path / "b")
    for a, b in zip(straight.variables, resumed.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert result.curve == expected.curve
