"""The sandbox on real processes: what an agent's command can see, reach and leave behind.

Each test runs real commands under bubblewrap, as an agent would, and checks the
boundary from the harness's side.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from opeval.runtimes._proc import start_ticks
from opeval.sandbox import OPERATOR_UID, check_mechanism
from tests.conftest import labelled_processes
from tests.sandbox.helpers import run_isolated, tcp_server

LABEL = "c" * 32


def _alive_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmd and start_ticks(int(entry.name)) is not None:
                found.append(int(entry.name))
    return found


def test_a_command_runs_as_an_unprivileged_user_with_no_capabilities(tmp_path: Path) -> None:
    (r,) = run_isolated(tmp_path, ["id -u; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; cat /proc/self/status | grep NoNewPrivs"])
    lines = r.stdout.split("\n")
    assert lines[0] == str(OPERATOR_UID)
    assert all(line.split()[1] == "0000000000000000" for line in lines[1:4]), r.stdout
    assert "NoNewPrivs:\t1" in r.stdout


def test_it_sees_only_its_own_processes_and_cannot_signal_the_harness(tmp_path: Path) -> None:
    me = os.getpid()
    (ps, kill) = run_isolated(tmp_path, [
        "ps -eo pid,user,comm --no-headers",
        f"kill -9 {me}; kill -9 -1; kill -9 1; echo done",
    ])
    rows = [line.split() for line in ps.stdout.splitlines()]
    # bwrap's reaper (PID 1, not ours to signal) and the command's own processes: nothing else
    assert {r[2] for r in rows} <= {"bwrap", "bash", "ps"}, ps.stdout
    assert all(int(r[0]) < 100 for r in rows)  # pids of its own namespace, not the host's
    assert kill.stdout.strip() == "done"
    assert start_ticks(me) is not None  # the harness (this process) lives


def test_it_cannot_read_the_harness_environment_or_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-isolation-secret")
    store = tmp_path / "store" / "events.db"
    store.parent.mkdir()
    store.write_text("the store")
    (r,) = run_isolated(tmp_path, [
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat /proc/*/cmdline 2>/dev/null; ls -l /proc/*/fd 2>/dev/null;"
        f" cat {store} 2>&1; ls {store.parent} 2>&1; ls /root ~root 2>&1;"
        " for s in /var/run/docker.sock /run/docker.sock; do test -e $s && echo DOCKER-REACHABLE; done; env",
    ])
    text = r.stdout + r.stderr
    assert "sk-ant-isolation-secret" not in text
    assert "the store" not in text
    assert "No such file or directory" in text  # the store's directory is not there at all
    assert "DOCKER-REACHABLE" not in r.stdout.replace("&& echo DOCKER-REACHABLE", "")


def test_a_store_under_a_system_directory_is_masked(tmp_path: Path) -> None:
    etc_store = Path("/etc/opeval-test-store.db")
    etc_store.write_text("secret rows")
    try:
        (r,) = run_isolated(tmp_path, [f"cat {etc_store}; echo tampered > {etc_store}"], secrets=[etc_store])
    finally:
        content = etc_store.read_text()
        etc_store.unlink()
    assert "secret rows" not in r.stdout
    assert content == "secret rows"


def test_nothing_it_starts_outlives_its_command(tmp_path: Path) -> None:
    t = time.monotonic()
    run_isolated(tmp_path, [
        "setsid sleep 3001 & nohup sleep 3002 >/dev/null 2>&1 & (sleep 3003 &) & env -i /bin/sleep 3004 &"
        " (exec -a kworker sleep 3005 &) ; bash -c 'sleep 3006 & disown'; echo spawned",
        "sleep 3007 & exec sleep 0.1",
    ], label=LABEL)
    assert time.monotonic() - t < 10
    assert _alive_with("sleep 300") == [] and _alive_with("kworker") == []
    assert labelled_processes(LABEL) == []


def test_only_the_forwarded_endpoints_are_reachable(tmp_path: Path) -> None:
    with tcp_server(b"member\n") as (member_port, member_hits), tcp_server(b"viewer\n") as (other_port, other_hits):
        (r,) = run_isolated(tmp_path, [
            f"exec 3<>/dev/tcp/127.0.0.1/{member_port} && cat <&3;"
            f" (exec 4<>/dev/tcp/127.0.0.1/{other_port} && cat <&4) 2>&1 || echo other-unreachable;"
            " ip -o addr 2>/dev/null | awk '{print $2}' | sort -u",
        ], forwards=[f"http://127.0.0.1:{member_port}"])
    assert r.stdout.startswith("member\n"), r.stdout + r.stderr
    assert "other-unreachable" in r.stdout and "viewer" not in r.stdout
    assert other_hits == [] and len(member_hits) == 1


def test_tmp_is_private_and_capped_and_home_persists(tmp_path: Path) -> None:
    fill_tmp, keep, fill_home, read = run_isolated(tmp_path, [
        "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1 | grep -o 'No space left on device'; du -m /tmp/fill | cut -f1",
        "echo kept > ~/note; echo private > /tmp/mine",
        "ls /tmp; cat ~/note",
        "ls /tmp; cat ~/note",
    ])
    assert "No space left on device" in fill_tmp.stdout
    assert int(fill_tmp.stdout.split()[-1]) <= 64
    assert keep.exit_code == 0
    for later in (fill_home, read):  # home persists, /tmp does not
        assert later.stdout.splitlines()[-1] == "kept"
        assert "mine" not in later.stdout and "fill" not in later.stdout


def test_the_members_directories_are_the_operators(tmp_path: Path) -> None:
    (r,) = run_isolated(tmp_path, [
        "cat /members/etcd-1/member.log; touch /members/etcd-1/data/filler && rm /members/etcd-1/data/filler && echo freed;"
        f" cat {tmp_path / 'etcd-1' / 'member.log'}",
    ])
    assert r.stdout.splitlines() == ["member log line", "freed", "member log line"], r.stderr


def test_an_unknown_or_missing_mechanism_is_refused_in_one_line() -> None:
    from opeval.errors import UsageError

    with pytest.raises(UsageError, match="unknown sandbox 'jail'"):
        check_mechanism("jail")
    check_mechanism("none")


def test_a_machine_without_bubblewrap_or_root_gets_one_line_saying_what_to_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opeval.errors import EnvironmentProblem

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to be found
    with pytest.raises(EnvironmentProblem, match=r"apt-get install bubblewrap\), or pass --sandbox none") as e:
        check_mechanism("bubblewrap")
    assert "\n" not in str(e.value)
    monkeypatch.undo()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="needs root"):
        check_mechanism("bubblewrap")
