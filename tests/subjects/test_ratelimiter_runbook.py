"""The rate limiter's runbook against scripted shell replies: it waits for the Sentinels'
failover before restarting a killed primary, and asks a Sentinel to fail over when they
have not (a lost election retries only after twice the failover timeout)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from opeval.agents import Incident
from opeval.sandbox import CommandResult
from opeval.subjects.ratelimiter import _runbook

STATUS_DOWN = "MEMBER     STATE                PID\nredis-1    exited (killed)      -\nredis-2    running              12\n"
STATUS_UP = "MEMBER     STATE                PID\nredis-1    running              13\nredis-2    running              12\n"
TOPOLOGY = ("limiter-1    node      http://127.0.0.1:9001\n"
            "redis-1      redis     127.0.0.1:7001\nredis-2      redis     127.0.0.1:7002\n"
            "sentinel-1   sentinel  127.0.0.1:7101   (master name opeval)\n")


class ScriptedShell:
    """Replies as a cluster whose Sentinels promote redis-2 only once asked to (or never)."""

    def __init__(self, *, sentinels_fail_over: bool) -> None:
        self.commands: list[str] = []
        self.promoted = False
        self.sentinels_fail_over = sentinels_fail_over
        self.started = False

    async def shell(self, command: str) -> CommandResult:
        self.commands.append(command)
        out, code = "", 0
        if command == "nodectl status":
            out = STATUS_UP if self.started else STATUS_DOWN
        elif command == "nodectl start redis-1":
            self.started = True
        elif command == "rlctl topology":
            out = TOPOLOGY
        elif command == "timeout 2 redis-cli ROLE":
            out, code = ("master\n0\n", 0) if self.promoted else ("", 1)
        elif command == "redis-cli -p 7101 SENTINEL FAILOVER opeval":
            self.promoted = self.sentinels_fail_over
            out = "OK" if self.promoted else "(error) NOGOODSLAVE No suitable replica to promote"
        elif command == "redis-cli CONFIG GET maxmemory":
            out = "maxmemory\n0\n"
        return CommandResult(command, code, False, out, "", len(out), 0, False, False, 0.0, 0.0)

    def note(self, text: str) -> None:
        pass


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        await anyio.lowlevel.checkpoint()
    monkeypatch.setattr(_runbook.anyio, "sleep", instant)


def _run(shell: ScriptedShell) -> Any:
    incident = Incident(alert="redis-1 is down", subject="ratelimiter", members=["redis-1", "redis-2"], tools=[])
    return anyio.run(_runbook.run_runbook, incident, shell, 20)


def test_a_sentinel_is_asked_to_fail_over_before_the_killed_primary_is_restarted(no_waiting: None) -> None:
    shell = ScriptedShell(sentinels_fail_over=True)
    _run(shell)
    failover = shell.commands.index("redis-cli -p 7101 SENTINEL FAILOVER opeval")
    assert failover < shell.commands.index("nodectl start redis-1")
    assert shell.commands[failover + 1] == "timeout 2 redis-cli ROLE"  # then it checks the promotion took
    assert shell.commands.count("redis-cli -p 7101 SENTINEL FAILOVER opeval") == 1


def test_the_wait_for_a_primary_is_bounded_when_no_failover_comes(no_waiting: None) -> None:
    shell = ScriptedShell(sentinels_fail_over=False)
    _run(shell)
    assert "nodectl start redis-1" in shell.commands  # restarted after the bounded wait, not never
    waited = shell.commands[:shell.commands.index("nodectl start redis-1")].count("timeout 2 redis-cli ROLE")
    assert 3 <= waited <= 10


@pytest.mark.parametrize("sentinels_fail_over", [True, False])
def test_the_primary_is_never_asked_without_a_timeout_before_the_repair(no_waiting: None,
                                                                       sentinels_fail_over: bool) -> None:
    """Until the down Redis is back, the primary the Sentinels name may be a paused one: it
    accepts the connection and never answers, so every question to it is bounded (a trial
    once spent the whole trial in a bare ``redis-cli INFO replication``)."""
    shell = ScriptedShell(sentinels_fail_over=sentinels_fail_over)
    _run(shell)
    before = shell.commands[:shell.commands.index("nodectl start redis-1")]
    to_primary = [c for c in before if "redis-cli" in c and " -p " not in c]
    assert to_primary and all(c.startswith("timeout ") for c in to_primary), to_primary
