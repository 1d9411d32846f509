"""Fixtures of the viewer's tests: a store with every kind of thing the viewer shows."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from opeval.projections import ReadModels, RuleSet
from opeval.projections.synthetic import make_trial, new_campaign, write_campaign
from opeval.store import EventStore
from opeval.viewer import create_app
from tests.viewer.helpers import HOSTILE_OUTPUT, finish_trial, start_trial, strict_rules


@dataclass
class ViewerStore:
    """A store holding every kind of thing the viewer shows."""

    path: Path
    agent: str
    base: str
    hostile_campaign: str
    hostile_trial: str
    thrashing_campaign: str
    thrashing_trial: str
    running_trial: str
    strict: RuleSet


@pytest.fixture(scope="module")
def viewer_store(tmp_path_factory: pytest.TempPathFactory) -> ViewerStore:
    """Two campaigns paired by seed (agent and baseline), a trial with hostile output, a
    finished trial with thrashing and a destructive command, one still running; scored
    under the default rules and a stricter rule set."""
    path = tmp_path_factory.mktemp("viewer") / "events.db"
    seeds = list(range(8))
    with EventStore(path) as es:
        agent = write_campaign(es, "agent-runbook", 8, rng=random.Random(1), seconds=15, seeds=seeds)
        base = write_campaign(es, "self-healing", 8, rng=random.Random(2), seconds=15, seeds=seeds, agent="none")
        hostile = new_campaign("hostile <output>", 1)
        es.save(hostile)
        trial = make_trial(hostile, 0, random.Random(3), seconds=15, command_output=HOSTILE_OUTPUT)
        es.save(hostile, trial)
        thrash_campaign, thrash = start_trial(es, "thrashing")
        finish_trial(es, thrash, thrash_campaign)
        _, running = start_trial(es, "still running")
    strict = strict_rules()
    models = ReadModels(path)
    models.update()
    models.score(strict)
    return ViewerStore(path=path, agent=agent.id.hex, base=base.id.hex, hostile_campaign=hostile.id.hex,
                       hostile_trial=trial.id.hex, thrashing_campaign=thrash_campaign.id.hex,
                       thrashing_trial=thrash.id.hex, running_trial=running.id.hex, strict=strict)


@pytest.fixture(scope="module")
def app(viewer_store: ViewerStore) -> Litestar:
    """The viewer of :func:`viewer_store`."""
    return create_app(viewer_store.path, poll_interval_s=0.05)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    """A test client of :func:`app`."""
    with TestClient(app) as c:
        yield c
