"""The store behind the README's examples of output: synthetic trials with fixed ids and
times, so that the examples are the program's real output, the same on every run."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from opeval.events import Campaign, SandboxInfo
from opeval.projections import ReadModels
from opeval.projections.synthetic import _HARNESS, make_trial
from opeval.store import EventStore
from tests.projections.helpers import aborted_control

START = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.UTC)
SANDBOX = SandboxInfo(mechanism="bubblewrap", version="0.8.0", user="nobody",
                      namespaces=["pid", "mount", "network", "ipc", "uts"], network="loopback")


@contextlib.contextmanager
def fixed_ids_and_clock() -> Iterator[None]:
    """uuid4 and the events' clock made deterministic while the block runs."""
    ids = random.Random(2026)
    ticks = iter(range(10**9))

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=ids.getrandbits(128), version=4)

    def now() -> dt.datetime:
        return START + dt.timedelta(milliseconds=250 * next(ticks))

    with mock.patch("uuid.uuid4", uuid4), mock.patch("eventsourcing.domain.uuid4", uuid4), \
            mock.patch("eventsourcing.domain.datetime_now_with_tzinfo", now):
        yield


def _campaign(name: str, planned: int, spec: dict[str, object]) -> Campaign:
    return Campaign._create(Campaign.CampaignStarted, name=name, spec=spec,  # type: ignore[arg-type]
                            trials_planned=planned, harness=_HARNESS)


def build(path: Path) -> dict[str, str]:
    """The store: ``quickstart`` (4 trials, finished), ``process-faults`` (interrupted after
    3 of 12, one attempt aborted) and a one-trial run. Returns their ids (hex)."""
    with fixed_ids_and_clock(), EventStore(path) as es:
        quick = _campaign("quickstart", 4, {"file": "campaigns/quickstart.yaml", "resumable": True})
        es.save(quick)
        trials = []
        for i, (agent, seed, rng) in enumerate([("runbook", 100, 2), ("none", 100, 3), ("runbook", 101, 4),
                                                ("none", 101, 5)]):
            trials.append(make_trial(quick, i, random.Random(rng), agent=agent, seed=seed, seconds=12,
                                     variant="baseline" if agent == "none" else "runbook", sandbox=SANDBOX))
        es.save(quick, *trials)
        quick.trigger_event(Campaign.CampaignFinished, outcomes={})
        es.save(quick)

        faults = _campaign("process-faults", 12, {"file": "campaigns/process-faults.yaml", "resumable": True})
        es.save(faults)
        es.save(faults, aborted_control(faults, 3))
        es.save(faults, *[make_trial(faults, i, random.Random(10 + i), seed=11, seconds=12,
                                     agent="runbook" if i % 2 == 0 else "none",
                                     variant="runbook" if i % 2 == 0 else "baseline", sandbox=SANDBOX)
                                for i in range(3)])

        single = _campaign("etcd/node_kill/none seed 7", 1, {"seed": 7, "agent": "none"})
        es.save(single)
        one = make_trial(single, 0, random.Random(7), agent="none", seed=7, seconds=12)
        es.save(single, one)
        single.trigger_event(Campaign.CampaignFinished, outcomes={"not_recovered": 1})
        es.save(single)
    ReadModels(path).update()
    return {"quickstart": quick.id.hex, "process-faults": faults.id.hex, "single": single.id.hex,
            "single_trial": one.id.hex}
