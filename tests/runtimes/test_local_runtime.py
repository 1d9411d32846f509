"""The local runtime on real processes: supervision, restart policies, teardown, journal."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import msgspec
import pytest

from opeval.runtimes import Journal, LocalRuntime, MemberEvent, MemberSpec, RestartPolicy, start_ticks
from opeval.runtimes._journal import JournalEntry, reap_orphans

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def spec(ws: Path, name: str) -> MemberSpec:
    return MemberSpec(name=name, argv=SLEEPER, env={"PATH": os.environ["PATH"]}, cwd=str(ws), log_path=str(ws / f"{name}.log"))


async def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("policy", ["on-failure", "never"])
def test_a_killed_member_is_restarted_only_on_failure_policy(policy: str, tmp_path: Path, runtime_dir: Path) -> None:
    events: list[MemberEvent] = []
    pids: list[int] = []

    async def main() -> None:
        journal = Journal("t" * 32, tmp_path / "store.db")
        rt = LocalRuntime(trial_id="t" * 32, workspace=runtime_dir / "trials" / "t", journal=journal,
                          restart_policy=RestartPolicy.parse(policy), on_event=events.append)
        async with rt.session():
            pid = await rt.start_member(spec(rt.workspace, "m1"))
            pids.append(pid)
            rt.signal_member("m1", signal.SIGKILL)
            await wait_for(lambda: any(e.kind == "exited" for e in events))
            if policy == "on-failure":
                await wait_for(lambda: rt.is_running("m1") and rt.pid("m1") != pid)
                pids.append(rt.pid("m1"))  # type: ignore[arg-type]
                entry = msgspec.json.decode(journal.path.read_bytes(), type=JournalEntry)
                assert entry.processes["m1"].pid == pids[-1]  # the journal follows restarts
            else:
                await anyio.sleep(0.5)  # longer than the first backoff
                assert not rt.is_running("m1")
        assert not journal.path.exists()

    anyio.run(main)
    kinds = [(e.kind, e.signal) for e in events]
    assert kinds[:2] == [("started", None), ("exited", signal.SIGKILL)]
    assert len(pids) == (2 if policy == "on-failure" else 1)
    assert all(start_ticks(p) is None for p in pids)  # nothing survives the session
    assert not (runtime_dir / "trials" / "t").exists()


def test_an_operator_stop_is_not_restarted(tmp_path: Path, runtime_dir: Path) -> None:
    async def main() -> None:
        rt = LocalRuntime(trial_id="s" * 32, workspace=runtime_dir / "trials" / "s",
                          journal=Journal("s" * 32, tmp_path / "s.db"), restart_policy=RestartPolicy.parse("on-failure"))
        async with rt.session():
            await rt.start_member(spec(rt.workspace, "m1"))
            await rt.stop_member("m1")
            await anyio.sleep(0.4)
            assert not rt.is_running("m1")
            await rt.start_member(spec(rt.workspace, "m1"), reason="operator")
            assert rt.is_running("m1")

    anyio.run(main)


def test_teardown_happens_even_when_the_block_fails(tmp_path: Path, runtime_dir: Path) -> None:
    pids: list[int] = []

    async def main() -> None:
        rt = LocalRuntime(trial_id="f" * 32, workspace=runtime_dir / "trials" / "f",
                          journal=Journal("f" * 32, tmp_path / "f.db"), restart_policy=RestartPolicy.parse("on-failure"))
        async with rt.session():
            pids.append(await rt.start_member(spec(rt.workspace, "a")))
            pids.append(await rt.start_member(spec(rt.workspace, "b")))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        anyio.run(main)
    assert all(start_ticks(p) is None for p in pids)
    assert list((runtime_dir / "journal").glob("*")) == []


def test_ports_are_not_handed_out_twice(runtime_dir: Path) -> None:
    from opeval.runtimes import PortLease

    a, b = PortLease(), PortLease()
    try:
        pa, pb = set(a.take(20)), set(b.take(20))
        assert len(pa) == 20 and len(pb) == 20 and not pa & pb
    finally:
        a.release()
        b.release()


def test_reaping_finds_the_journaled_processes_of_a_dead_harness(tmp_path: Path, runtime_dir: Path) -> None:
    # A harness that died: its journal names a live process group and a workspace.
    import subprocess

    ws = runtime_dir / "trials" / "d"
    ws.mkdir(parents=True)
    child = subprocess.Popen(SLEEPER, start_new_session=True, env={**os.environ, "OPEVAL_TRIAL_ID": "d" * 32})
    unjournaled = subprocess.Popen(SLEEPER, start_new_session=True, env={**os.environ, "OPEVAL_TRIAL_ID": "d" * 32})
    journal = Journal("d" * 32, tmp_path / "d.db")
    journal.set_workspace(ws)
    journal.add_process("m1", child.pid, child.pid)
    journal.entry.harness_pid, journal.entry.harness_start_ticks = 999999999, 1  # nobody
    journal._write()
    try:
        (report,) = reap_orphans()
        assert sorted(report.killed) == sorted([child.pid, unjournaled.pid])
        assert child.wait(5) == -signal.SIGKILL and unjournaled.wait(5) == -signal.SIGKILL
        assert not ws.exists() and not journal.path.exists()
    finally:
        for p in (child, unjournaled):
            if p.poll() is None:
                p.kill()


def test_a_live_harness_is_never_reaped(tmp_path: Path) -> None:
    journal = Journal("l" * 32, tmp_path / "l.db")  # this very process: alive
    try:
        assert reap_orphans() == []
        assert journal.path.exists()
    finally:
        journal.close()
