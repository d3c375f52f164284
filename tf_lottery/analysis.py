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

Stability (Frankle, Dziugaite, Roy & Carbin 2019, "Stabilizing the Lottery
Ticket Hypothesis"), both over the positions a mask m keeps ("surviving
positions": the 1s of the subnetwork's mask, tensor by tensor, over the masked
tensors only; biases, normalisation parameters and statistics, and layers left
unpruned have no mask and are left out):

  stability to pruning     the full network and the subnetwork (m applied at
                           the rewind point) trained from the same weights with
                           the same data order, to theta_full and theta_sub:
                           l2_distance       = ||m * (theta_sub - theta_full)||_2
                           relative_distance = l2_distance / ||m * theta_full||_2
                           (the full network's weights read at the positions m
                           keeps, both in the distance and in the norm)
  stability to data order  two copies of the subnetwork trained from the same
                           weights with two data orders, to theta_A and theta_B:
                           l2_distance       = ||m * (theta_A - theta_B)||_2
                           relative_distance = l2_distance /
                                               ((||m * theta_A||_2 + ||m * theta_B||_2) / 2)

Lower is more stable. `rewind_picks` says which rewind point each criterion
chooses from a table of rows measured at several rewind points.

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


def _kept(weights, masks):
    """{key: weight * mask} over the keys of `masks` (float64); ValueError naming a key that is missing or
    whose shape differs."""
    kept = {}
    for key, mask in masks.items():
        if key not in weights:
            raise ValueError(f"the weights have no '{key}', which the mask has")
        weight = np.asarray(weights[key], np.float64)
        if weight.shape != np.shape(mask):
            raise ValueError(f"'{key}' has shape {weight.shape} in the weights and {np.shape(mask)} in the mask")
        kept[key] = np.where(np.asarray(mask) != 0, weight, 0.0)
    return kept


def _distances(a, b, masks, scale):
    """{'l2_distance', 'relative_distance'} of ||m * (a - b)||, relative to `scale`(kept a, kept b)."""
    kept_a, kept_b = _kept(a, masks), _kept(b, masks)
    distance = l2_distance(kept_a, kept_b)
    norm = scale(kept_a, kept_b)
    return {"l2_distance": distance, "relative_distance": distance / norm if norm else 0.0}


def stability_to_pruning(subnetwork, full, masks):
    """The subnetwork's and the full network's trained weights compared where `masks` keeps weights.

    `subnetwork` and `full` map a key of `masks` to a trained weight (other
    keys are ignored); l2_distance = ||m * (subnetwork - full)||_2 and
    relative_distance = l2_distance / ||m * full||_2 (0 when that norm is 0).
    """
    return _distances(subnetwork, full, masks, lambda sub, dense: l2_norm(dense))


def stability_to_data_order(copy_a, copy_b, masks):
    """Two trained copies of a subnetwork compared where `masks` keeps weights.

    l2_distance = ||m * (a - b)||_2 and relative_distance = l2_distance /
    ((||m * a||_2 + ||m * b||_2) / 2) (0 when both norms are 0).
    """
    return _distances(copy_a, copy_b, masks, lambda a, b: (l2_norm(a) + l2_norm(b)) / 2)


def earliest_within(rows, field, tolerance, relative=False, lower_is_better=False):
    """The smallest 'iteration' of the rows whose `field` is within `tolerance` of the best row's.

    The best is the largest value (the smallest with `lower_is_better`);
    `relative` makes the tolerance a fraction of the best value. Rows whose
    field is None are skipped; None if no row has one.
    """
    values = [(row["iteration"], row[field]) for row in rows if row.get(field) is not None]
    if not values:
        return None
    if lower_is_better:
        best = min(v for _, v in values)
        bound = best + (tolerance * abs(best) if relative else tolerance)
        return min(k for k, v in values if v <= bound)
    best = max(v for _, v in values)
    bound = best - (tolerance * abs(best) if relative else tolerance)
    return min(k for k, v in values if v >= bound)


# The criteria of rewind_picks and the row field each one reads.
PICK_FIELDS = {"instability": "instability", "accuracy": "test_accuracy",
               "pruning": "pruning_relative_distance", "data_order": "data_order_relative_distance"}


def rewind_picks(rows, threshold, accuracy_tolerance, distance_tolerance):
    """The rewind point each criterion picks from rows measured at several points, and whether they agree.

    - instability: the earliest k whose instability is below `threshold`;
    - accuracy: the earliest k whose test accuracy is at least the best
      row's minus `accuracy_tolerance` (an absolute difference of accuracy);
    - pruning, data_order: the earliest k whose relative distance (stability
      to pruning, to data order) is at most the smallest row's times
      (1 + `distance_tolerance`): where the distance reaches its plateau.
    Returns {'picks': {criterion: k or None}, 'agree': whether every
    criterion picks the same k (False if any picks none)}.
    """
    picks = {"instability": earliest_stable(rows, threshold),
             "accuracy": earliest_within(rows, PICK_FIELDS["accuracy"], accuracy_tolerance)}
    for name in ("pruning", "data_order"):
        picks[name] = earliest_within(rows, PICK_FIELDS[name], distance_tolerance, relative=True,
                                      lower_is_better=True)
    chosen = set(picks.values())
    return {"picks": picks, "agree": None not in chosen and len(chosen) == 1}


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
