"""A store that already holds events this version cannot decode (written by an older,
laxer one) stays usable: every reader skips them with a one-line warning naming the trial
and the event, and ``opeval verify`` lists each of them and checks the log's order and
every trial's life."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import msgspec
import pytest

from opeval.cli._exit import ExitCode
from opeval.errors import NotFoundError
from opeval.projections.synthetic import write_campaign
from opeval.store import EventStore, verify_log
from tests.opeval_cli import opeval


def _rows(path: Path, sql: str, *params: object) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _tamper(path: Path, sql: str, *params: object) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute(sql, params)
    con.close()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three synthetic trials; then, by hand: trial B's TrialStarted holds ``timeout_s: null``
    (what an older version wrote for ``.inf``) and one of trial A's samples is not JSON."""
    path = tmp_path_factory.mktemp("damaged") / "events.db"
    with EventStore(path) as es:
        campaign = write_campaign(es, "damaged", 3, rng=random.Random(5), seconds=6)
    a, b, c = (t.hex for t in campaign.trial_ids)
    (state,) = _rows(path, "SELECT state FROM stored_events WHERE originator_id = ? AND originator_version = 1", b)[0]
    started = msgspec.json.decode(state)
    started["config"]["timeout_s"] = None
    _tamper(path, "UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = 1",
            msgspec.json.encode(started), b)
    (version,) = _rows(path, "SELECT min(originator_version) FROM stored_events WHERE originator_id = ? "
                             "AND topic = 'opeval.trial:WorkloadSampled'", a)[0]
    _tamper(path, "UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = ?",
            b"{not json", a, version)
    return {"store": str(path), "a": a, "b": b, "c": c, "campaign": campaign.id.hex, "a_version": str(version)}


def _warnings(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("opeval: warning:")]


def test_verify_names_every_undecodable_event(damaged: dict[str, str]) -> None:
    proc = opeval("verify", "--store", damaged["store"])
    assert proc.returncode == ExitCode.LOG_DAMAGED, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"trial {damaged['b'][:8]}: TrialStarted #1") and "timeout_s" in line for line in lines)
    assert any(line.startswith(f"trial {damaged['a'][:8]}: WorkloadSampled #{damaged['a_version']}") for line in lines)
    assert lines[-1].endswith(": 2 problems"), lines[-1]
    report = json.loads(opeval("verify", "--store", damaged["store"], "--json").stdout)
    assert {(p["aggregate_id"][:8], p["event"], p["kind"]) for p in report["problems"]} == {
        (damaged["a"][:8], "WorkloadSampled", "undecodable"), (damaged["b"][:8], "TrialStarted", "undecodable")}
    assert report["trials"] == 3 and report["campaigns"] == 1 and not report["ok"]


def test_list_skips_the_unreadable_with_one_warning_each(damaged: dict[str, str]) -> None:
    proc = opeval("list", "--store", damaged["store"], "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {r["trial_id"].replace("-", "") for r in json.loads(proc.stdout)}
    assert listed == {damaged["a"], damaged["c"]}  # B has no readable start
    warnings = _warnings(proc.stderr)
    assert any(f"TrialStarted #1 of trial {damaged['b'][:8]}" in w for w in warnings), warnings
    assert any(f"WorkloadSampled #{damaged['a_version']} of trial {damaged['a'][:8]}" in w for w in warnings)
    assert len(warnings) == len(set(warnings)) == 2


def test_show_and_analyze_still_work(damaged: dict[str, str]) -> None:
    shown = opeval("show", damaged["a"][:8], "--store", damaged["store"], "--json")
    assert shown.returncode == 0, shown.stderr
    events = json.loads(shown.stdout)["events"]
    assert events[0]["type"] == "TrialStarted" and events[-1]["type"] == "TrialFinished"
    assert int(damaged["a_version"]) not in [e["originator_version"] for e in events]
    assert [w for w in _warnings(shown.stderr) if "WorkloadSampled" in w]
    shown_b = opeval("show", damaged["b"][:8], "--store", damaged["store"])
    assert shown_b.returncode == 0, shown_b.stderr
    assert "its TrialStarted cannot be decoded" in shown_b.stdout and "TrialFinished" in shown_b.stdout
    campaign = opeval("show", damaged["campaign"][:8], "--store", damaged["store"])
    assert campaign.returncode == 0 and damaged["a"][:8] in campaign.stdout, campaign.stderr
    analyzed = opeval("analyze", damaged["campaign"][:8], "--store", damaged["store"], "--json")
    assert analyzed.returncode == 0, analyzed.stderr
    assert [w for w in _warnings(analyzed.stderr) if "TrialStarted" in w]


def test_the_viewer_shows_the_readable_and_refuses_the_rest(damaged: dict[str, str]) -> None:
    from opeval.viewer._data import StoreView

    view = StoreView(Path(damaged["store"]))
    try:
        detail = view.trial(damaged["a"][:8])
        assert detail.events[0].type == "TrialStarted"
        assert int(damaged["a_version"]) not in [e.version for e in detail.events]
        with pytest.raises(NotFoundError, match="TrialStarted cannot be decoded"):
            view.trial(damaged["b"][:8])
        page = view.campaign(damaged["campaign"][:8])
        assert {t.trial_id for t in page.trials} >= {damaged["a"], damaged["c"]}
    finally:
        view.close()


def test_a_clean_store_verifies(store_path: Path) -> None:
    with EventStore(store_path) as es:
        write_campaign(es, "clean", 2, rng=random.Random(1), seconds=4)
    proc = opeval("verify", "--store", str(store_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(": ok")


def test_verify_checks_order_and_life_cycle(store_path: Path) -> None:
    with EventStore(store_path) as es:
        campaign = write_campaign(es, "order", 3, rng=random.Random(2), seconds=4)
    gap, late, lost = (t.hex for t in campaign.trial_ids)
    # a version missing in the middle of one trial
    _tamper(store_path, "DELETE FROM stored_events WHERE originator_id = ? AND originator_version = 3", gap)
    # an event after another trial's end
    (last, state) = _rows(store_path, "SELECT originator_version, state FROM stored_events WHERE originator_id = ? "
                                      "ORDER BY originator_version DESC LIMIT 1", late)[0]
    _tamper(store_path, "INSERT INTO stored_events VALUES (?, ?, 'opeval.trial:ClusterDown', ?)", late, last + 1,
            msgspec.json.encode({"offset_s": 99.0, "graceful": True, "detail": "late",
                                 "timestamp": "2026-12-01T00:00:00+00:00"}))
    # a trial the campaign scheduled whose events are gone
    _tamper(store_path, "DELETE FROM stored_events WHERE originator_id = ?", lost)
    with EventStore(store_path, writable=False) as es:
        report = verify_log(es.recorder)
    found = {(p.aggregate_id[:8], p.kind, p.event) for p in report.problems}
    (skipped,) = [p for p in report.problems if p.aggregate_id == gap]
    assert skipped.kind == "order" and skipped.version == 4 and "expected version 3" in skipped.detail
    assert (late[:8], "life_cycle", "ClusterDown") in found
    assert (campaign.id.hex[:8], "life_cycle", "TrialScheduled") in found
    assert len(report.problems) == 3, [p.line() for p in report.problems]
    with EventStore(store_path, writable=False) as es:  # the readers still build the damaged trials
        assert es.trial(campaign.trial_ids[0]).outcome is not None
