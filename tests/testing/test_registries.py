"""Plugins are found by entry point: every built-in is one, and one that fails to load is
named in a clear error rather than a traceback."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

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


def test_a_broken_plugin_is_named_when_asked_for_and_hides_no_other(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "broken_kinds-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-kinds\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[opeval.chaos]\naaa_broken = no_such_module:Kind\n"
                                           "zzz_fine = opeval.chaos:NodeKill\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    CHAOS.reload()
    try:
        for _ in range(2):  # the same answers every time: nothing is half-cached
            assert CHAOS.get("zzz_fine").kind == "node_kill"
            with pytest.raises(UsageError, match=r"the chaos kind plugin 'aaa_broken' cannot be loaded "
                                                 r"\(no_such_module:Kind: ModuleNotFoundError"):
                CHAOS.get("aaa_broken")
        assert "zzz_fine" in CHAOS.names() and "aaa_broken" not in CHAOS.names()
    finally:
        monkeypatch.undo()
        CHAOS.reload()
