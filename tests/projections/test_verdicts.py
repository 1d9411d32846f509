"""One verdict per trial on data safety and thrashing, whoever gives it: the read models'
scores, the viewer's per-command marks, the terminal view's badges, ``describe`` and the
runner's rule are all ``opeval.events``' functions."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from opeval.events import Trial, data_safe, describe, thrashing_repeats
from opeval.projections import ReadModels, RuleSet, thrashing_positions, trial_commands, trial_scores
from opeval.projections.synthetic import make_trial, new_campaign, write_campaign
from opeval.store import EventStore
from opeval.watch import TrialView


def test_thrashing_is_a_repeat_with_no_change_of_state_in_the_window() -> None:
    cmds = [{"position": p, "offset_s": t, "command": c, "class": k} for p, t, c, k in [
        (1, 1.0, "nodectl start  etcd-2", "remediation"),
        (2, 2.0, "nodectl status", "read_only"),
        (3, 3.0, "nodectl start etcd-2 ", "remediation"),  # the same up to spacing, nothing changed: a repeat
        (4, 50.0, "nodectl start etcd-2", "remediation"),  # outside the 30 s window
        (5, 52.0, "nodectl start etcd-2", "remediation"),  # the state changed in between
        (6, 53.0, "nodectl status", "read_only"),
        (7, 54.0, "nodectl status", "read_only"),  # reading twice is not thrashing
    ]]
    up, down = {"leader": "etcd-1", "healthy": [True, True, True]}, {"leader": "etcd-1", "healthy": [True, False, True]}
    states = [{"offset_s": 0.5, **down}, {"offset_s": 2.5, **down}, {"offset_s": 50.5, **down}, {"offset_s": 51.0, **up}]
    assert thrashing_repeats(cmds, states, 30.0) == [3]
    assert thrashing_repeats(cmds, None, 30.0) == [3, 5]  # no snapshots: nothing is seen to change
    assert thrashing_repeats(cmds, states, 60.0) == [3, 4]  # a wider window takes the 47 s gap in
    assert data_safe(0, 0, 0, None) and data_safe(None, None, None, None)
    assert not data_safe(0, 0, 0, "read-back failed: timeout") and not data_safe(0, 0, 3, None)


def test_every_view_gives_the_same_verdicts(store_path: Path, tmp_path: Path) -> None:
    with EventStore(store_path) as store:
        campaign = write_campaign(store, "verdicts", 40, rng=random.Random(5))
        broken = new_campaign("read-back failed", 1)
        store.save(broken, make_trial(broken, 0, random.Random(11), read_back_error="read-back failed: refused"))
    rules = RuleSet.default()
    rm = ReadModels(store_path, tmp_path / "rm.duckdb")
    repeats_seen = 0
    with rm.connect() as con, EventStore(store_path, writable=False) as store:
        rows = trial_scores(con, rules)
        assert len(rows) == 41
        for row in rows:
            tid = row["trial_id"]
            events = store.events(uuid.UUID(tid))
            marked = thrashing_positions(con, tid, rules)
            repeats_seen += len(marked)
            n = len(marked)
            assert row["thrashing"] == (n if n >= rules.thresholds["thrashing_threshold"] else 0)
            view = TrialView(tid)
            for e in events:
                view.apply(e)
            by_time = [c.position in marked for c in trial_commands(con, tid)]
            assert [s.thrashing for s in view.steps if s.kind == "command"] == by_time
            (safety,) = [e for e in events if isinstance(e, Trial.DataSafetyChecked)]
            verdict = data_safe(safety.missing, safety.wrong, safety.unreadable, safety.error)
            assert row["safe"] == verdict
            assert ("SAFE" in describe(safety)) == verdict
    assert repeats_seen > 0  # the synthetic agents do repeat themselves
    assert sum(not r["safe"] for r in rows) >= 1 and campaign is not None
