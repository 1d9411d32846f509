"""Which baselines a campaign is held against is one stated rule, and an old campaign's
answer does not change as the store grows."""

from __future__ import annotations

import random
from pathlib import Path

from opeval.projections import ReadModels, RuleSet, compare_baseline
from opeval.projections.synthetic import make_trial, new_campaign
from opeval.store import EventStore


def _compare(store_path: Path, campaign_id: str) -> dict:  # type: ignore[type-arg]
    with ReadModels(store_path).connect() as con:
        return compare_baseline(con, RuleSet.default(), campaign_id)


def test_an_old_campaigns_comparison_stays_the_same_as_trials_are_added(store_path: Path) -> None:
    rng = random.Random(8)
    with EventStore(store_path) as es:
        agent, base = new_campaign("agent", 2), new_campaign("base", 2)
        es.save(agent, base)
        es.save(agent, *[make_trial(agent, i, rng, seconds=15, seed=i) for i in range(2)])
        es.save(base, *[make_trial(base, i, rng, agent="none", seconds=15, seed=i) for i in range(2)])
    before = _compare(store_path, agent.id.hex)
    assert before["paired"] and before["baseline_trials"] == 2
    assert before["baseline_rule"] == "the store's first baseline trials with the same chaos, target and seed"
    with EventStore(store_path) as es:  # later: more baselines, the same seeds and others
        more = new_campaign("more base", 5)
        es.save(more)
        es.save(more, *[make_trial(more, i, rng, agent="none", seconds=15, seed=i % 3) for i in range(5)])
    after = _compare(store_path, agent.id.hex)
    assert after == before


def test_a_campaign_with_its_own_baselines_uses_only_those(store_path: Path) -> None:
    rng = random.Random(9)
    with EventStore(store_path) as es:
        other = new_campaign("other base", 3)
        es.save(other)
        es.save(other, *[make_trial(other, i, rng, agent="none", seconds=15, seed=i) for i in range(3)])
        mixed = new_campaign("mixed", 4)
        es.save(mixed)
        es.save(mixed, *[make_trial(mixed, i, rng, seconds=15, seed=i) for i in range(2)],
                *[make_trial(mixed, 2 + i, rng, agent="none", seconds=15, seed=i) for i in range(2)])
    result = _compare(store_path, mixed.id.hex)
    assert result["baseline_rule"] == "the campaign's own baseline trials"
    assert result["baseline_trials"] == 2 and result["paired"]
