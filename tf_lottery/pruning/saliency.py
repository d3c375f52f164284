"""Scores for pruning before training: SNIP, GraSP and SynFlow, per masked weight of a wrapped model.

Each returns {key: score} over the keys of `model_ops.masked_weights`, higher
meaning more worth keeping, computed at the model's current weights:

- snip: |g * w|, g the gradient of the training loss summed over `batches`
  (Lee et al. 2019, connection sensitivity).
- grasp: w * (H g), H the Hessian of the loss and g its gradient, both summed
  over `batches` (Wang et al. 2020 remove the highest -w * Hg, i.e. keep the
  highest w * Hg; they compute it with the logits divided by a temperature
  of 200, which the caller's `loss` does). Signed.
- synflow: |dR/dw * w| with every trainable weight replaced by its absolute
  value and R the sum of the outputs for an input of ones (Tanaka et al.
  2020); reads no data. The iteration over masks is the caller's.

`loss(labels, outputs)` is the training loss (the Trainer's), `batches` a
list of (inputs, labels).
"""

from etils import epy

with epy.lazy_imports():
    import tensorflow as tf

    from tf_lottery import model_ops


def _weights(model):
    return [(key, weight) for key, weight, _ in model_ops.masked_weights(model)]


def _gradients(model, batches, loss):
    """The loss gradient of every masked weight, summed over the batches."""
    weights = _weights(model)
    total = [tf.zeros_like(w) for _, w in weights]
    for inputs, labels in batches:
        with tf.GradientTape() as tape:
            value = loss(labels, tf.cast(model(inputs, training=False), tf.float32))
        total = [t + g for t, g in zip(total, tape.gradient(value, [w for _, w in weights]))]
    return weights, total


def snip(model, batches, loss):
    weights, grads = _gradients(model, batches, loss)
    return {key: tf.abs(g * w).numpy() for (key, w), g in zip(weights, grads)}


def grasp(model, batches, loss):
    weights, grads = _gradients(model, batches, loss)
    variables = [w for _, w in weights]
    hessian_g = [tf.zeros_like(w) for w in variables]
    for inputs, labels in batches:
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                value = loss(labels, tf.cast(model(inputs, training=False), tf.float32))
            inner_grads = inner.gradient(value, variables)
            product = tf.add_n([tf.reduce_sum(tf.stop_gradient(g) * h) for g, h in zip(grads, inner_grads)])
        hessian_g = [t + h for t, h in zip(hessian_g, outer.gradient(product, variables))]
    return {key: (w * h).numpy() for (key, w), h in zip(weights, hessian_g)}


def synflow(model):
    weights = _weights(model)
    saved = [v.numpy() for v in model.trainable_variables]
    try:
        for variable in model.trainable_variables:
            variable.assign(tf.abs(variable))
        ones = tf.ones((1, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(tf.cast(model(ones, training=False), tf.float32))
        grads = tape.gradient(total, [w for _, w in weights])
        return {key: tf.abs(g * w).numpy() for (key, w), g in zip(weights, grads)}
    finally:
        for variable, value in zip(model.trainable_variables, saved):
            variable.assign(value)
