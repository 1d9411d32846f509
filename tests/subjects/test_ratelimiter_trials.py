"""Rate-limiter trials on real Redis, Sentinels and limiter nodes: the baseline shows
Sentinel's own failover, the runbook repairs what it should, over-admission is measured,
and nothing is left running."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest
from opeval.testing import run_one_trial
from opeval.viewer import create_app
from tests.conftest import labelled_processes
from tests.opeval_cli import opeval

pytestmark = pytest.mark.integration


def _trial(tmp_path: Path, kind: str, target: str, agent: str, *, policy: str = "never", timeout_s: float = 20.0,
           rate_hz: float = 50.0) -> tuple[Any, list[Any]]:
    req = TrialRequest(subject="ratelimiter", chaos=ChaosSpec(kind=kind, target=target), agent=AgentSpec(name=agent),
                       sandbox="none", seed=11,
                       config=TrialConfig(restart_policy=policy, timeout_s=timeout_s, settle_s=1.0, warmup_s=1.0,
                                          workload_rate_hz=rate_hz))
    result, events = run_one_trial(tmp_path / "events.db", req)
    assert labelled_processes(result.trial_id.hex) == [], "members left running"
    return result, events


def _one(events: list[Any], cls: type) -> Any:
    return next(e for e in events if isinstance(e, cls))


def _commands(events: list[Any]) -> list[str]:
    return [e.command for e in events if isinstance(e, Trial.AgentCommandExecuted)]


def test_the_baseline_shows_sentinels_own_failover(tmp_path: Path) -> None:
    # Long enough for a second election: a lost one is retried after twice the failover timeout (2 x 4 s).
    result, events = _trial(tmp_path, "node_kill", "leader", "none", timeout_s=14.0)
    leaders = [e.state.leader for e in events if isinstance(e, Trial.StateSnapshot)]
    assert leaders[0] == "redis-1" and leaders[-1] == "redis-2", leaders  # promoted by the Sentinels, no agent
    assert not any(isinstance(e, Trial.AgentStarted) for e in events)
    final = [e for e in events if isinstance(e, Trial.StateSnapshot)][-1].state
    assert all(m.healthy for m in final.members if m.role == "limiter"), "the nodes followed the failover"
    assert result.outcome == "not_recovered" and "redis-1 unreachable" in result.reason  # nobody restarted it
    after = _one(events, Trial.DataSafetyChecked)
    assert after.acknowledged > 0 and after.error is None


def test_the_runbook_brings_a_killed_primary_back_as_a_replica(tmp_path: Path) -> None:
    result, events = _trial(tmp_path, "node_kill", "leader", "runbook")
    commands = _commands(events)
    assert "nodectl start redis-1" in commands
    # recovered, unless the failover itself cost counters (async replication): then that is the reason
    assert any(isinstance(e, Trial.RecoveryDetected) for e in events), result.reason
    assert result.outcome == "recovered", result.reason  # over-admission is shown, not a failed repair
    final = [e for e in events if isinstance(e, Trial.StateSnapshot)][-1].state
    assert {m.name: m.role for m in final.members if m.name.startswith("redis")} == \
        {"redis-1": "replica", "redis-2": "primary"}


def test_the_runbook_puts_a_drifted_node_back_on_the_configured_limit(tmp_path: Path) -> None:
    result, events = _trial(tmp_path, "config_drift", "random", "runbook")
    drifted = _one(events, Trial.ChaosVerified).observations["member"]
    assert f"rlctl limits set {drifted} 20" in _commands(events)
    assert result.outcome == "recovered", result.reason


@pytest.mark.parametrize(("kind", "target", "repair"), [
    pytest.param("pause", "limiter-2", "nodectl restart limiter-2", id="pause-a-node"),
    pytest.param("pause", "leader", "nodectl restart redis-1", id="pause-the-primary"),
    pytest.param("memory_pressure", "leader", "redis-cli CONFIG SET maxmemory 0", id="memory_pressure"),
])
def test_the_runbook_repairs_a_fault_it_has_a_step_for(kind: str, target: str, repair: str, tmp_path: Path) -> None:
    """The runbook's other documented repairs, each on its fault: a paused member restarted,
    a memory cap that evicts counters lifted. The trial recovers only once the repair is done."""
    result, events = _trial(tmp_path, kind, target, "runbook")
    commands = _commands(events)
    assert repair in commands, commands
    assert result.outcome == "recovered", result.reason
    (recovered,) = [e for e in events if isinstance(e, Trial.RecoveryDetected)]
    repaired = next(e for e in events if isinstance(e, Trial.AgentCommandExecuted) and e.command == repair)
    assert recovered.criteria_met_offset_s > repaired.started_offset_s  # after the repair, not before it


def test_over_admission_is_measured_while_a_node_runs_a_wrong_limit(tmp_path: Path) -> None:
    result, events = _trial(tmp_path, "config_drift", "random", "none", timeout_s=6.0, rate_hz=80.0)
    safety = _one(events, Trial.DataSafetyChecked)
    assert safety.missing > 0, "a node admitting three times the limit must over-admit on the busy key"
    assert any("admitted beyond 20 per 1s" in s for s in safety.sample_missing)
    assert result.outcome == "not_recovered"  # nobody fixed the drift
    assert any("ghost allowing" in s or "counter drift" in s for s in _one(events, Trial.FaultDetected).symptoms) \
        or "limit 60, not 20" in result.reason
    _shown_in_the_limiters_words(tmp_path / "events.db", result.trial_id.hex, safety.missing)


#: The key-value workload's words, which a rate-limiter trial's screens must not use (a
#: model's cache writes are no workload's).
ETCD_WORDS = re.compile(r"acknowledged writes|lost writes|DATA LOSS|missing keys|\betcd|\b(writes|reads) \d"
                        r"|health and leader")


def _shown_in_the_limiters_words(store: Path, trial: str, over: int) -> None:
    """``opeval show``, ``analyze`` and the trial page say what was over-admitted, in the
    rate limiter's words and none of etcd's."""
    def cli(*args: str) -> str:
        return opeval(*args, "--store", str(store), columns=250, check=True).stdout

    shown = cli("show", trial)
    assert "LIMIT BROKEN" in shown and f"{over} over-admitted" in shown, shown
    analyzed = cli("analyze", trial)
    with TestClient(create_app(store)) as client:
        page = client.get(f"/trials/{trial}")
    assert page.status_code == 200
    assert "LIMIT BROKEN" in page.text and "over-admitted" in page.text
    for screen, text in (("show", shown), ("analyze", analyzed), ("the trial page", page.text)):
        assert not ETCD_WORDS.search(text), (screen, [m.group(0) for m in ETCD_WORDS.finditer(text)])
