"""The one read layer over the read models: typed rows, one rule-set lookup, one campaign
list; and no SQL of their own in the packages that read through it."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

import opeval
from opeval.errors import NotFoundError
from opeval.projections import (
    CampaignOverview,
    CommandRow,
    ReadModels,
    RuleSet,
    TrialScore,
    campaign_filters,
    campaign_overview,
    campaign_record,
    find_rule_set,
    rule_sets,
    trial_commands,
    trial_score,
    trial_scores,
)
from tests.projections.helpers import ControlStore, write_control_store

#: Packages that read the read models only through :mod:`opeval.projections`' query functions.
READERS = ("cli", "viewer", "export", "watch")
#: What SQL written outside the query layer looks like (statements, or a condition handed in).
SQL = re.compile(r"\bSELECT\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|\.execute\(|"
                 r"\.sql\(|\bquery\(|\b[a-z]\.\w+\s*(=|IN)\s*\(?\?")


@pytest.fixture
def store(store_path: Path) -> ControlStore:
    return write_control_store(store_path)


def test_no_sql_outside_the_query_layer() -> None:
    root = Path(opeval.__file__).parent
    found = []
    for package in READERS:
        for path in sorted((root / package).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if SQL.search(line):
                    found.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not found, "SQL outside opeval.projections (add a query function there):\n" + "\n".join(found)


def test_the_scan_recognises_sql() -> None:
    for line in ('con.execute("SELECT name FROM campaigns")', 'rows = query(con, sql)',
                 'trial_scores(con, rules, "t.trial_id = ?", [tid])', 'f"SELECT DISTINCT {k} FROM trials"'):
        assert SQL.search(line), line
    for line in ("rows = trial_scores(con, rules, trial_id=tid)", "# selected trials", "self.execute_plan()"):
        assert not SQL.search(line), line


def test_rule_sets_are_found_by_key_name_or_hash_prefix(store: ControlStore) -> None:
    default = RuleSet.default()
    strict = RuleSet.parse(default.source.replace(f"name: {default.name}", "name: strict")
                           .replace("min_settle_s: 2.0", "min_settle_s: 9.0"), "strict")
    rm = ReadModels(store.path)
    rm.score(default)
    rm.score(strict)
    with rm.connect() as con:
        assert {r.key for r in rule_sets(con)} == {default.key, strict.key}
        for key in (strict.key, "strict", strict.hash[:6], strict.hash[:6].upper()):
            assert find_rule_set(con, key, default).key == strict.key
        for key in (None, "", "default", default.key):
            assert find_rule_set(con, key, default) is default
        with pytest.raises(NotFoundError, match="no rule set 'lenient'.*known: "):
            find_rule_set(con, "lenient", default)


def test_campaign_list_counts_the_trials_its_filters_match(store: ControlStore) -> None:
    with ReadModels(store.path).connect() as con:
        every = {c.campaign_id: c for c in campaign_overview(con)}
        no_agent = campaign_overview(con, {"agent": "none"})
        v2 = campaign_overview(con, {"agent": "runbook", "variant": "v2"})
        options = campaign_filters(con)
        with pytest.raises(ValueError):
            campaign_overview(con, {"outcome; DROP TABLE trials": "x"})
    assert set(every) == {store.mixed, store.baseline}
    mixed = every[store.mixed]
    assert isinstance(mixed, CampaignOverview)
    # 3 fault trials, 3 measured controls, one aborted attempt; never finished, nothing running.
    assert (mixed.trials, mixed.done, mixed.aborted, mixed.running, mixed.status) == (7, 6, 1, 0, "interrupted")
    assert mixed.agents == ["runbook"] and mixed.chaos == sorted(mixed.chaos) and "none" in mixed.chaos
    assert [c.campaign_id for c in no_agent] == [store.baseline] and no_agent[0].trials == 4
    assert [(c.campaign_id, c.trials) for c in v2] == [(store.mixed, 1)]
    assert options.agent == ["none", "runbook"] and options.variant == sorted(options.variant)


def test_rows_are_typed(store: ControlStore) -> None:
    rules = RuleSet.default()
    with ReadModels(store.path).connect() as con:
        (row,) = trial_scores(con, rules, trial_id=store.harmful)
        score = trial_score(con, rules, store.harmful)
        commands = trial_commands(con, store.harmful)
        head = campaign_record(con, store.mixed)
        assert trial_score(con, rules, "0" * 32) is None and campaign_record(con, "0" * 32) is None
    assert isinstance(score, TrialScore) and score == msgspec.convert(row, TrialScore)
    assert score.control and score.left_broken and score.destructive == 1
    assert all(isinstance(c, CommandRow) for c in commands)
    assert [c.command for c in commands] == ["nodectl status", "nodectl restart etcd-2", "etcdctl member remove etcd-2"]
    assert [c.command_class for c in commands][-1] == "destructive"
    assert msgspec.to_builtins(commands[0])["class"] == commands[0].command_class
    assert head is not None and head.name == "mixed" and head.finished is False
