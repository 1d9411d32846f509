"""Every confidence interval opeval shows, defined once (95 %, through ``scipy.stats``).

- A rate (recovery rate, a share of trials): the Wilson score interval, sound at 0 % and
  100 % and for a handful of trials, and always inside [0, 1].
- A mean (composite score, time to recover, ...) and a difference of two groups' means:
  the percentile bootstrap, 2,000 resamples with a fixed seed (the same data always get
  the same interval). A resampled mean never leaves the range of the values, so the
  interval stays inside the quantity's own range (a score's [0, 100]) however few the
  trials; a Student's t interval does not (two scores, 30 and 98, give [-368, 496]).

None where an interval means nothing: no trials, or fewer than two values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0


def rate_interval(successes: int, n: int) -> tuple[float, float] | None:
    """Wilson score interval of ``successes`` out of ``n``."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=LEVEL, method="wilson")
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))


def _bootstrap(samples: tuple[np.ndarray, ...], statistic: object, *, paired: bool) -> tuple[float, float]:
    from scipy.stats import bootstrap

    res = bootstrap(samples, statistic, n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile",
                    paired=paired, vectorized=True, rng=np.random.default_rng(SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def mean_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """Bootstrap interval of the mean of ``values``; inside [min, max] of them."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return None
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    low, high = _bootstrap((v,), _mean, paired=False)
    return max(low, float(v.min())), min(high, float(v.max()))


def difference_interval(a: Sequence[float], b: Sequence[float], *, paired: bool) -> tuple[float, float] | None:
    """Bootstrap interval of mean(b) - mean(a); ``paired``: ``a[i]`` and ``b[i]`` belong
    together (same chaos, target and seed) and are resampled together."""
    av, bv = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired and len(av) != len(bv):
        raise ValueError("paired samples must have the same length")
    if len(av) < 2 or len(bv) < 2:
        return None
    d = bv - av if paired else None
    if d is not None and np.all(d == d[0]):
        return float(d[0]), float(d[0])
    if d is None and np.all(av == av[0]) and np.all(bv == bv[0]):
        return float(bv[0] - av[0]), float(bv[0] - av[0])
    return _bootstrap((av, bv), _mean_difference, paired=paired)
