"""The read models' time to detect and to recover are the ones each trial's
``TrialFinished`` records: one definition (``opeval.events``), called by both."""

from __future__ import annotations

import random
from pathlib import Path

from opeval.events import Trial, time_to_detect, time_to_recover
from opeval.projections import ReadModels, RuleSet, trial_scores
from opeval.projections.synthetic import make_control_trial, make_trial, new_campaign
from opeval.store import EventStore


def test_the_clock_functions() -> None:
    assert time_to_detect(2.0, 2.25) == 0.25 and time_to_detect(2.0, 1.5) == 0.0  # never before the clock
    assert time_to_detect(None, 1.0) is None and time_to_detect(1.0, None) is None
    assert time_to_recover(2.0, 5.5) == 3.5 and time_to_recover(2.0, 5.5, 1.0) == 2.5
    assert time_to_recover(2.0, 2.5, 3.0) == 0.0 and time_to_recover(2.0, None) is None


def test_read_models_and_trial_finished_agree(store_path: Path) -> None:
    with EventStore(store_path) as es:
        campaign = new_campaign("clock", 12)
        es.save(campaign)
        trials = [make_trial(campaign, i, random.Random(i), agent=("none", "runbook")[i % 2], seconds=20)
                  for i in range(10)]
        trials += [make_control_trial(campaign, 10 + i, random.Random(40 + i)) for i in range(2)]
        es.save(campaign, *trials)
    models = ReadModels(store_path)
    models.update()
    with models.connect() as con:
        rows = {r["trial_id"]: r for r in trial_scores(con, RuleSet.default())}
    assert len(rows) == 12
    with EventStore(store_path, writable=False) as es:
        recorded = {e.originator_id.hex: e for _, e in es.iter_events(topics=["opeval.trial:TrialFinished"])}
    assert set(recorded) == set(rows)
    for tid, e in recorded.items():
        assert isinstance(e, Trial.TrialFinished)
        assert rows[tid]["ttd_s"] == e.time_to_detect_s, tid
        assert rows[tid]["ttr_s"] == e.time_to_recover_s, (tid, e.outcome)
    assert any(r["ttr_s"] is not None for r in rows.values()) and any(r["ttr_s"] is None for r in rows.values())
    assert sum(r["ttd_s"] is None for r in rows.values()) == 2  # the controls
