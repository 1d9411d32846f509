"""The one definition of every interval: bounded by the quantity's range, sound for small samples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opeval.projections._intervals import difference_interval, mean_interval, rate_interval

_scores = st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=2, max_size=40)


def test_a_rate_is_wilsons_and_inside_zero_and_one() -> None:
    assert rate_interval(0, 0) is None
    low, high = rate_interval(8, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    low, high = rate_interval(10, 10)  # type: ignore[misc]
    assert high == 1.0 and 0.6 < low < 0.75
    low, high = rate_interval(0, 3)  # type: ignore[misc]
    assert low == 0.0 and 0 < high < 1


def test_two_scores_give_an_interval_inside_a_scores_range() -> None:
    # Student's t gives [-368.18, 496.21] for these two: outside what a score can be.
    low, high = mean_interval([30.0, 98.0])  # type: ignore[misc]
    assert 30.0 <= low < high <= 98.0
    assert mean_interval([50.0]) is None and mean_interval([]) is None
    assert mean_interval([7.0, 7.0, 7.0]) == (7.0, 7.0)


@settings(max_examples=60, deadline=None)
@given(values=_scores)
def test_a_mean_interval_never_leaves_the_values_range_and_holds_the_mean(values: list[float]) -> None:
    low, high = mean_interval(values)  # type: ignore[misc]
    mean = sum(values) / len(values)
    assert min(values) <= low <= high <= max(values)
    assert low <= mean + 1e-9 and mean - 1e-9 <= high


@settings(max_examples=40, deadline=None)
@given(a=_scores, b=_scores)
def test_a_difference_interval_is_bounded_and_the_same_for_the_same_data(a: list[float], b: list[float]) -> None:
    ci = difference_interval(a, b, paired=False)
    assert ci is not None and -100 <= ci[0] <= ci[1] <= 100
    assert difference_interval(a, b, paired=False) == ci  # a fixed seed: no run-to-run jitter
    n = min(len(a), len(b))
    paired = difference_interval(a[:n], b[:n], paired=True)
    diffs = [y - x for x, y in zip(a[:n], b[:n], strict=True)]
    assert paired is not None and min(diffs) - 1e-9 <= paired[0] <= paired[1] <= max(diffs) + 1e-9


def test_paired_samples_must_pair_up() -> None:
    with pytest.raises(ValueError, match="same length"):
        difference_interval([1.0, 2.0], [1.0, 2.0, 3.0], paired=True)
    assert difference_interval([1.0], [2.0, 3.0], paired=False) is None
