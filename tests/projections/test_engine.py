"""Read models: rebuilds are reproducible, incremental equals full, rules change exactly
what they should, and the event store is never written."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from opeval.errors import StoreError, UsageError
from opeval.projections import ReadModels, RuleSet, campaign_rows, compare_groups, file_digest, trial_scores
from opeval.projections import _engine
from opeval.projections.synthetic import make_trial, new_campaign, write_campaign
from opeval.store import EventStore


@pytest.fixture
def store_with_trials(store_path: Path) -> Path:
    with EventStore(store_path) as store:
        write_campaign(store, "a", 30, rng=random.Random(1), seconds=20)
        write_campaign(store, "none", 10, rng=random.Random(2), seconds=20, agent="none")
    return store_path


def test_a_full_rebuild_twice_gives_identical_tables(store_with_trials: Path, tmp_path: Path) -> None:
    a = ReadModels(store_with_trials, tmp_path / "a.duckdb")
    b = ReadModels(store_with_trials, tmp_path / "b.duckdb")
    a.rebuild()
    first = a.content_hash()
    a.rebuild()
    b.rebuild()
    assert a.content_hash() == first == b.content_hash()
    assert int(first["trials"].split(":")[0]) == 40
    assert int(first["scores"].split(":")[0]) == 40


def test_incremental_updates_after_each_trial_equal_a_full_rebuild(store_path: Path, tmp_path: Path) -> None:
    inc = ReadModels(store_path, tmp_path / "inc.duckdb")
    rng = random.Random(5)
    with EventStore(store_path) as store:
        campaign = new_campaign("grow", 6)
        store.save(campaign)
        for i in range(6):
            store.save(campaign, make_trial(campaign, i, rng, seconds=15, agent="none" if i == 3 else "runbook"))
            assert inc.update() > 0
    assert inc.update() == 0  # nothing new: nothing done
    full = ReadModels(store_path, tmp_path / "full.duckdb")
    full.rebuild()
    assert inc.content_hash() == full.content_hash()


def test_a_trial_read_in_parts_while_it_runs_equals_a_full_rebuild(store_path: Path, tmp_path: Path) -> None:
    # An update can meet a trial again: its older events are found, its rows and scores replaced.
    inc = ReadModels(store_path, tmp_path / "inc.duckdb")
    with EventStore(store_path) as store:
        campaign = new_campaign("parts", 2)
        store.save(campaign, make_trial(campaign, 0, random.Random(1), seconds=15))
        inc.update()
        trial = make_trial(campaign, 1, random.Random(2), seconds=15)
        pending = list(trial._pending_events)
        for part in (pending[:5], pending[5:len(pending) // 2], pending[len(pending) // 2:]):
            trial._pending_events = list(part)
            store.save(trial)
            assert inc.update() == len(part)
    full = ReadModels(store_path, tmp_path / "full.duckdb")
    full.rebuild()
    assert inc.content_hash() == full.content_hash()


def test_the_position_is_kept_with_the_rows(store_with_trials: Path, tmp_path: Path) -> None:
    rm = ReadModels(store_with_trials, tmp_path / "rm.duckdb")
    n = rm.update()
    with EventStore(store_with_trials, writable=False) as store:
        assert n == store.recorder.max_notification_id()
    with rm.connect() as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'position'").fetchall() == [(str(n),)]
        assert con.execute("SELECT count(*) FROM events").fetchall() == [(n,)]


def _variant(**changes: str) -> RuleSet:
    text = RuleSet.default().source
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return RuleSet.parse(text, "variant")


def test_changing_one_threshold_changes_exactly_the_scores_it_should(store_with_trials: Path, tmp_path: Path) -> None:
    rm = ReadModels(store_with_trials, tmp_path / "rm.duckdb")
    old = RuleSet.default()
    new = _variant(**{"thrashing_threshold: 2": "thrashing_threshold: 3"})
    assert new.hash != old.hash and new.name == old.name
    rm.score(new)
    with rm.connect() as con:
        before = {r["trial_id"]: r for r in trial_scores(con, old)}
        after = {r["trial_id"]: r for r in trial_scores(con, new)}
    assert before.keys() == after.keys()
    changed = 0
    for tid, b in before.items():
        a = after[tid]
        if b["thrashing"] == 2:  # two repeats: thrashing under the old threshold, not under the new one
            changed += 1
            assert a["thrashing"] == 0 and a["composite"] == pytest.approx(b["composite"] + 5 * 2)
        else:
            assert a["thrashing"] == b["thrashing"] and a["composite"] == b["composite"]
        for metric in ("recovered", "ttr_s", "availability", "destructive", "commands", "speed"):
            assert a[metric] == b[metric]
    assert changed > 0  # the synthetic data does contain such trials


def test_a_longer_settle_requirement_unrecovers_short_holds(store_with_trials: Path, tmp_path: Path) -> None:
    rm = ReadModels(store_with_trials, tmp_path / "rm.duckdb")
    strict = _variant(**{"min_settle_s: 2.0": "min_settle_s: 5.0"})
    rm.score(strict)
    with rm.connect() as con:
        old = {r["trial_id"]: r for r in trial_scores(con, RuleSet.default())}
        new = trial_scores(con, strict)
    assert any(old[r["trial_id"]]["recovered"] for r in new)
    assert not any(r["recovered"] for r in new)  # every synthetic recovery held exactly 2 s


def test_analysis_never_writes_the_event_store(store_with_trials: Path, tmp_path: Path) -> None:
    before = file_digest(store_with_trials)
    rm = ReadModels(store_with_trials)
    rm.update()
    rm.rebuild()
    rm.score(_variant(**{"ttr_target_s: 60.0": "ttr_target_s: 10.0"}), force=True)
    with rm.connect() as con:
        campaign_rows(con, RuleSet.default(), "0" * 32)
    assert file_digest(store_with_trials) == before


def test_rule_sets_are_validated() -> None:
    with pytest.raises(UsageError, match="unknown name 'recoverd'"):
        _variant(**{"w_recovered * CAST(recovered AS INTEGER)": "w_recovered * CAST(recoverd AS INTEGER)"})
    with pytest.raises(UsageError, match="missing or bad key"):
        RuleSet.parse("name: x\nthresholds: {}\ncomposite: recovered\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        RuleSet.parse("name: [unclosed\n")
    # a weight's name becomes a column name in the scoring SQL: nothing else gets through
    text = RuleSet.default().source
    with pytest.raises(UsageError, match="weight name .* letters, digits and underscores"):
        RuleSet.parse(text.replace("weights:\n", "weights:\n  \"x FROM scores; --\": 1\n", 1))


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        ReadModels(tmp_path / "none.db").update()


def test_comparison_pairs_by_seed_and_is_reproducible(store_path: Path, tmp_path: Path) -> None:
    seeds = list(range(100, 120))
    with EventStore(store_path) as store:
        a = write_campaign(store, "a", 20, rng=random.Random(1), seconds=15, seeds=seeds, agent="none")
        b = write_campaign(store, "b", 20, rng=random.Random(2), seconds=15, seeds=seeds)
    rm = ReadModels(store_path, tmp_path / "rm.duckdb")
    rm.update()
    with rm.connect() as con:
        rows_a = campaign_rows(con, RuleSet.default(), a.id.hex)
        rows_b = campaign_rows(con, RuleSet.default(), b.id.hex)
    first = compare_groups(rows_a, rows_b)
    assert first["paired"] and first == compare_groups(rows_a, rows_b)
    rec = next(m for m in first["metrics"] if m["metric"] == "recovered")
    assert rec["a_mean"] == 0.0 and rec["b_mean"] > 0.5  # baseline never recovers, the agent mostly does
    assert rec["ci_low"] <= rec["delta"] <= rec["ci_high"]
    assert rec["paired"]
    # The baseline runs no command: the agent's first diagnostic is compared on its own values, unpaired.
    diag = next(m for m in first["metrics"] if m["metric"] == "first_diagnostic_s")
    agent_values = [r["first_diagnostic_s"] for r in rows_b if r["first_diagnostic_s"] is not None]
    assert agent_values and diag["a_mean"] is None and not diag["paired"]
    assert diag["b_n"] == len(agent_values) and diag["b_mean"] == pytest.approx(sum(agent_values) / len(agent_values))
    unpaired = compare_groups(rows_a, rows_b[:-1])
    assert not unpaired["paired"]


def test_read_models_from_another_version_are_rebuilt_not_mixed(store_with_trials: Path, tmp_path: Path) -> None:
    rm = ReadModels(store_with_trials, tmp_path / "rm.duckdb")
    rm.update()
    expected = rm.content_hash()
    with rm.connect() as con:  # as if an older opeval had built them, with other SQL
        con.execute("UPDATE meta SET value = 'older' WHERE key = 'schema'")
        con.execute("DELETE FROM commands")
    assert rm.content_hash() == expected
    with rm.connect() as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchall() != [("older",)]


def test_read_models_opened_first_by_a_reader_still_score_every_trial(store_with_trials: Path, tmp_path: Path) -> None:
    rm = ReadModels(store_with_trials, tmp_path / "rm.duckdb")
    with rm.connect() as con:  # a reader (the viewer, say) is the first to open them
        assert len(trial_scores(con, RuleSet.default())) == 40
    strict = RuleSet.parse(RuleSet.default().source.replace("min_settle_s: 2.0", "min_settle_s: 9.0"))
    rm.score(strict)
    with rm.connect() as con:
        assert len(trial_scores(con, strict)) == 40


def test_a_trial_whose_model_has_no_price_has_an_unknown_cost_not_zero(store_path: Path) -> None:
    from opeval.events import Trial

    rng = random.Random(3)
    with EventStore(store_path) as es:
        campaign = new_campaign("prices", 4)
        priced = make_trial(campaign, 0, rng, seconds=12, commands=[])
        unpriced = make_trial(campaign, 1, rng, seconds=12, commands=[])
        for e in unpriced.pending_events:  # a local model: the price table does not know it
            if isinstance(e, Trial.AgentUsage):
                object.__setattr__(e, "cost_usd", None)
        nobody = make_trial(campaign, 2, rng, seconds=12, agent="none")
        external = make_trial(campaign, 3, rng, seconds=12, agent="command", usage=False)
        es.save(campaign, priced, unpriced, nobody, external)
    with ReadModels(store_path).connect() as con:
        rows = {r["trial_id"]: r for r in campaign_rows(con, RuleSet.default(), campaign.id.hex)}
    cost = {tid: r["cost_usd"] for tid, r in rows.items()}
    assert cost[priced.id.hex] == pytest.approx(0.00675)
    assert cost[unpriced.id.hex] is None  # one call without a price: the total is not known
    assert cost[nobody.id.hex] == 0 and rows[nobody.id.hex]["tokens"] == 0  # no model call: nothing spent
    # an external agent's model calls are not the harness's to count
    assert cost[external.id.hex] is None and rows[external.id.hex]["tokens"] is None
    assert rows[external.id.hex]["composite"] is not None


def test_read_models_of_another_version_are_rebuilt_and_left_free(store_with_trials: Path, tmp_path: Path) -> None:
    """Read models an older version built (another schema, no rule-set table) are rebuilt
    in place; afterwards nothing holds the file, in this process or for another."""
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema', 'old'), ('position', '5')")
    con.close()
    rm = ReadModels(store_with_trials, db)
    rm.update()
    with rm.connect() as con:
        assert con.execute("SELECT count(*) FROM trials").fetchall()[0][0] > 0
    assert os.path.realpath(db) not in _engine._the_host().attached
    out = subprocess.run([sys.executable, "-c", f"import duckdb; c = duckdb.connect({str(db)!r}); "
                          "print(c.execute('SELECT count(*) FROM scores').fetchall()[0][0])"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and int(out.stdout) > 0, out.stderr


def test_a_failing_use_leaves_the_file_detached(store_with_trials: Path, tmp_path: Path) -> None:
    rm = ReadModels(store_with_trials, tmp_path / "rm.duckdb")
    rm.update()
    with pytest.raises(duckdb.Error), rm.connect() as con:
        con.execute("SELECT * FROM no_such_table")
    assert _engine._the_host().attached == {}
    rm.update()  # and it opens again
