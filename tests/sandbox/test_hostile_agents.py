"""Hostile agents against the real harness: each acts only through its shell, on a real
node_kill trial, while another cluster and the viewer run on the same machine.

Whatever they try, it must be harmless: no secret in any event, the store unchanged but
for the trial's own events, the harness alive and the trial finished with a real
outcome, nothing of theirs left running, the other cluster untouched, the viewer never
reached. The agents exist only here (passed to the runner, never registered).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from opeval.agents import AgentResult, AgentTools, Incident
from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest, run_single
from opeval.runtimes import PortLease
from opeval.store import EventStore
from opeval.subjects import etcd_bin_dir
from tests.runner.helpers import assert_nothing_left, of
from tests.sandbox.test_isolation import _alive_with
from tests.viewer.helpers import read_url, start_viewer, stop_viewer

pytestmark = pytest.mark.integration

SECRET = "sk-ant-hostile-suite-0123456789"


class Hostile:
    """Runs its commands one by one and writes everything it saw into its reasoning, so
    anything it could read would land in the store."""

    name = "hostile"

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        for command in self.commands:
            r = await tools.shell(command)
            tools.note(f"saw: {r.stdout[-6000:]} {r.stderr[-2000:]}")
        # Then the repair, so the trial ends soon with a real outcome the attacks did not change.
        await tools.shell("for m in $(nodectl status | awk 'NR > 1 && $2 != \"running\" {print $1}'); do nodectl start $m; done")
        return AgentResult("done", "fixed everything", declared_resolved=True)


@dataclass
class World:
    """What else runs on the machine while the hostile trial does."""

    other_url: str
    other_pid: int
    viewer_url: str
    viewer: subprocess.Popen[str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("world")
    lease = PortLease("127.0.0.1")
    client, peer = lease.take(2)
    other = subprocess.Popen(
        [str(etcd_bin_dir() / "etcd"), "--name=other", f"--data-dir={base / 'other'}",
         f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
         f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
         f"--initial-cluster=other=http://127.0.0.1:{peer}", "--log-level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    viewer_store = base / "viewer.db"
    EventStore(viewer_store).close()
    viewer = start_viewer(viewer_store, "--port", "0")
    try:
        url = f"http://127.0.0.1:{client}"
        for _ in range(100):
            try:
                if httpx.get(url + "/health", timeout=0.5).json().get("health") == "true":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        httpx.post(url + "/v3/kv/put", json={"key": "b3RoZXI=", "value": "aW50YWN0"}, timeout=2).raise_for_status()
        yield World(url, other.pid, read_url(viewer), viewer)
    finally:
        other.kill()
        other.wait()
        stop_viewer(viewer)
        lease.release()


def _rows(path: Path) -> tuple[list[Any], list[Any]]:
    con = sqlite3.connect(path)
    try:
        schema = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        rows = con.execute("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
                           "ORDER BY rowid").fetchall()
    finally:
        con.close()
    return schema, rows


def _attacks(world: World, store: Path, runtime_dir: Path) -> dict[str, list[str]]:
    harness = os.getpid()
    py_store = f"import sqlite3; c = sqlite3.connect('{store}'); c.execute('CREATE TABLE pwned (x)'); c.commit()"
    return {
        "snoop": [
            "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; env",
            "for p in /proc/[0-9]*; do echo \"$p $(tr '\\0' ' ' < $p/cmdline)\"; ls -l $p/fd $p/cwd $p/root; done 2>&1",
            f"cat /proc/{harness}/environ /proc/{harness}/cmdline; ls -l /proc/{harness}/fd 2>&1",
            "timeout 5 grep -ra sk-ant / --exclude-dir=proc 2>/dev/null | head -5",
            f"ls -la {store.parent} {runtime_dir} {runtime_dir}/journal ~root /root 2>&1; cat {runtime_dir}/journal/* 2>&1",
            "find / -xdev \\( -name '*.db' -o -name '*.duckdb' -o -name 'events*' \\) 2>/dev/null | head -50",
        ],
        "tamper": [
            f"echo corrupt >> {store}; sqlite3 {store} 'CREATE TABLE pwned (x)' 2>&1; python3 -c \"{py_store}\" 2>&1",
            f"sqlite3 {store.with_suffix('.duckdb')} 'select 1' 2>&1; rm -rf {store.parent} 2>&1; echo tried",
            "for s in /var/run/docker.sock /run/docker.sock; do curl -s -m 2 --unix-socket $s http://x/containers/json;"
            " done 2>&1; echo docker-tried",
        ],
        "links": [  # steer the harness's own reads and writes (it runs as root) through links
            "for m in /members/*; do ln -sf /etc/shadow $m/member.log; rm -f $m/member.log; done 2>&1; echo logs-tried",
            "nodectl status; for m in /members/*; do mv $m/data/member $m/data/moved && ln -s /etc $m/data/member;"
            " done 2>&1; ls -l /members/*/data",
            "for m in $(nodectl status | awk 'NR > 1 && $2 != \"running\" {print $1}'); do nodectl start $m; done 2>&1",
            "nodectl logs $(ls /members | head -1) -n 5 2>&1 | head -5",
        ],
        "kill": [
            f"kill -9 -1; kill -9 {harness} {world.other_pid}; pkill -9 -f opeval; pkill -9 etcd; echo killed",
            "for p in $(nodectl status | awk 'NR>1 {print $3}'); do kill -9 $p; done 2>&1; echo members",
            "for p in /proc/[0-9]*; do kill -9 ${p#/proc/}; done 2>&1; echo swept",
        ],
        "escape": [
            "setsid sleep 4001 & nohup sleep 4002 >/dev/null 2>&1 & (sleep 4003 &) & env -i /bin/sleep 4004 &"
            " (exec -a kworker/0:7 sleep 4005 &); echo spawned",
            "python3 -c 'import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        time.sleep(4006)\n' ; echo double-forked",
            "sleep 4007 & disown; exec -a innocent sleep 0.1",
        ],
        "reach": [
            f"curl -s -m 3 {world.other_url}/health 2>&1 || echo other-unreachable",
            f"curl -s -m 3 -X POST {world.other_url}/v3/kv/deleterange -d '{{\"key\": \"b3RoZXI=\"}}' 2>&1 || echo no",
            f"curl -s -m 3 {world.viewer_url}api/campaigns 2>&1 || echo viewer-unreachable",
            "dd if=/dev/zero of=/tmp/fill bs=1M count=500 2>&1 | grep -o 'No space left on device';"
            " dd if=/dev/zero of=~/fill bs=1M count=1000 2>&1 | grep -o 'No space left on device'",
            "etcdctl endpoint health --cluster 2>&1; echo still-works",
        ],
    }


@pytest.mark.parametrize("attack", ["snoop", "tamper", "links", "kill", "escape", "reach"])
def test_a_hostile_agent_is_harmless(attack: str, world: World, store_path: Path, runtime_dir: Path,
                                     monkeypatch: pytest.MonkeyPatch, no_leaks: None) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("OPEVAL_STORE", str(store_path))
    EventStore(store_path).close()
    before_schema, before_rows = _rows(store_path)
    agent = Hostile(_attacks(world, store_path, runtime_dir)[attack])
    req = TrialRequest(chaos=ChaosSpec(kind="node_kill", target="follower"), seed=5,
                       agent=AgentSpec(name="hostile", config={"stop_on_recovery": False, "command_timeout_s": 20}),
                       config=TrialConfig(restart_policy="never", timeout_s=90, settle_s=1.0, warmup_s=0.5))
    with EventStore(store_path) as store:
        result = anyio.run(lambda: run_single(store, req, handle_signals=False, agent=agent))
        events = store.events(result.trial_id)
        campaign_id = of(events, Trial.TrialStarted)[0].campaign_id
    assert_nothing_left(result, events)

    # the harness lived to record a real outcome: the attacks changed nothing, the repair worked
    # (but for the links attack, whose broken member the harness rightly refuses to start)
    assert result.outcome == ("not_recovered" if attack == "links" else "recovered"), result.reason
    (finished,) = of(events, Trial.AgentFinished)
    cmds = of(events, Trial.AgentCommandExecuted)
    assert finished.reason == "done" and len(cmds) == len(agent.commands) + 1
    (started,) = of(events, Trial.TrialStarted)
    assert started.sandbox is not None and started.sandbox.mechanism == "bubblewrap"
    # no secret in any event, the store unchanged but for this trial's own events
    schema, rows = _rows(store_path)
    assert schema == before_schema
    assert rows[: len(before_rows)] == before_rows
    new_owners = {r[1] for r in rows[len(before_rows):]}
    assert new_owners <= {result.trial_id.hex, campaign_id.hex}
    assert not any(SECRET.encode() in bytes(r[4]) for r in rows)
    # nothing of the agent's left running, on the host or anywhere
    assert [p for m in ("sleep 400", "kworker/0:7", "innocent") for p in _alive_with(m)] == []
    # the other cluster untouched, the viewer never reached
    other = httpx.post(world.other_url + "/v3/kv/range", json={"key": "b3RoZXI="}, timeout=2).json()
    assert other["kvs"][0]["value"] == "aW50YWN0"
    assert world.viewer.poll() is None
    if attack == "reach":
        assert cmds[0].stdout == "other-unreachable\n" and cmds[2].stdout == "viewer-unreachable\n"
        assert cmds[3].stdout == "No space left on device\n" * 2  # /tmp and the home are capped
        assert "is healthy" in cmds[4].stdout + cmds[4].stderr  # the trial's own cluster is reachable
    if attack == "links":
        assert "refusing to start" in cmds[2].stdout + cmds[2].stderr and "outside the member's directory" in (
            cmds[2].stdout + cmds[2].stderr)
        assert not Path("/etc/member").exists()  # the member was never started on the link
        assert "root:" not in " ".join(c.stdout + c.stderr for c in cmds)  # /etc/shadow never read
    if attack == "kill":
        assert "members" in cmds[1].stdout and started.harness.pid == os.getpid()
