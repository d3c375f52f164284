"""The exact k-th largest entry of a non-negative float32 tensor, by a few counting passes.

Edge-popup chooses the top-k |scores| of every tensor in every training step,
so the k-th largest value is found thousands of times per round under XLA,
where a full sort of a 235,200-entry tensor costs about 45 ms on CPU (and so
do tf.math.top_k and approx_max_k, which XLA runs as a sort on CPU).

For non-negative floats the order of the values is that of their int32 bit
patterns. The search keeps a bracket of bit patterns, `low` with at least k
entries >= it and `high` with fewer, and narrows it by counting, in one pass
over the tensor, the entries at or above several probes at once: the counts
of the entries inside the bracket are packed into the bit fields of one int64
sum (up to PROBES probes, as many as fields of the bracket's size fit in 63
bits), which costs about as much as counting for one probe. The probes are
placed by linear interpolation of the count between the bracket's ends; a
pass (after the first) that does not halve the bracket is followed by one
that splits it evenly, so any input ends within about 64 passes. The search
stops when a probe has exactly k entries at or above it (such a probe chooses
the same entries as the k-th value itself), when the bracket holds one bit
pattern, or when `high` has k - 1 entries at or above it (one more pass takes
the largest entry below it).

A `Hint` (the tensor's last threshold and how far it last moved) places the
first pass's probes around the last answer: the scores move little per step,
so that pass brackets the answer within a few dozen entries. The hint only
changes how fast the answer is found, never the answer (a stale, absurd or
missing hint gives the same result), so hints are kept outside the model's
weights and checkpoints and a resumed run chooses the same masks.

On LeNet-300-100's edge-popup step (benchmarks/edge_popup_step.py) the
235,200 scores of the first layer take 2.5-2.8 counting passes per step,
plus the pass for the largest entry below `high` in about 40% of the steps,
where the bisection over the float's 31 bits that this replaced took 31
passes: the step went from 3.8x to 2.0x the masked IMP step. Without a hint
(evaluation passes) it takes about 12 passes, which cost what the 31 simpler
ones of the bisection did.
"""

import tensorflow as tf

INF_BITS = 0x7F800000  # the bit pattern of +inf, the largest value searched
PROBES = 6  # probes per pass when the bracket is small enough for 6 packed counts
_MIN_SPREAD, _MAX_SPREAD = 256, 1 << 24  # a warm start's probes: this far apart (bit patterns)


def _bit_length(x):
    """The number of bits of a non-negative int32 scalar."""
    return tf.reduce_sum(tf.cast(tf.bitwise.right_shift(x, tf.range(32)) > 0, tf.int32))


def _probes(bracket, k, start, spread, first, split, fit):
    """PROBES probe bit patterns (int64) for a pass; the first `fit` are counted."""
    low, c_low, high, c_high = (tf.cast(v, tf.int64) for v in bracket)
    j = tf.range(PROBES, dtype=tf.int64)
    fit = tf.cast(fit, tf.int64)
    # Evenly from -1 to 1 over the counted probes.
    offset = tf.cast(2 * j - (fit - 1), tf.float32) / tf.cast(tf.maximum(fit - 1, 1), tf.float32)
    spread64 = tf.cast(spread, tf.int64)
    warm = tf.cast(start, tf.int64) + tf.cast(tf.round(tf.cast(spread, tf.float32) * offset), tf.int64)
    gallop_up = low + spread64 * tf.bitwise.left_shift(tf.constant(1, tf.int64), 2 * (j + 1))
    gallop_down = high - spread64 * tf.bitwise.left_shift(tf.constant(1, tf.int64), 2 * (j + 1))
    even = low + (high - low) * (j + 1) // (fit + 1)
    # The count falls from c_low at low to c_high at high; aim at k - 1/2, probes sqrt(size) apart.
    size = tf.cast(c_low - c_high, tf.float32)
    targets = tf.clip_by_value(tf.cast(k, tf.float32) - 0.5 + tf.maximum(1.0, tf.sqrt(size)) * offset,
                               tf.cast(c_high, tf.float32), tf.cast(c_low, tf.float32))
    low_value = tf.bitcast(tf.cast(low, tf.int32), tf.float32)
    high_value = tf.bitcast(tf.cast(tf.minimum(high, INF_BITS - 1), tf.int32), tf.float32)
    value = low_value + (tf.cast(c_low, tf.float32) - targets) / size * (high_value - low_value)
    interpolated = tf.cast(tf.bitcast(value, tf.int32), tf.int64)
    hinted, unbounded = spread > 0, high > INF_BITS
    # The first rule that applies: a hint's first pass around it; an even split after a pass that did
    # not halve the bracket; galloping away from a hint that missed; else interpolation.
    rules = [(first & hinted, warm), (split, even), (hinted & unbounded, gallop_up),
             (hinted & (low == 0), gallop_down), (unbounded, even)]
    chosen = interpolated
    for applies, probes in reversed(rules):
        chosen = tf.where(applies, probes, chosen)
    return tf.clip_by_value(chosen, low + 1, high - 1)


def _packed_counts(bits, high, probes, width, fit):
    """The entries in [probe, high) of the first `fit` probes, from one pass: `width`-bit fields of one sum."""
    j = tf.range(PROBES)
    counted = j < fit
    field = tf.cast(tf.where(counted, j * width, 0), tf.int64)
    zero = tf.constant(0, tf.int64)
    weights = tf.where(counted, tf.bitwise.left_shift(tf.constant(1, tf.int64), field), zero)
    per_entry = tf.add_n([tf.where(bits >= probes[i], weights[i], zero) for i in range(PROBES)])
    packed = tf.reduce_sum(tf.where(bits < high, per_entry, zero))
    ones = tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.cast(width, tf.int64)) - 1
    return tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(packed, field), ones), tf.int32)


def _search(bits, k, start, spread):
    """The final bracket (low, c_low, high, c_high) of the search for the k-th largest of `bits`."""
    j = tf.range(PROBES)

    def unfinished(low, c_low, high, c_high, *_):
        return (c_low != k) & (c_high != k - 1) & (high - low > 1)

    def narrow(low, c_low, high, c_high, first, split):
        width = _bit_length(c_low - c_high)  # every count inside the bracket fits in `width` bits
        fit = tf.minimum(63 // width, PROBES)  # as many probes as fields fit in an int64 sum
        probes = tf.cast(_probes((low, c_low, high, c_high), k, start, spread, first, split, fit), tf.int32)
        counts = c_high + _packed_counts(bits, high, probes, width, fit)
        counted = j < fit
        enough, short = counted & (counts >= k), counted & (counts < k)
        new = (tf.reduce_max(tf.where(enough, probes, low)), tf.reduce_min(tf.where(enough, counts, c_low)),
               tf.reduce_min(tf.where(short, probes, high)), tf.reduce_max(tf.where(short, counts, c_high)))
        halved = 2 * (tf.cast(new[2], tf.int64) - tf.cast(new[0], tf.int64)) <= (
            tf.cast(high, tf.int64) - tf.cast(low, tf.int64))
        # A pass after the first that did not halve the bracket is followed by an even split, so the
        # bracket halves at least every second pass: at most about 64 passes for any input.
        return new + (tf.constant(False), ~halved & ~first)

    state = (tf.constant(0), tf.size(bits), tf.constant(INF_BITS + 1), tf.constant(0),
             tf.constant(True), tf.constant(False))
    return tf.while_loop(unfinished, narrow, state, maximum_iterations=128)[:4]


def _kth_bits(bits, k, start, spread):
    """The bit pattern of the k-th largest of `bits`."""
    low, c_low, high, c_high = _search(bits, k, start, spread)
    return tf.cond(c_low == k, lambda: tf.reduce_min(tf.where(bits >= low, bits, INF_BITS)),
                   lambda: tf.cond(c_high == k - 1, lambda: _largest_below(bits, high), lambda: low))


def _largest_below(bits, high):
    return tf.reduce_max(tf.where(bits < high, bits, 0))


def _prepare(values, k, hint):
    """The bits of `values`, k, and the search's start and spread (from the hint, else none)."""
    # -0.0 (and any negative pattern) counts as 0, NaN as +inf: the search's bracket starts at [0, inf].
    bits = tf.clip_by_value(tf.bitcast(tf.reshape(tf.cast(values, tf.float32), [-1]), tf.int32), 0, INF_BITS)
    k = tf.cast(k, tf.int32)
    start, spread = (hint.variable[0], hint.variable[1]) if hint is not None else (tf.constant(0), tf.constant(0))
    return bits, k, start, spread


def kth_largest(values, k, hint=None):
    """The k-th largest entry (k a scalar int32 tensor, 1 <= k <= size) of non-negative float32 `values`.

    Exact for any `hint` (see the module doc); the hint is read, not updated.
    """
    return tf.bitcast(_kth_bits(*_prepare(values, k, hint)), tf.float32)


def threshold(values, k, hint=None):
    """A float32 t with `values >= t` true exactly where `values >=` their k-th largest entry is.

    Cheaper than kth_largest (no pass for the exact value when a probe already
    chooses the same entries). With a `hint`, updates it for the next call.
    """
    bits, k, start, spread = _prepare(values, k, hint)
    low, c_low, high, c_high = _search(bits, k, start, spread)
    answer = tf.cond((c_low != k) & (c_high == k - 1), lambda: _largest_below(bits, high), lambda: low)
    if hint is not None:
        moved = tf.cast(tf.abs(tf.cast(answer, tf.int64) - tf.cast(hint.variable[0], tf.int64)), tf.float32)
        next_spread = tf.where(hint.variable[1] > 0,
                               tf.clip_by_value(3.0 * moved + _MIN_SPREAD, _MIN_SPREAD, _MAX_SPREAD),
                               16.0 * _MIN_SPREAD)
        hint.variable.assign(tf.stack([answer, tf.cast(next_spread, tf.int32)]))
    return tf.bitcast(answer, tf.float32)


class Hint:
    """Where the last threshold of one tensor was: a warm start for `threshold`, outside any checkpoint.

    Holds an int32 tf.Variable [bit pattern of the last answer, spread of the
    next first pass; 0 = no hint]. Not a Keras weight and not tracked by
    tf.train.Checkpoint (the object holding it is not trackable), so saved
    models and checkpoints are those of a model without it; the answer never
    depends on it.
    """

    def __init__(self):
        with tf.init_scope():
            self.variable = tf.Variable([0, 0], dtype=tf.int32, trainable=False, name="top_k_hint",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
