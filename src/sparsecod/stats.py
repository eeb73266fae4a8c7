"""The statistics of the verdicts: intervals, tests and the verdict rule (protocol §8; DESIGN: "one module").

Metrics (window bootstrap of their scores), collect and the claims read these functions; nothing else in the
project computes a p-value or an interval. Everything is scipy.stats:

* `window_interval`: percentile bootstrap (`scipy.stats.bootstrap`) over the analysis windows of a statistic
  computed from per-window sums (M4 C_global, M5 P_global, M6 U and ratios, M8 sparsity).
* `mean_interval`: the same over any sample (e.g. the last 10% of the logged M1 steps).
* `trend_test`: exact permutation test of Spearman's ρ (`scipy.stats.permutation_test`, all n! pairings up to
  n = 8 points, else 20,000 random ones), one-sided in each direction, with a bootstrap interval of ρ.
* `mean_test`: a one-sample t-test across seeds (`scipy.stats.ttest_1samp`) with its t interval;
  `normal_test`: a z-test from an estimate and its standard error (one seed: the error from its interval).
* `decide`: the verdict rule (reproduced / contradicted / inconclusive, always with a reason).

The verdict rule (α = ALPHA = 0.05, one-sided tests):
1. fewer usable values than the claim needs -> inconclusive ("too few runs"); a floor (constant values, or
   a usefulness ceiling below 1 + τ) -> inconclusive ("floor");
2. the test against the paper's direction has p ≤ α -> contradicted;
3. the test in the paper's direction has p > α -> inconclusive ("not significant"; with n points the
   exact permutation test cannot go below 1/n!, so 3 runs never suffice);
4. the same statistic on the untrained (step-0) control already lies in the paper's direction -> reproduced only
   if the change from init (trained − init per run and seed, on the claim's scale) passes the same test in the
   paper's direction (p ≤ α), else inconclusive ("holds at init"); a claim that needs a control and has none is
   inconclusive ("no untrained control");
5. otherwise reproduced.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
LEVEL = 0.95  # two-sided level of every interval
N_BOOT = 999
EXACT_MAX = 8  # permutation tests enumerate all n! pairings up to this many points
N_PERM = 20_000
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE)
NAN = float("nan")


# --- intervals of measured scores -------------------------------------------------------------------------
def window_interval(statistic: Callable[[np.ndarray], float], n: int, seed: int = 0,
                    level: float = LEVEL, n_resamples: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(indices)` over n windows resampled with replacement.

    `statistic` receives an int array of window indices (n,) and returns the score computed from those windows'
    per-window sums; (NaN, NaN) with fewer than 2 windows or a degenerate (constant) bootstrap distribution.
    """
    if n < 2:
        return NAN, NAN

    def vectorized(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.moveaxis(np.asarray(idx), axis, -1)
        flat = idx.reshape(-1, idx.shape[-1])
        return np.array([statistic(row.astype(int)) for row in flat]).reshape(idx.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((np.arange(n),), vectorized, vectorized=True, method="percentile",
                              n_resamples=n_resamples, confidence_level=level, rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    dist = res.bootstrap_distribution
    if not (np.isfinite(low) and np.isfinite(high)) and np.isfinite(dist).all() and np.ptp(dist) == 0:
        return float(dist[0]), float(dist[0])  # every resample gives the same score
    return float(low), float(high)


def mean_interval(values: Sequence[float], seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (finite ones); (NaN, NaN) with fewer than 2."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) < 2 or np.all(v == v[0]):
        return (float(v[0]), float(v[0])) if len(v) >= 2 else (NAN, NAN)
    return window_interval(lambda i: float(v[i].mean()), len(v), seed, level)


def se_from_interval(low: float, high: float, level: float = LEVEL) -> float:
    """Standard error implied by a two-sided normal interval (NaN when either end is missing)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return NAN
    return float((high - low) / (2 * stats.norm.ppf(0.5 + level / 2)))


def seed_interval(values: Sequence[float], low: float = NAN, high: float = NAN) -> tuple[float, float, float]:
    """(mean, low, high) of a run's per-seed values: the t interval across ≥ 2 finite seeds, else the one seed's
    own interval (`low`, `high`: its window bootstrap, NaN when it has none)."""
    v = [x for x in values if np.isfinite(x)]
    if not v:
        return NAN, NAN, NAN
    if len(v) == 1:
        return float(v[0]), low, high
    t = mean_test(v, +1)
    return t.stat, t.low, t.high


# --- tests ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Test:
    """A statistic, its two-sided interval, one-sided p-values for and against the paper's direction, n."""

    stat: float
    low: float
    high: float
    p_agree: float
    p_against: float
    n: int
    method: str


def spearman_rho(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman ρ along `axis` (vectorized: Pearson correlation of average ranks); 0 for a constant side."""
    rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    num = (rx * ry).sum(axis=axis)
    den = np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def trend_test(x: Sequence[float], y: Sequence[float], sign: int, seed: int = 0) -> Test:
    """Exact permutation test of Spearman's ρ(x, y) (one-sided each way, paper direction `sign`) and a paired
    bootstrap interval of ρ. Points may repeat an x (seeds of one run)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    rho = float(spearman_rho(x, y))
    exact = n <= EXACT_MAX
    rng = np.random.default_rng(seed)
    kw = {"permutation_type": "pairings", "vectorized": True, "n_resamples": np.inf if exact else N_PERM, "rng": rng}

    def rho_of(y_perm: np.ndarray, axis: int = -1) -> np.ndarray:  # one sample: only y is permuted (n! pairings)
        y_perm = np.moveaxis(y_perm, axis, -1)
        return spearman_rho(np.broadcast_to(x, y_perm.shape), y_perm)

    greater = stats.permutation_test((y,), rho_of, alternative="greater", **kw).pvalue
    less = stats.permutation_test((y,), rho_of, alternative="less", **kw).pvalue
    p_agree, p_against = (greater, less) if sign > 0 else (less, greater)
    low = high = NAN
    if n >= 3 and len(set(x)) > 1:
        ci = stats.bootstrap((x, y), spearman_rho, paired=True, vectorized=True, method="percentile",
                             n_resamples=N_BOOT, rng=np.random.default_rng(seed)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    method = f"exact permutation test of Spearman ρ (n = {n})" if exact else f"permutation test of ρ ({N_PERM} draws)"
    return Test(rho, low, high, float(p_agree), float(p_against), n, method)


def mean_test(values: Sequence[float], sign: int, null: float = 0.0) -> Test:
    """One-sample t-test of the mean of `values` (≥ 2, e.g. one per seed) against `null`, with its t interval."""
    v = np.asarray(values, float)
    if np.all(v == v[0]):  # no spread: the t statistic is undefined; the sign decides with certainty
        p = 0.0 if sign * (v[0] - null) > 0 else 1.0
        q = 0.0 if sign * (v[0] - null) < 0 else 1.0
        return Test(float(v[0]), float(v[0]), float(v[0]), p, q, len(v), "identical values across seeds")
    res = stats.ttest_1samp(v, null)
    low, high = res.confidence_interval(LEVEL)
    greater = stats.ttest_1samp(v, null, alternative="greater").pvalue
    less = stats.ttest_1samp(v, null, alternative="less").pvalue
    p_agree, p_against = (greater, less) if sign > 0 else (less, greater)
    return Test(float(v.mean()), float(low), float(high), float(p_agree), float(p_against), len(v),
                f"one-sample t-test over {len(v)} seeds")


def normal_test(value: float, se: float, sign: int, null: float = 0.0) -> Test:
    """z-test of one estimate with standard error `se` against `null` (se = 0: the sign decides)."""
    if not np.isfinite(se):
        return Test(value, NAN, NAN, NAN, NAN, 1, "no interval")
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    if se == 0:
        d = sign * (value - null)
        return Test(value, value, value, 0.0 if d > 0 else 1.0, 0.0 if d < 0 else 1.0, 1, "exact value (no spread)")
    score = sign * (value - null) / se
    return Test(value, value - z * se, value + z * se, float(stats.norm.sf(score)), float(stats.norm.cdf(score)), 1,
                "z-test from the window/step bootstrap interval (one seed)")


def min_trend_p(n: int) -> float:
    """Smallest one-sided p-value the exact permutation test of ρ can reach with n distinct points: 1/n!."""
    return 1 / math.factorial(n) if n <= 20 else 0.0


# --- the verdict rule -------------------------------------------------------------------------------------
def decide(test: Test | None, missing: str | None = None, floor: str | None = None, needs_control: bool = True,
           init_holds: bool | None = None, beyond: Test | None = None, init_text: str = "") -> tuple[str, str]:
    """(verdict, reason) by the rule of the module docstring.

    `test`: the claim's test on the trained runs; `missing`: why it could not be computed (too few runs, ...);
    `floor`: why the values cannot move (floor); `init_holds`: whether the statistic at step 0 already lies in
    the paper's direction (None = no control); `beyond`: the same test on trained − init.
    """
    if missing:
        return INCONCLUSIVE, missing
    if floor:
        return INCONCLUSIVE, f"floor: {floor}"
    assert test is not None
    if not np.isfinite(test.p_agree):
        return INCONCLUSIVE, f"too few runs for an interval ({test.method})"
    if test.p_against <= ALPHA:
        return CONTRADICTED, f"evidence against the paper's direction: p = {test.p_against:.3g} ({test.method})"
    if test.p_agree > ALPHA:
        note = ""
        if test.method.startswith("exact permutation") and min_trend_p(test.n) > ALPHA:
            note = (f"; {test.n} points cannot reach p ≤ {ALPHA:g} "
                    f"(smallest p = 1/{test.n}! = {min_trend_p(test.n):.3g})")
        return INCONCLUSIVE, f"interval spans the null: p = {test.p_agree:.3g} ({test.method}){note}"
    if not needs_control:
        return REPRODUCED, f"p = {test.p_agree:.3g} ({test.method}); no untrained control applies{init_text}"
    if init_holds is None:
        return INCONCLUSIVE, f"p = {test.p_agree:.3g} but no untrained control was measured"
    if init_holds:
        if beyond is None or not np.isfinite(beyond.p_agree) or beyond.p_agree > ALPHA:
            pb = "–" if beyond is None or not np.isfinite(beyond.p_agree) else f"{beyond.p_agree:.3g}"
            return INCONCLUSIVE, (f"holds at init{init_text}; training did not move it significantly beyond its init "
                                  f"value (p = {pb})")
        return REPRODUCED, (f"p = {test.p_agree:.3g}; holds at init{init_text} but training moved it further "
                            f"(p = {beyond.p_agree:.3g})")
    return REPRODUCED, f"p = {test.p_agree:.3g} ({test.method}); not so at init{init_text}"


def false_positive_rate(n: int, alpha: float = ALPHA) -> float:
    """Chance that a trendless sweep of n distinct points passes the trend test (exact, by enumeration)."""
    import itertools

    x = np.arange(n, dtype=float)
    perms = np.array(list(itertools.permutations(range(n))), dtype=float)
    rhos = spearman_rho(np.broadcast_to(x, perms.shape), perms)
    # p(ρ) = P(ρ_perm ≥ ρ): the fraction of pairings at least as large
    ps = np.array([(rhos >= r - 1e-12).mean() for r in rhos])
    return float((ps <= alpha).mean())
