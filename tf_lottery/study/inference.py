"""Intervals and tests on per-seed numbers: the arithmetic behind every verdict of a study.

The experiment seed is the unit. Callers average a seed's repeated draws
first (`seed_means`) and pass one number per seed; sides that share their
seeds are compared paired (`paired_difference`, `paired_ratio`), sides that
do not are compared as independent samples (`welch_difference`,
`fieller_ratio`). Every function returns an Estimate that names the method it
used, so a report can say which one each number came from.

- A mean: Student's t interval of the seed values.
- A paired difference: Student's t interval of the per-seed differences.
- A paired ratio: the geometric mean of the per-seed ratios, with the t
  interval of the per-seed log ratios taken back by exp.
- Unpaired: Welch's interval of a difference, Fieller's of a ratio of means.
- No difference (`equivalence`): two one-sided tests (TOST) at a declared
  margin, i.e. the 90% interval inside (-margin, +margin).
- Many rounds at once (`holm`): Holm's step-down correction of the rounds'
  two-sided p-values.
Nothing here imports TensorFlow, Ray or matplotlib.
"""

import dataclasses
import math

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA = 1 - LEVEL
PAIRED, WELCH, PAIRED_LOG, FIELLER, ONE_SAMPLE = (
    "paired t", "Welch t", "paired t on log ratios", "Fieller", "t")


@dataclasses.dataclass(frozen=True)
class Estimate:
    """An estimate with its 95% interval, the two-sided p-value of no effect and how it was made.

    `se` and `df` are on the scale the test works on (the log scale for a
    paired ratio); low, high and p are None below two seeds (or when an
    interval is unbounded).
    """
    value: float
    low: float = None
    high: float = None
    n: int = 0
    method: str = ONE_SAMPLE
    p: float = None
    se: float = None
    df: float = None

    def __iter__(self):
        """(value, low, high), so an Estimate unpacks like an interval."""
        return iter((self.value, self.low, self.high))

    @property
    def has_interval(self):
        return self.low is not None

    def excludes(self, null):
        """Whether the 95% interval lies clear of `null` (False without an interval)."""
        return self.has_interval and (self.low > null or self.high < null)


def seed_means(values_by_seed):
    """{seed: mean of its draws} of {seed: [draws]}, leaving out seeds without a value."""
    return {key: float(np.mean(draws)) for key, draws in values_by_seed.items() if len(draws)}


def within_seed_sd(values_by_seed):
    """The pooled standard deviation of draws within a seed, or None where no seed has two draws."""
    groups = [np.asarray(d, float) for d in values_by_seed.values() if len(d) > 1]
    if not groups:
        return None
    squares = sum(float(((g - g.mean()) ** 2).sum()) for g in groups)
    return math.sqrt(squares / sum(len(g) - 1 for g in groups))


def t_quantile(df, level=LEVEL):
    """The two-sided `level` quantile of Student's t with `df` degrees of freedom."""
    return float(stats.t.ppf(0.5 + level / 2, df))


def _from_t(value, se, df, n, method):
    """An Estimate value +- t * se with the p-value of value = 0, for se > 0; a zero se gives a
    point interval and p 0 (or 1 when value is 0)."""
    if se == 0:
        return Estimate(value, value, value, n, method, 0.0 if value else 1.0, 0.0, df)
    half = t_quantile(df) * se
    p = float(2 * stats.t.sf(abs(value) / se, df))
    return Estimate(value, value - half, value + half, n, method, p, se, df)


def mean(values, method=ONE_SAMPLE):
    """The mean of `values` (one per seed) with Student's t interval."""
    values = np.asarray(values, float)
    n = len(values)
    if n < 2:
        return Estimate(float(values.mean()) if n else float("nan"), n=n, method=method)
    return _from_t(float(values.mean()), float(values.std(ddof=1)) / math.sqrt(n), n - 1, n, method)


def t_interval(values):
    """(low, high): the 95% Student t interval of the mean of `values`; (None, None) below two."""
    estimate = mean(values)
    return estimate.low, estimate.high


def paired_difference(a, b):
    """mean(a - b) for values paired by position (the same seed), with the t interval of the
    per-seed differences."""
    return mean(np.asarray(a, float) - np.asarray(b, float), method=PAIRED)


def _welch_df(va, vb, na, nb):
    """Welch-Satterthwaite degrees of freedom of a sum of two variances of means from na and nb values."""
    if va + vb == 0:
        return min(na, nb) - 1
    return (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))


def welch_difference(a, b):
    """mean(a) - mean(b) for independent sides, with Welch's interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    value = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return Estimate(value, n=min(len(a), len(b)), method=WELCH)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    return _from_t(value, math.sqrt(va + vb), _welch_df(va, vb, len(a), len(b)), min(len(a), len(b)), WELCH)


def paired_ratio(a, b):
    """The geometric mean of the per-seed ratios a / b, with the t interval of the log ratios taken
    back by exp (p-value of ratio 1); every value must be positive."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("a paired ratio needs positive values")
    logs = mean(np.log(a / b), method=PAIRED_LOG)
    if not logs.has_interval:
        return dataclasses.replace(logs, value=math.exp(logs.value))
    return dataclasses.replace(logs, value=math.exp(logs.value), low=math.exp(logs.low),
                               high=math.exp(logs.high))


def fieller_ratio(a, b):
    """mean(a) / mean(b) for independent sides, with Fieller's interval (None when mean(b) is not
    clear of zero: the interval is then unbounded); no p-value."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ratio = float(a.mean() / b.mean())
    n = min(len(a), len(b))
    if n < 2:
        return Estimate(ratio, n=n, method=FIELLER)
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t2 = t_quantile(_welch_df(va, ratio ** 2 * vb, len(a), len(b))) ** 2
    # (ma - R mb)^2 = t^2 (va + R^2 vb), a quadratic in R.
    qa, qb, qc = mb ** 2 - t2 * vb, -2 * ma * mb, ma ** 2 - t2 * va
    if qa <= 0:
        return Estimate(ratio, n=n, method=FIELLER)
    root = math.sqrt(max(qb ** 2 - 4 * qa * qc, 0.0))
    return Estimate(ratio, float((-qb - root) / (2 * qa)), float((-qb + root) / (2 * qa)), n, FIELLER)


def equivalence(estimate, margin):
    """TOST at level 5%: (equivalent, p) for a difference Estimate and a margin > 0. Equivalent when
    both one-sided tests reject, i.e. the 90% interval lies inside (-margin, +margin); p is the
    larger one-sided p-value. (False, None) without an interval."""
    if estimate.se is None or estimate.df is None:
        return False, None
    if estimate.se == 0:
        return abs(estimate.value) < margin, 0.0 if abs(estimate.value) < margin else 1.0
    lower = stats.t.sf((estimate.value + margin) / estimate.se, estimate.df)
    upper = stats.t.cdf((estimate.value - margin) / estimate.se, estimate.df)
    p = float(max(lower, upper))
    return p < ALPHA, p


def holm(pvalues, alpha=ALPHA):
    """Holm's step-down correction: for each p-value (None: not tested), whether it stays clear at
    family-wise level `alpha` over the tested ones."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    clear = [False] * len(pvalues)
    for rank, (p, i) in enumerate(tested):
        if p > alpha / (len(tested) - rank):
            break
        clear[i] = True
    return clear
