"""Confidence intervals for one group of trials (comparisons between groups use the
projections' bootstrap): Wilson for rates, Student's t for means."""

from __future__ import annotations

import math
import statistics

from opeval.viewer._models import Interval

_Z = 1.959964
# Two-sided 95 % quantiles of Student's t for small samples; beyond 30 degrees of
# freedom the Cornish-Fisher expansion below is within 0.002 of the exact value.
_T = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
      2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
      2.045, 2.042)


def t_quantile(df: int) -> float:
    """The 97.5th percentile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("t needs at least one degree of freedom")
    if df <= len(_T):
        return _T[df - 1]
    return _Z + (_Z**3 + _Z) / (4 * df) + (5 * _Z**5 + 16 * _Z**3 + 3 * _Z) / (96 * df**2)


def wilson(successes: int, n: int) -> Interval | None:
    """95 % Wilson score interval of a proportion (sound at 0 % and 100 % too)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + _Z**2 / n
    centre = (p + _Z**2 / (2 * n)) / denom
    half = _Z * math.sqrt(p * (1 - p) / n + _Z**2 / (4 * n * n)) / denom
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: list[float]) -> Interval | None:
    """95 % t interval of the mean; None below two values."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean - half, mean + half)
