"""Every page and API route of the viewer through Litestar's test client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from markupsafe import escape

from opeval.projections import ReadModels, file_digest, read_model_path
from opeval.projections.synthetic import new_campaign
from opeval.store import EventStore
from opeval.viewer import create_app
from opeval.viewer._data import default_rules
from tests.viewer.conftest import ViewerStore
from tests.viewer.helpers import (
    HOSTILE_COMMAND,
    HOSTILE_CONTEXT,
    HOSTILE_OUTPUT,
    HOSTILE_REASONING,
    HOSTILE_VARIANT,
    finish_trial,
    start_trial,
    strict_rules,
)

Client = TestClient[Litestar]


def esc(text: str) -> str:
    """Text as the pages' templates escape it."""
    return str(escape(text))


def page(client: Client, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    if url.startswith("/api/"):
        assert r.headers["content-type"].startswith("application/json"), url
    else:
        assert r.headers["content-type"].startswith("text/html"), url
    return r.text


def test_the_campaign_list_counts_outcomes_and_filters(client: Client, viewer_store: ViewerStore) -> None:
    text = page(client, "/")
    for name in ("agent-runbook", "self-healing", "thrashing", "still running"):
        assert name in text
    assert "hostile &lt;output&gt;" in text and "hostile <output>" not in text
    assert f'href="/campaigns/{viewer_store.agent}"' in text

    only_baseline = page(client, "/?agent=none")
    assert "self-healing" in only_baseline and "agent-runbook" not in only_baseline
    assert "no campaign has trials matching" in page(client, "/?subject=zookeeper").lower()

    items = client.get("/api/campaigns").json()
    by_name = {i["name"]: i for i in items}
    assert by_name["self-healing"]["outcomes"]["not_recovered"] == 8
    assert by_name["still running"]["outcomes"]["running"] == 1 and not by_name["still running"]["finished"]
    agent = by_name["agent-runbook"]
    assert agent["trials"] == 8 and agent["agents"] == ["runbook"]
    assert sum(agent["outcomes"].values()) == 8
    assert [i["name"] for i in client.get("/api/campaigns", params={"agent": "none"}).json()] == ["self-healing"]
    assert client.get("/api/campaigns", params={"variant": "nope"}).json() == []


def test_a_campaign_by_prefix_shows_scores_aggregates_charts_and_the_baseline(
        client: Client, viewer_store: ViewerStore) -> None:
    text = page(client, f"/campaigns/{viewer_store.agent[:6]}")
    assert "agent-runbook" in text and "Per agent" in text
    assert text.count('href="/trials/') == 8
    for chart in ('class="chart rates"', 'aria-label="time to recover"', 'aria-label="commands per trial"'):
        assert chart in text
    assert "Agent against self-healing" in text and "8 baseline trials" in text
    assert f"scored under {default_rules().key}" in text

    data = client.get(f"/api/campaigns/{viewer_store.agent[:8]}").json()
    assert data["campaign_id"] == viewer_store.agent and data["rule_set"] == default_rules().key
    assert len(data["trials"]) == 8 and data["finished"] is True
    (group,) = data["summary"]
    assert group["agent"] == "runbook" and group["trials"] == 8
    low, high = group["recovery_rate_ci"]["low"], group["recovery_rate_ci"]["high"]
    assert 0 <= low <= group["recovery_rate"] <= high <= 1
    assert data["baseline"]["baseline_trials"] == 8 and data["baseline"]["paired"] is True
    assert {m["metric"] for m in data["baseline"]["metrics"]} >= {"recovered", "ttr_s", "composite"}
    assert data["outcomes"]["recovered"] + data["outcomes"]["not_recovered"] == 8

    by_ttr = client.get(f"/api/campaigns/{viewer_store.agent}", params={"sort": "ttr_s", "order": "desc"}).json()
    ttrs = [t["ttr_s"] for t in by_ttr["trials"]]
    present = [t for t in ttrs if t is not None]
    assert present == sorted(present, reverse=True) and ttrs[: len(present)] == present
    assert "▼" in page(client, f"/campaigns/{viewer_store.agent}?sort=composite&order=desc")
    assert "cannot sort by" in page(client, f"/campaigns/{viewer_store.agent}?sort=evil", 400)

    strict = client.get(f"/api/campaigns/{viewer_store.agent}", params={"rules": viewer_store.strict.hash[:6]}).json()
    assert strict["rule_set"] == viewer_store.strict.key
    assert not any(t["recovered"] for t in strict["trials"])
    assert viewer_store.strict.key in page(client, f"/campaigns/{viewer_store.agent}?rules={viewer_store.strict.key}")

    base = page(client, f"/campaigns/{viewer_store.base}")
    assert "no agent trials to hold against the baseline" in base


def test_a_trial_shows_its_timeline_members_workload_commands_and_verdict(
        client: Client, viewer_store: ViewerStore) -> None:
    text = page(client, f"/trials/{viewer_store.thrashing_trial[:10]}")
    assert 'class="chart timeline"' in text and "seconds from trial start" in text
    assert 'class="chart health"' in text and 'class="chart workload"' in text
    for legend in ("fault injected", "fault detected", "destructive", "thrashing", "recovery criteria met"):
        assert legend in text
    assert "SAFE" in text and "400 of 400 acknowledged writes" in text
    assert text.count('<span class="badge thrash">thrashing</span>') == 2
    assert 'class="badge c-destructive"' in text and "step command destructive" in text
    assert "exit 1" in text and "exit 0" in text
    for fmt in ("md", "json", "html", "trace"):
        assert f'href="/trials/{viewer_store.thrashing_trial}/export/{fmt}"' in text
    assert 'href="/campaigns/' in text and "thrashing" in text

    data = client.get(f"/api/trials/{viewer_store.thrashing_trial}").json()
    assert data["running"] is False and data["outcome"] == "recovered" and data["victim"] == "etcd-1"
    assert [c["class"] for c in data["commands"]] == ["read_only", "remediation", "remediation", "remediation",
                                                      "destructive"]
    assert [c["thrashing"] for c in data["commands"]] == [False, False, True, True, False]
    assert data["score"]["thrashing"] == 2 and data["score"]["destructive"] == 1
    assert data["data_safety"]["safe"] is True and data["rule_set"] == default_rules().key
    assert data["events"][0]["type"] == "TrialStarted" and data["events"][-1]["type"] == "TrialFinished"
    assert [e["version"] for e in data["events"]] == list(range(1, len(data["events"]) + 1))


def test_exports_in_four_formats(client: Client, viewer_store: ViewerStore) -> None:
    base = f"/trials/{viewer_store.thrashing_trial[:8]}/export"
    md = client.get(f"{base}/md")
    assert md.status_code == 200 and md.text.startswith("# Postmortem: etcd node_kill")
    js = client.get(f"{base}/json")
    assert js.headers["content-type"].startswith("application/json")
    assert js.json()["trial"]["trial_id"] == viewer_store.thrashing_trial
    doc = client.get(f"{base}/html")
    assert doc.headers["content-type"].startswith("text/html") and "<h1>Postmortem" in doc.text
    assert "script-src" not in doc.headers["content-security-policy"]  # no scripts at all
    trace = client.get(f"{base}/trace")
    assert trace.headers["content-type"].startswith("application/json")
    assert 'filename="postmortem-' in trace.headers["content-disposition"] and ".json" in trace.headers["content-disposition"]
    assert {e["ph"] for e in trace.json()["traceEvents"]} == {"X", "i", "M"}
    assert "no export format" in page(client, f"{base}/pdf", 404)


@pytest.mark.parametrize("which", ["hostile_trial", "thrashing_trial", "running_trial"])
def test_agent_output_is_escaped_everywhere(client: Client, viewer_store: ViewerStore, which: str) -> None:
    trial = getattr(viewer_store, which)
    r = client.get(f"/trials/{trial}")
    assert r.status_code == 200
    text = r.text
    assert "<script>alert" not in text and "<img src=x" not in text and "<b>etcd-1</b>" not in text
    assert "<script" not in text.replace('<script src="/static/live.js"></script>', "")
    assert esc(HOSTILE_OUTPUT.strip()) in text
    if which != "hostile_trial":
        assert esc(HOSTILE_COMMAND) in text and esc(HOSTILE_REASONING) in text
        assert esc(HOSTILE_CONTEXT) in text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # The JSON API carries the text as data; JSON is not rendered as HTML.
    data = client.get(f"/api/trials/{trial}").json()
    assert any(c["stdout"] == HOSTILE_OUTPUT for c in data["commands"])
    if which != "hostile_trial":
        assert esc(HOSTILE_VARIANT) in text and HOSTILE_VARIANT not in text
    if which != "running_trial":
        exported = client.get(f"/trials/{trial}/export/html").text
        assert "<script>alert" not in exported and "&lt;script&gt;alert(1)&lt;/script&gt;" in exported


def test_campaign_pages_escape_names_too(client: Client, viewer_store: ViewerStore) -> None:
    for campaign in (viewer_store.thrashing_campaign, viewer_store.hostile_campaign):
        text = page(client, f"/campaigns/{campaign}")
        assert "<i>" not in text and "<script" not in text and "hostile <output>" not in text
    text = page(client, f"/campaigns/{viewer_store.thrashing_campaign}")
    assert f"runbook/{esc(HOSTILE_VARIANT)}" in text
    assert "hostile &lt;output&gt;" in page(client, f"/campaigns/{viewer_store.hostile_campaign}")


def test_a_running_trial_is_read_from_the_log_and_goes_live(client: Client, viewer_store: ViewerStore) -> None:
    text = page(client, f"/trials/{viewer_store.running_trial}")
    assert 'id="live"' in text and f'data-trial="{viewer_store.running_trial}"' in text
    assert '<script src="/static/live.js"></script>' in text
    assert 'class="badge o-running"' in text and "/export/" not in text
    assert "still running" in text  # the campaign's name, read from the log
    data = client.get(f"/api/trials/{viewer_store.running_trial}").json()
    assert data["running"] is True and data["outcome"] is None and data["score"] is None
    assert data["commands"][0]["class"] == "read_only"  # classified on the spot
    live = client.get("/static/live.js")
    assert live.status_code == 200 and "textContent" in live.text and "innerHTML" not in live.text


def _sse(text: str) -> list[dict[str, str]]:
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(": ")
            fields[key] = fields.get(key, "") + value
        if fields:
            messages.append(fields)
    return messages


def test_the_live_stream_pushes_events_as_they_are_recorded(store_path: Path) -> None:
    with EventStore(store_path) as es:
        campaign, trial = start_trial(es, "live")
        seen = trial.version
    app = create_app(store_path, poll_interval_s=0.05)

    def finish_later() -> None:
        time.sleep(0.4)
        with EventStore(store_path) as es:
            finish_trial(es, trial, campaign)

    writer = threading.Thread(target=finish_later)
    with TestClient(app, timeout=30) as client:
        writer.start()
        started = time.monotonic()
        r = client.get(f"/api/trials/{trial.id.hex[:8]}/events", params={"after": seen})
        writer.join()
        assert time.monotonic() - started >= 0.3  # it waited for the events to happen
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        messages = _sse(r.text)
        events = [m for m in messages if m.get("event") == "trial-event"]
        assert [int(m["id"]) for m in events] == list(range(seen + 1, trial.version + 1))
        assert json.loads(events[-1]["data"])["type"] == "TrialFinished"
        assert messages[-1]["event"] == "finished"
        types = [json.loads(m["data"])["type"] for m in events]
        assert "AgentCommandExecuted" in types and "RecoveryDetected" in types
        # A reconnecting browser sends the last id it saw and gets only what followed.
        again = _sse(client.get(f"/api/trials/{trial.id.hex}/events",
                                headers={"Last-Event-ID": str(trial.version - 1)}).text)
        assert [m.get("event") for m in again] == ["trial-event", "finished"]
        # The page, reloaded, now shows the finished trial.
        assert 'id="live"' not in client.get(f"/trials/{trial.id.hex}").text


def test_comparisons_of_campaigns_and_of_rule_sets(client: Client, viewer_store: ViewerStore) -> None:
    forms = page(client, "/compare")
    assert "Two campaigns" in forms and "One campaign, two rule sets" in forms
    assert viewer_store.strict.key in forms

    text = page(client, f"/compare?a={viewer_store.base[:8]}&b={viewer_store.agent[:8]}")
    assert "Metric by metric" in text and "Paired by chaos, target and seed" in text
    assert "self-healing" in text and "agent-runbook" in text
    data = client.get("/api/compare", params={"a": viewer_store.base, "b": viewer_store.agent}).json()
    assert data["mode"] == "campaigns" and data["comparison"]["paired"] is True
    assert data["comparison"]["a_trials"] == data["comparison"]["b_trials"] == 8
    assert data["a_summary"][0]["agent"] == "none" and data["b_summary"][0]["agent"] == "runbook"

    text = page(client, f"/compare?campaign={viewer_store.agent[:8]}&rules_b={viewer_store.strict.key}")
    assert "Trials whose score changed" in text
    data = client.get(f"/api/campaigns/{viewer_store.agent}/rescored", params={"rules_b": viewer_store.strict.key}
                      ).json()
    assert data["mode"] == "rule_sets" and data["a"] == default_rules().key and data["b"] == viewer_store.strict.key
    assert len(data["changes"]) == 8
    assert all(c["b_recovered"] is False for c in data["changes"])
    assert any(c["a_recovered"] for c in data["changes"])
    # Without rules_b, the other scored rule set is taken.
    assert client.get(f"/api/campaigns/{viewer_store.agent}/rescored").json()["b"] == viewer_store.strict.key

    for params in ({}, {"a": viewer_store.agent}, {"b": viewer_store.agent}):  # both are required
        r = client.get("/api/compare", params=params)
        assert r.status_code == 400 and r.json()["detail"]
    assert "needs both" in page(client, f"/compare?b={viewer_store.agent}", 400)


def test_rule_sets_are_listed_default_first(client: Client, viewer_store: ViewerStore) -> None:
    keys = [(r["key"], r["is_default"]) for r in client.get("/api/rule-sets").json()]
    assert keys == [(default_rules().key, True), (viewer_store.strict.key, False)]


def _ambiguous_prefix(store: ViewerStore) -> str:
    with EventStore(store.path, writable=False) as es:
        ids = [e.originator_id.hex for _, e in es.iter_events(
            topics=["opeval.trial:TrialStarted", "opeval.campaign:CampaignStarted"])]
    digit, n = Counter(i[0] for i in ids).most_common(1)[0]
    assert n > 1
    return digit


def test_unknown_ambiguous_and_wrong_kind_ids_are_helpful_404s(client: Client, viewer_store: ViewerStore) -> None:
    for url, fragment in [
        ("/campaigns/ffffffffffff", "no campaign or trial id starts with"),
        ("/trials/not-hex", "is not an id or id prefix"),
        (f"/trials/{_ambiguous_prefix(viewer_store)}", "give more digits"),
        (f"/campaigns/{viewer_store.thrashing_trial[:8]}", "is a trial, not a campaign"),
        (f"/trials/{viewer_store.agent[:8]}", "is a campaign, not a trial"),
        ("/no/such/page", "there is no page at /no/such/page"),
    ]:
        text = page(client, url, 404)
        assert esc(fragment) in text or fragment in text, (url, text)
        assert 'href="/"' in text and "Back to the campaigns" in text
    wrong = page(client, f"/campaigns/{viewer_store.thrashing_trial[:8]}", 404)
    assert f'href="/trials/{viewer_store.thrashing_trial}"' in wrong

    for url in ("/api/campaigns/ffffffffffff", "/api/trials/ffffffffffff", "/api/trials/ffff/events", "/api/nothing"):
        r = client.get(url)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/json"), url
        assert r.json()["status_code"] == 404 and r.json()["detail"]
    r = client.get(f"/api/trials/{viewer_store.agent}")
    assert r.json()["see"] == f"/campaigns/{viewer_store.agent}"
    r = client.get(f"/api/campaigns/{viewer_store.agent}", params={"rules": "nonesuch"})
    assert r.status_code == 404 and "no rule set 'nonesuch'" in r.json()["detail"]


def test_the_openapi_schema_documents_the_api(client: Client) -> None:
    schema = client.get("/schema").json()
    assert schema["info"]["title"] == "opeval viewer"
    paths = set(schema["paths"])
    assert paths >= {"/api/campaigns", "/api/campaigns/{campaign_id}", "/api/trials/{trial_id}",
                     "/api/trials/{trial_id}/events", "/api/compare", "/api/campaigns/{campaign_id}/rescored",
                     "/api/rule-sets"}
    assert not any(not p.startswith("/api/") for p in paths)  # pages stay out of the API
    assert "TrialDetail" in schema["components"]["schemas"]
    assert client.get("/schema/openapi.json").json()["paths"].keys() == schema["paths"].keys()


def test_static_assets(client: Client) -> None:
    css = client.get("/static/viewer.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/static/missing.css").status_code == 404


def test_the_viewer_never_writes_the_event_store(client: Client, viewer_store: ViewerStore) -> None:
    before = file_digest(viewer_store.path)
    s = viewer_store
    urls = ["/", "/?agent=runbook", f"/campaigns/{s.agent}", f"/campaigns/{s.agent}?rules={s.strict.key}",
            f"/trials/{s.thrashing_trial}", f"/trials/{s.running_trial}", f"/trials/{s.hostile_trial}",
            *(f"/trials/{s.thrashing_trial}/export/{f}" for f in ("md", "json", "html", "trace")),
            "/compare", f"/compare?a={s.base}&b={s.agent}", f"/compare?campaign={s.agent}",
            "/api/campaigns", f"/api/campaigns/{s.agent}", f"/api/trials/{s.thrashing_trial}",
            f"/api/trials/{s.thrashing_trial}/events", f"/api/compare?a={s.base}&b={s.agent}", "/api/rule-sets",
            "/schema", "/static/viewer.css", "/campaigns/ffff"]
    for url in urls:
        assert client.get(url).status_code in (200, 404), url
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)(f"/api/campaigns/{s.agent}").status_code == 405
    assert file_digest(viewer_store.path) == before


def _hold_read_models(path: Path) -> subprocess.Popen[str]:
    code = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_read_models_are_free_between_requests_and_busy_is_a_503(viewer_store: ViewerStore) -> None:
    app = create_app(viewer_store.path, busy_timeout_s=0.3, cache_size=0)
    with TestClient(app) as client:
        assert client.get(f"/campaigns/{viewer_store.agent}").status_code == 200
        holder = _hold_read_models(read_model_path(viewer_store.path))  # another process can take them now
        try:
            text = page(client, f"/campaigns/{viewer_store.agent}", 503)
            assert "in use by another opeval process" in text
            r = client.get("/api/campaigns")
            assert r.status_code == 503 and "in use" in r.json()["detail"]
            # A running trial needs only the event log.
            assert client.get(f"/trials/{viewer_store.running_trial}").status_code == 200
        finally:
            _release(holder)
        assert client.get(f"/campaigns/{viewer_store.agent}").status_code == 200


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.close()
    holder.wait(timeout=30)
    holder.stdout.close()


def test_answers_are_kept_until_the_log_or_the_read_models_change(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(path) as es:
        campaign, trial = start_trial(es, "cached")
        finish_trial(es, trial)
    with TestClient(create_app(path, busy_timeout_s=0.3)) as client:
        first = client.get("/api/campaigns").json()
        trial_page = client.get(f"/trials/{trial.id.hex}").text
        holder = _hold_read_models(read_model_path(path))
        try:  # nothing changed: answered without opening the read models
            assert client.get("/api/campaigns").json() == first
            assert client.get(f"/trials/{trial.id.hex}").text == trial_page
            with EventStore(path) as es:  # the log moves: the next answer needs the read models
                es.save(new_campaign("one more", 1))
            assert client.get("/api/campaigns").status_code == 503
        finally:
            _release(holder)
        assert [c["name"] for c in client.get("/api/campaigns").json()] == ["one more", "cached"]
        ReadModels(path).score(strict_rules())  # a new rule set changes the read models only
        assert len(client.get("/api/rule-sets").json()) == 2


def test_a_store_that_is_gone_is_a_503_not_a_new_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone.db"
    with TestClient(create_app(missing)) as client:
        assert "no store at" in page(client, "/", 503)
        assert client.get("/api/campaigns").status_code == 503
    assert list(tmp_path.iterdir()) == []


def test_an_empty_store_and_an_empty_campaign_render(store_path: Path) -> None:
    EventStore(store_path).close()
    with TestClient(create_app(store_path)) as client:
        assert "No campaigns in this store yet" in page(client, "/")
        with EventStore(store_path) as es:
            campaign = new_campaign("nothing yet", 3)
            es.save(campaign)
        text = page(client, f"/campaigns/{campaign.id.hex}")
        assert "nothing yet" in text and "No scored trials yet." in text
        assert "no agent trials" in text
        assert client.get(f"/api/campaigns/{campaign.id.hex}").json()["trials"] == []


def test_an_unexpected_failure_is_a_500_without_details(viewer_store: ViewerStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from opeval.viewer._data import StoreView

    def broken(self: StoreView, filters: dict[str, str | None]) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(StoreView, "campaigns", broken)
    with TestClient(create_app(viewer_store.path)) as client:
        text = page(client, "/", 500)
        assert "secret internals" not in text and "Back to the campaigns" in text
        r = client.get("/api/campaigns")
        assert r.status_code == 500 and "secret" not in r.text


def test_a_campaign_of_variants_ranks_them(store_path: Path) -> None:
    import random

    from opeval.projections.synthetic import make_trial

    with EventStore(store_path) as es:
        campaign = new_campaign("variants", 8)
        es.save(campaign)
        rng = random.Random(4)
        trials = [make_trial(campaign, i, rng, seconds=12, seed=i // 2,
                             variant="careful" if i % 2 else "hasty", agent="none" if i % 2 == 0 else "runbook")
                  for i in range(8)]
        es.save(campaign, *trials)
    with TestClient(app=create_app(store_path)) as client:
        ranking = json.loads(page(client, f"/api/campaigns/{campaign.id.hex[:8]}"))["ranking"]
        html = page(client, f"/campaigns/{campaign.id.hex[:8]}")
    overall = [g for g in ranking if g["scope"] == "all"]
    assert [g["rank"] for g in overall] == [1, 2] and {g["variant"] for g in overall} == {"careful", "hasty"}
    assert overall[0]["mean_composite"] >= overall[1]["mean_composite"]
    assert {g["scope"] for g in ranking} == {"all", "node_kill"}
    assert "Which configuration performs best" in html and "careful" in html and "hasty" in html


def test_trials_are_counted_by_index_and_one_trial_runs_are_told_apart(store_path: Path) -> None:
    """A resumed campaign's aborted attempt is shown apart, never as a trial past the plan;
    two one-trial runs show their seeds."""
    import random

    from opeval.events import Campaign
    from opeval.projections.synthetic import make_trial
    from tests.projections.helpers import aborted_control

    with EventStore(store_path) as es:
        resumed = new_campaign("resumed", 2)
        es.save(resumed)
        es.save(resumed, aborted_control(resumed, 0))
        es.save(resumed, make_trial(resumed, 0, random.Random(1), seconds=10),
                make_trial(resumed, 1, random.Random(2), seconds=10))
        for seed in (7, 8):
            single = Campaign._create(Campaign.CampaignStarted, name="etcd/node_kill/none", spec={"seed": seed},
                                      trials_planned=1, harness=resumed.harness)
            es.save(single)
            es.save(single, make_trial(single, 0, random.Random(seed), seconds=10, seed=seed, agent="none"))
    with TestClient(create_app(store_path)) as client:
        home = page(client, "/")
        items = {c["campaign_id"]: c for c in client.get("/api/campaigns").json()}
        detail = page(client, f"/campaigns/{resumed.id.hex}")
    assert items[resumed.id.hex]["done"] == 2 and items[resumed.id.hex]["trials"] == 3
    assert "3/2" not in home and ">2<span class=\"muted\">/2</span>" in home
    assert "etcd/node_kill/none seed 7" in home and "etcd/node_kill/none seed 8" in home
    assert "2 of 2 planned" in detail and "1 aborted attempt" in detail
    assert 'href="#trials"' in detail and 'id="trials"' in detail  # the trials table is linked from the top
    assert "aborted attempt" in home  # the outcome bar's key


def test_figures_only_an_agent_has_are_not_coloured_against_no_agent(client: Client,
                                                                    viewer_store: ViewerStore) -> None:
    detail = client.get(f"/api/campaigns/{viewer_store.agent}").json()
    metrics = {m["metric"]: m for m in detail["baseline"]["metrics"]}
    assert metrics["commands"]["directional"] is False and metrics["tokens"]["directional"] is False
    assert metrics["recovered"]["directional"] is True and metrics["ttr_s"]["directional"] is True
    html = page(client, f"/campaigns/{viewer_store.agent}")
    row = html.split("<td>commands", 1)[1].split("</tr>", 1)[0]
    assert "(no agent)" in row
    commands_tr = html[:html.index("<td>commands")].rsplit("<tr", 1)[1]
    assert "better" not in commands_tr and "worse" not in commands_tr
