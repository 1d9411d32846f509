"""Campaigns on a real Ray cluster (two worker CPUs on loopback) appending to a real
PostgreSQL store: the quickstart campaign as it is, and a worker killed mid-trial."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from opeval.events import Trial
from opeval.runner import CampaignRun, RayOptions, load_campaign, run_campaign
from opeval.store import EventStore
from tests.conftest import labelled_processes
from tests.opeval_cli import SRC, opeval

pytestmark = pytest.mark.integration
CAMPAIGNS = Path(__file__).parents[2] / "campaigns"


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Ray's GCS, raylet and workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A Ray head node with 2 CPUs (so two trials, two worker processes, at once) on
    loopback, no dashboard; its whole process group is ended afterwards, even on failure.
    Yields its address and the runtime directory its workers use."""
    runtime = tmp_path_factory.mktemp("ray-runtime")
    temp = Path(f"/tmp/opeval-ray-{os.getpid()}")  # Ray's socket paths must stay short
    # Token auth as a real cluster has it; every address on loopback (Ray otherwise swaps
    # 127.0.0.1 for the machine's address, which only its cluster mode can turn off).
    ray_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    driver = pytest.MonkeyPatch()
    for key, value in ray_env.items():
        driver.setenv(key, value)  # for this process and the CLIs it starts (the coordinators)
    env = os.environ.copy()
    env.update(OPEVAL_RUNTIME_DIR=str(runtime),
               PYTHONPATH=os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")])))
    port = _free_port()
    ray_bin = Path(sys.executable).parent / "ray"
    log = runtime / "ray-start.log"
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
             "--object-store-memory=100000000"],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=sink)
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            probe = subprocess.run([str(ray_bin), "status", f"--address={address}"], capture_output=True, env=env)
            if probe.returncode == 0:
                break
            time.sleep(1)
        yield address, runtime
    finally:
        family = [proc.pid, *_descendants(proc.pid)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in family):
            time.sleep(0.5)
        for p in family:  # whatever did not stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(temp)], check=False)
        driver.undo()


def _rows(url: str, campaign_id: object) -> list[tuple[int, str, str | None, str]]:
    with EventStore(url, writable=False) as store:
        campaign = store.campaign(campaign_id)  # type: ignore[arg-type]
        out = []
        for tid in campaign.trial_ids:
            trial = store.trial(tid)
            reason = next((e.reason for e in store.events(tid) if isinstance(e, Trial.TrialFinished)), "")
            out.append((campaign.trial_index[tid], tid.hex, trial.outcome, reason))
        return out


def test_the_quickstart_campaign_on_ray_and_postgres(ray_cluster: tuple[str, Path], postgres_url: str,
                                                     tmp_path: Path) -> None:
    address, _ = ray_cluster
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    proc = opeval("run", "campaign", str(CAMPAIGNS / "quickstart.yaml"), "--store", postgres_url,
                  "--executor", "ray", "--address", address, "--json", timeout=400, env=env, check=True)
    summary = json.loads(proc.stdout)
    assert summary["finished"] is True and sum(summary["outcomes"].values()) == 4
    rows = _rows(postgres_url, __import__("uuid").UUID(summary["campaign_id"]))
    assert sorted(i for i, _, o, _ in rows if o != "aborted") == [0, 1, 2, 3]

    def analyze(store: str) -> dict[str, object]:
        done = opeval("analyze", summary["campaign_id"][:8], "--json", "--store", store, env=env, check=True)
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    on_postgres = analyze(postgres_url)
    groups = {g["variant"]: g for g in on_postgres["summary"]}  # type: ignore[attr-defined]
    assert groups["runbook"]["recovery_rate"] == 1.0 and groups["baseline"]["recovery_rate"] == 0.0
    # The same log in a SQLite file gives the same table.
    copied = tmp_path / "copy.db"
    opeval("store", "copy", postgres_url, str(copied), env=env, check=True)
    assert analyze(str(copied)) == on_postgres


KILL_CAMPAIGN = """\
name: lost-worker
subject: etcd
repetitions: 2
seed: 7
trial:
  restart_policy: on-failure
  timeout_s: 20
chaos:
  - kind: node_kill
    target: follower
variants:
  - name: baseline
    agent: none
"""


def test_a_worker_killed_mid_trial_is_aborted_and_its_index_runs_again(
        ray_cluster: tuple[str, Path], postgres_url: str, tmp_path: Path) -> None:
    address, runtime = ray_cluster
    file = tmp_path / "lost.yaml"
    file.write_text(KILL_CAMPAIGN)
    plan = load_campaign(file)
    outcome: list[CampaignRun] = []
    failure: list[BaseException] = []

    def coordinate() -> None:
        try:
            with EventStore(postgres_url) as store:
                outcome.append(anyio.run(lambda: run_campaign(
                    store, plan, ray=RayOptions(address=address), handle_signals=False)))
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            failure.append(e)

    coordinator = threading.Thread(target=coordinate)
    coordinator.start()
    killed: tuple[str, int] | None = None
    try:
        deadline = time.monotonic() + 240
        while killed is None and coordinator.is_alive() and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                with EventStore(postgres_url, writable=False) as store:
                    for _, e in store.iter_events(topics=["opeval.trial:ChaosVerified"]):
                        trial = store.trial(e.originator_id)
                        if trial.outcome is None:  # mid-trial: the fault is in, the trial has not ended
                            os.kill(trial.harness.pid, signal.SIGKILL)  # the Ray worker running it
                            killed = (e.originator_id.hex, trial.harness.pid)
                            break
            except Exception:  # noqa: BLE001 - the store's table may not exist yet
                continue
    finally:
        coordinator.join(400)
    assert not failure, failure
    assert killed is not None, "no trial reached its fault in time"
    (run,) = outcome
    assert run.finished
    rows = _rows(postgres_url, run.campaign_id)
    real = sorted(i for i, _, o, _ in rows if o in ("recovered", "not_recovered", "error"))
    assert real == [0, 1]  # exactly one real outcome per index
    aborted = [(tid, reason) for _, tid, o, reason in rows if o == "aborted"]
    assert [tid for tid, _ in aborted] == [killed[0]]  # the attempt that was lost is visible
    assert all(o is not None for _, _, o, _ in rows)
    for _, tid, _, _ in rows:  # nothing left running, the lost worker's etcd members included
        assert labelled_processes(tid) == []
    journal = runtime / "journal"
    assert not journal.exists() or list(journal.glob("*")) == []
