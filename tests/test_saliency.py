"""SNIP, GraSP and SynFlow scores against direct NumPy computations on a tiny network."""

import keras
import numpy as np
import tensorflow as tf

import tf_lottery as tfl
from tf_lottery import model_ops
from tf_lottery.pruning import saliency


def _tiny(activation, seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((3,))
    h = keras.layers.Dense(4, activation=activation, name="h",
                           bias_initializer=keras.initializers.RandomNormal(seed=seed))(x)
    out = keras.layers.Dense(2, name="out", bias_initializer=keras.initializers.RandomNormal(seed=seed + 1))(h)
    return tfl.wrap(keras.Model(x, out))


def _params(model):
    return {v.path.split("/")[-2] + "/" + v.name: v.numpy().astype(np.float64)
            for v in model.trainable_variables}


def _loss(p, x, y):
    """Mean cross-entropy of the tanh network in float64."""
    z = np.tanh(x @ p["h/kernel"] + p["h/bias"]) @ p["out/kernel"] + p["out/bias"]
    z = z - z.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))


def _gradient(p, x, y):
    """The analytic gradient of _loss for the kernels."""
    pre = x @ p["h/kernel"] + p["h/bias"]
    h = np.tanh(pre)
    z = h @ p["out/kernel"] + p["out/bias"]
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    dz = (probs - np.eye(2)[y]) / len(y)
    dh = dz @ p["out/kernel"].T * (1 - h ** 2)
    return {"h/kernel": x.T @ dh, "out/kernel": h.T @ dz}


def _batches(seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(5, 3)).astype(np.float32), rng.integers(0, 2, 5)) for _ in range(2)]


def _tf_loss(labels, outputs):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, outputs)


def test_snip_is_the_magnitude_of_gradient_times_weight():
    model = _tiny("tanh")
    batches = _batches()
    scores = saliency.snip(model, [(tf.constant(x), tf.constant(y)) for x, y in batches], _tf_loss)
    p = _params(model)
    # Finite differences of the summed loss, one kernel entry at a time.
    for key in ("h/kernel", "out/kernel"):
        numeric = np.zeros_like(p[key])
        for index in np.ndindex(p[key].shape):
            for sign in (1, -1):
                q = {k: v.copy() for k, v in p.items()}
                q[key][index] += sign * 1e-6
                numeric[index] += sign * sum(_loss(q, x.astype(np.float64), y) for x, y in batches) / 2e-6
        np.testing.assert_allclose(scores[key], np.abs(numeric * p[key]), rtol=1e-3, atol=1e-6)
    analytic = sum(_gradient(p, x.astype(np.float64), y)["h/kernel"] for x, y in batches)
    np.testing.assert_allclose(scores["h/kernel"], np.abs(analytic * p["h/kernel"]), rtol=1e-4, atol=1e-7)


def test_grasp_is_weight_times_hessian_gradient_product():
    model = _tiny("tanh")
    batches = _batches(1)
    scores = saliency.grasp(model, [(tf.constant(x), tf.constant(y)) for x, y in batches], _tf_loss)
    p = _params(model)

    def total_gradient(q):
        grads = [_gradient(q, x.astype(np.float64), y) for x, y in batches]
        return {k: sum(g[k] for g in grads) for k in grads[0]}

    g = total_gradient(p)
    epsilon = 1e-5
    plus = total_gradient({k: v + epsilon * g.get(k, 0) for k, v in p.items()})
    minus = total_gradient({k: v - epsilon * g.get(k, 0) for k, v in p.items()})
    for key in g:  # H g by central differences of the gradient along g
        hessian_g = (plus[key] - minus[key]) / (2 * epsilon)
        np.testing.assert_allclose(scores[key], p[key] * hessian_g, rtol=1e-3, atol=1e-6)
    assert any((v < 0).any() for v in scores.values())  # signed, unlike SNIP


def test_synflow_is_the_closed_form_path_product_and_leaves_the_weights():
    model = _tiny("relu", seed=3)
    before = [v.numpy().copy() for v in model.variables]
    scores = saliency.synflow(model)  # takes the model alone: no data
    p = {k: np.abs(v) for k, v in _params(model).items()}
    hidden = p["h/kernel"].sum(0) + p["h/bias"]          # every hidden unit's value for an input of ones
    out_rows = p["out/kernel"].sum(1)                    # dR/dh
    np.testing.assert_allclose(scores["h/kernel"], p["h/kernel"] * out_rows[None, :], rtol=1e-5)
    np.testing.assert_allclose(scores["out/kernel"], p["out/kernel"] * hidden[:, None], rtol=1e-5)
    for old, variable in zip(before, model.variables):
        np.testing.assert_array_equal(old, variable.numpy())
    masks = model_ops.get_masks(model)
    masks["h/kernel"][0, :] = 0  # a pruned input row carries no flow: its scores are zero
    model_ops.set_masks(model, masks)
    assert (saliency.synflow(model)["h/kernel"][0] == 0).all()
