"""Running real trials from tests, and checking they left nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest, TrialResult, run_single
from opeval.store import EventStore
from tests.conftest import labelled_processes, port_is_bound


def run_trial(store_path: Path, *, target: str = "follower", policy: str = "on-failure",
              timeout: float = 20.0, seed: int = 3, **config: Any) -> tuple[TrialResult, list[Any]]:
    req = TrialRequest(
        chaos=ChaosSpec(kind="node_kill", target=target), agent=AgentSpec(name="none"), seed=seed,
        config=TrialConfig(restart_policy=policy, timeout_s=timeout, settle_s=1.0, warmup_s=0.5, **config),
    )
    with EventStore(store_path) as store:
        result = anyio.run(lambda: run_single(store, req, handle_signals=False))
        events = store.events(result.trial_id)
    assert_nothing_left(result, events)
    return result, events


def assert_nothing_left(result: TrialResult, events: list[Any]) -> None:
    """No process, port, journal or workspace of the trial survives it."""
    assert labelled_processes(result.trial_id.hex) == []
    up = [e for e in events if isinstance(e, Trial.ClusterUp)]
    for ev in up:
        for m in ev.members:
            assert not port_is_bound(m.client_url), m.client_url
            assert not port_is_bound(m.peer_url), m.peer_url


def of(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def is_subsequence(wanted: list[str], names: list[str]) -> bool:
    it = iter(names)
    return all(w in it for w in wanted)
