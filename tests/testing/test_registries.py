"""Plugins are found by entry point: every built-in is one, and one that fails to load is
named in a clear error rather than a traceback."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from opeval._plugins import Registry
from opeval.agents import AGENTS
from opeval.chaos import CHAOS
from opeval.errors import UsageError
from opeval.runtimes import RUNTIMES
from opeval.subjects import SUBJECTS


@pytest.mark.parametrize("registry", [SUBJECTS, RUNTIMES, CHAOS, AGENTS], ids=lambda r: r.group)
def test_every_built_in_is_an_entry_point_of_its_group(registry: Registry[object]) -> None:
    declared = {ep.name: ep.load() for ep in entry_points(group=registry.group)}
    built_in = registry._code
    assert built_in, "no built-ins registered"
    assert {n: declared.get(n) for n in built_in} == built_in


def test_an_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UsageError, match=r"unknown chaos kind 'nope': choose one of .*node_kill.*none"):
        CHAOS.get("nope")


def test_a_plugin_registered_for_a_block_is_gone_after_it() -> None:
    with CHAOS.registered("temporary", object):
        assert "temporary" in CHAOS.names()
    assert "temporary" not in CHAOS.names()
    with pytest.raises(UsageError):
        CHAOS.get("temporary")
