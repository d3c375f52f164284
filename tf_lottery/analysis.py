"""The arithmetic of ticket studies: pure functions over {name: array} dicts, no TensorFlow.

Linear mode connectivity (Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode
Connectivity and the Lottery Ticket Hypothesis"): two copies of a subnetwork
are trained from the same starting weights with two data orders, giving
effective weights theta_A and theta_B (weight * mask). Along the straight line
theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B, alpha in [0, 1], every
variable that sets what the network computes is interpolated: trainable
weights and normalisation statistics alike; pruned positions stay zero. Then

  instability        = max_alpha E(alpha) - (E(0) + E(1)) / 2
                       (E = test error at the evaluated points; the paper's
                       error barrier height; 0 means linearly connected)
  l2_distance        = ||theta_A - theta_B||_2
  relative_distance  = l2_distance / ((||theta_A||_2 + ||theta_B||_2) / 2)

where the norms run over all trainable effective weights (kernels times masks,
biases, normalisation scales and offsets), not the normalisation statistics.

Also the Jaccard overlap of two masks and the earliest stable rewind point.
The error is whatever an `evaluate(weights)` callable returns;
`tf_lottery.connectivity` supplies trained Keras models and their test error.
"""

import math

import numpy as np


def interpolate(weights_a, weights_b, alpha):
    """{key: (1 - alpha) * a + alpha * b} of two weight dicts with the same keys and shapes."""
    _check_same_layout(weights_a, weights_b)
    return {k: ((1.0 - alpha) * np.asarray(weights_a[k], np.float64)
                + alpha * np.asarray(weights_b[k], np.float64)).astype(np.asarray(weights_a[k]).dtype)
            for k in weights_a}


def _check_same_layout(a, b):
    if set(a) != set(b):
        raise ValueError(f"weight sets differ in keys: {', '.join(sorted(set(a) ^ set(b)))}")
    for k in a:
        if np.shape(a[k]) != np.shape(b[k]):
            raise ValueError(f"'{k}' has shape {np.shape(a[k])} in one set "
                             f"and {np.shape(b[k])} in the other")


def interpolation_path(weights_a, weights_b, evaluate, points=30):
    """[{'alpha', 'error'}] at `points` evenly spaced alphas from 0 (a) to 1 (b).

    The error at alpha is evaluate((1 - alpha) * a + alpha * b).
    """
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    return [{"alpha": float(alpha), "error": float(evaluate(interpolate(weights_a, weights_b, alpha)))}
            for alpha in np.linspace(0.0, 1.0, points)]


def instability(errors):
    """Max error along the path minus the mean error of its two end points (errors in path order)."""
    errors = [float(e) for e in errors]
    return max(errors) - (errors[0] + errors[-1]) / 2


def l2_norm(weights, keys=None):
    """The L2 norm of all arrays of `weights` (of `keys` only, if given) taken as one vector."""
    keys = sorted(weights) if keys is None else sorted(keys)
    return math.sqrt(sum(float(np.sum(np.square(np.asarray(weights[k], np.float64)))) for k in keys))


def l2_distance(weights_a, weights_b, keys=None):
    """||a - b||_2 over the arrays named by `keys` (all by default)."""
    _check_same_layout(weights_a, weights_b)
    keys = sorted(weights_a) if keys is None else keys
    return l2_norm({k: np.asarray(weights_a[k], np.float64) - np.asarray(weights_b[k], np.float64)
                    for k in keys})


def relative_distance(weights_a, weights_b, keys=None):
    """||a - b|| divided by the mean of ||a|| and ||b|| (0 when both are zero)."""
    scale = (l2_norm(weights_a, keys) + l2_norm(weights_b, keys)) / 2
    distance = l2_distance(weights_a, weights_b, keys)
    return distance / scale if scale else 0.0


def linear_mode_connectivity(weights_a, weights_b, evaluate, points=30, distance_keys=None):
    """The path's errors, instability and distances of two trained weight sets (see the module doc)."""
    path = interpolation_path(weights_a, weights_b, evaluate, points)
    errors = [p["error"] for p in path]
    return {
        "path": path,
        "end_errors": [errors[0], errors[-1]],
        "max_error": max(errors),
        "instability": instability(errors),
        "l2_distance": l2_distance(weights_a, weights_b, distance_keys),
        "relative_distance": relative_distance(weights_a, weights_b, distance_keys),
    }


def earliest_stable(rows, threshold):
    """The smallest 'iteration' of the rows whose instability is below `threshold`, or None."""
    stable = [row["iteration"] for row in rows if row["instability"] < threshold]
    return min(stable) if stable else None


def mask_overlap(mask_a, mask_b):
    """Jaccard overlap of the kept weights (1s) of two masks, per tensor and over all of them.

    Each entry holds the counts of ones in a and b, their intersection and
    union, `jaccard` = intersection / union (1 when both are empty) and
    `chance`: the overlap two independent random masks with the same counts
    would have (ratio of the expected intersection and union).
    """
    _check_same_layout(mask_a, mask_b)
    layers = {k: _overlap(np.asarray(mask_a[k]) != 0, np.asarray(mask_b[k]) != 0)
              for k in sorted(mask_a)}
    total = {f: sum(layer[f] for layer in layers.values())
             for f in ("size", "ones_a", "ones_b", "intersection", "union")}
    return {"layers": layers, "overall": {**total, **_ratios(**total)}}


def _overlap(a, b):
    counts = {"size": int(a.size), "ones_a": int(a.sum()), "ones_b": int(b.sum()),
              "intersection": int(np.sum(a & b)), "union": int(np.sum(a | b))}
    return {**counts, **_ratios(**counts)}


def _ratios(size, ones_a, ones_b, intersection, union):
    expected_shared = ones_a * ones_b / size if size else 0.0
    expected_union = ones_a + ones_b - expected_shared
    return {"jaccard": intersection / union if union else 1.0,
            "chance": expected_shared / expected_union if expected_union else 1.0}
