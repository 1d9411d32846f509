"""Which baselines a campaign is held against is one stated rule, and an old campaign's
answer does not change as the store grows."""

from __future__ import annotations

import random
from pathlib import Path

from opeval.projections import ReadModels, RuleSet, compare_baseline
from opeval.projections.synthetic import make_control_trial, make_trial, new_campaign
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
    assert before["baseline_from_campaign"] == 0 and before["without_baseline"] == []
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
    assert result["baseline_from_campaign"] == 2
    assert result["baseline_trials"] == 2 and result["paired"]


def test_each_chaos_kind_gets_its_own_baselines_and_one_without_is_named(store_path: Path) -> None:
    rng = random.Random(10)
    with EventStore(store_path) as es:
        elsewhere = new_campaign("control baselines", 2)
        es.save(elsewhere)
        es.save(elsewhere, *[make_control_trial(elsewhere, i, rng, agent="none", seed=i) for i in range(2)])
        mixed = new_campaign("mixed kinds", 6)
        es.save(mixed)
        es.save(mixed, *[make_trial(mixed, i, rng, seconds=15, seed=i) for i in range(2)],  # node_kill
                *[make_trial(mixed, 2 + i, rng, agent="none", seconds=15, seed=i) for i in range(2)],
                *[make_control_trial(mixed, 4 + i, rng, seed=i) for i in range(2)])
    result = _compare(store_path, mixed.id.hex)
    # node_kill's baselines from the campaign itself, the controls' from the store
    assert result["baseline_from_campaign"] == 2 and result["without_baseline"] == []
    assert (result["baseline_trials"], result["b_trials"]) == (2, 2)
    assert (result["controls"]["baseline_trials"], result["controls"]["b_trials"]) == (2, 2)


def test_agent_trials_of_a_kind_without_any_baseline_are_named_not_compared(store_path: Path) -> None:
    rng = random.Random(11)
    with EventStore(store_path) as es:
        mixed = new_campaign("no control baselines", 6)
        es.save(mixed)
        es.save(mixed, *[make_trial(mixed, i, rng, seconds=15, seed=i) for i in range(2)],
                *[make_trial(mixed, 2 + i, rng, agent="none", seconds=15, seed=i) for i in range(2)],
                *[make_control_trial(mixed, 4 + i, rng, seed=i) for i in range(2)])
    result = _compare(store_path, mixed.id.hex)
    assert result["without_baseline"] == ["none --target none"]
    assert result["b_trials"] == 2
