"""One declaration per parameter: the README's tables are the declarations, and every
declared parameter is checked the same way wherever it is given."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from opeval.chaos import CHAOS
from opeval.params import (
    DURATION,
    TRIAL_SETTINGS,
    Param,
    ParamError,
    chaos_params_markdown,
    check_params,
    trial_settings_markdown,
)

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_readme_shows_every_declared_parameter() -> None:
    assert chaos_params_markdown() in README
    assert trial_settings_markdown() in README


def test_every_trial_setting_is_declared_with_its_default() -> None:
    from opeval.events import TrialConfig

    assert [p.name for p in TRIAL_SETTINGS] == list(TrialConfig.__struct_fields__)
    defaults = TrialConfig()
    for p in TRIAL_SETTINGS:
        assert p.check(getattr(defaults, p.name)) == getattr(defaults, p.name), p.name  # defaults are in range


@pytest.mark.parametrize("kind", CHAOS.names())
def test_every_chaos_parameter_has_help_and_a_default_in_range(kind: str) -> None:
    for p in CHAOS.get(kind)().params:
        assert p.help and p.type in (int, float, str, bool)
        if p.default is not None:
            assert p.check(p.default) == p.default


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "3", None, [1], 2**70, 0, -1])
def test_a_number_is_finite_in_range_and_a_number(value: object) -> None:
    with pytest.raises(ParamError, match="duration_s must be a number > 0"):
        check_params((DURATION,), {"duration_s": value}, "pause")


def test_whole_numbers_for_a_decimal_become_decimals_and_the_range_is_inclusive() -> None:
    p = Param("x", float, "x", low=1, high=2)
    assert check_params((p,), {"x": 2}, "k") == {"x": 2.0} and isinstance(check_params((p,), {"x": 1}, "k")["x"], float)
    with pytest.raises(ParamError, match="must be a number >= 1 and <= 2, not 2.5"):
        p.check(2.5)


def test_an_unknown_name_lists_the_allowed_and_suggests_the_nearest() -> None:
    with pytest.raises(ParamError) as e:
        check_params((DURATION,), {"duraton_s": 5}, "pause")
    assert str(e.value) == ("pause: unknown parameter 'duraton_s' (allowed: duration_s); did you mean 'duration_s'?")
    with pytest.raises(ParamError, match=r"\(allowed: duration_s\)$"):
        check_params((DURATION,), {"colour": 5}, "pause")
