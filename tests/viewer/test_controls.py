"""The viewer on control trials (no fault injected): marked as such everywhere, their
false-alarm figures shown, and never in a fault aggregate or chart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.projections.synthetic import CONTROL_ALERT, new_campaign
from opeval.store import EventStore
from opeval.viewer import create_app
from opeval.viewer._models import CampaignDetail
from opeval.viewer._pages import campaign_charts
from tests.projections.helpers import ControlStore, write_control_store
from tests.viewer.helpers import _HARNESS

Client = TestClient[Litestar]
BADGE = '<span class="badge control">control: no fault injected</span>'


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ControlStore:
    return write_control_store(tmp_path_factory.mktemp("controls") / "events.db")


@pytest.fixture(scope="module")
def client(store: ControlStore) -> Iterator[Client]:
    with TestClient(create_app(store.path, poll_interval_s=0.05)) as c:
        yield c


def get(client: Client, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text[:500])
    return r.text


def test_the_campaign_api_keeps_controls_out_of_fault_aggregates(client: Client, store: ControlStore) -> None:
    api = client.get(f"/api/campaigns/{store.mixed[:8]}").json()
    controls = {t["trial_id"] for t in api["trials"] if t["control"]}
    assert controls == {store.harmful, store.quiet, store.v2, store.aborted}
    (runbook,) = api["summary"]
    assert runbook["trials"] == 3 and runbook["left_out"]["aborted"] == 0
    by_variant = {g["variant"]: g for g in api["controls"]}
    d = by_variant["default"]
    assert (d["trials"], d["mean_remediations"], d["destructive"], d["lost_writes"], d["left_broken"]) == (
        2, 1.0, 1, 2, 1)
    assert d["min_availability"] == pytest.approx(0.85) and d["left_out"]["aborted"] == 1
    assert {g["scope"] for g in api["ranking"]} == {"all", "node_kill"}
    ranked = {g["variant"]: g for g in api["ranking"] if g["scope"] == "all"}
    assert ranked["v2"]["trials"] == 0 and ranked["v2"]["control_trials"] == 1
    assert ranked["default"]["control_left_broken"] == 1
    harmful = next(t for t in api["trials"] if t["trial_id"] == store.harmful)
    assert (harmful["remediations"], harmful["left_broken"], harmful["ttr_s"], harmful["composite"]) == (
        2, True, None, None)
    baseline = api["baseline"]
    assert baseline["a_trials"] == baseline["b_trials"] == 3
    assert baseline["controls"]["baseline_trials"] == 1 and baseline["controls"]["b_trials"] == 3


def test_the_campaign_page_has_a_controls_section_and_marks_control_trials(client: Client,
                                                                          store: ControlStore) -> None:
    text = get(client, f"/campaigns/{store.mixed}")
    assert "Controls: no fault injected" in text and '<table class="data controls">' in text
    assert text.count('<span class="badge control"') == 4  # one per control trial in the trials table
    assert "left broken</span>" in text
    section = text[text.index('<table class="data controls">'):text.index("</table>", text.index(
        '<table class="data controls">'))]
    assert "85.0%" in section and "92.5%" in section  # lowest and mean availability of the default variant
    assert "ctl. remed." in text and "ctl. broken" in text  # the ranking says how each variant did on controls
    assert "<span>fault trials recovered</span>" in text and "1 left broken</em>" in text
    assert "On control trials: the harm each did to a healthy system" in text

    sorted_page = get(client, f"/campaigns/{store.mixed}?sort=remediations&order=desc")
    assert sorted_page.index(store.harmful[:8]) < sorted_page.index(store.quiet[:8])


def test_campaign_charts_leave_control_trials_out(client: Client, store: ControlStore) -> None:
    detail = msgspec.convert(client.get(f"/api/campaigns/{store.mixed}").json(), CampaignDetail)
    without = msgspec.structs.replace(detail, trials=[t for t in detail.trials if not t.control])
    assert campaign_charts(detail) == campaign_charts(without)
    assert campaign_charts(detail)  # the fault trials still have their charts


def test_a_control_trial_page_shows_the_badge_and_the_false_alarm(client: Client, store: ControlStore) -> None:
    text = get(client, f"/trials/{store.harmful}")
    assert BADGE in text and "<h2>False alarm</h2>" in text
    assert "time to recover" not in text and "the system was unhealthy at the end" in text
    assert "85.0%" in text and "remediations" in text
    api = client.get(f"/api/trials/{store.harmful[:8]}").json()
    assert api["control"] is True
    assert (api["score"]["remediations"], api["score"]["destructive"], api["score"]["left_broken"]) == (2, 1, True)

    base = get(client, f"/trials/{store.baseline_control}")
    assert BADGE in base and "No agent (a baseline control)" in base and "healthy at the end" in base

    fault = get(client, f"/trials/{store.faults[0]}")
    assert BADGE not in fault and "time to recover" in fault
    assert client.get(f"/api/trials/{store.faults[0]}").json()["control"] is False

    md = get(client, f"/trials/{store.harmful}/export/md")
    assert md.startswith("# Postmortem: etcd control trial, no fault injected")


def test_a_running_control_trial_is_marked_before_the_read_models_know_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(path) as es:
        campaign = new_campaign("running control", 1)
        trial = Trial._create(
            Trial.TrialStarted, id=uuid.uuid4(), campaign_id=campaign.id, index=0, subject="etcd", runtime="local",
            chaos=ChaosSpec(kind="none", target="none", params={"alert": CONTROL_ALERT}),
            agent=AgentSpec(name="runbook"), seed=1, config=TrialConfig(restart_policy="never"), harness=_HARNESS,
            offset_s=0.0)
        campaign.trigger_event(campaign.TrialScheduled, trial_id=trial.id, index=0)
        trial.record(Trial.ChaosInjected, kind="none", target="none", params={"alert": CONTROL_ALERT},
                     detail={"control": True}, offset_s=1.0)
        es.save(campaign, trial)
    with TestClient(create_app(path)) as c:
        api = c.get(f"/api/trials/{trial.id.hex}").json()
        text = get(c, f"/trials/{trial.id.hex}")
    assert api["running"] is True and api["score"] is None and api["control"] is True
    assert BADGE in text


def test_comparing_campaigns_shows_their_controls_apart(client: Client, store: ControlStore) -> None:
    text = get(client, f"/compare?a={store.baseline}&b={store.mixed}")
    assert "Control trials (no fault injected): false-alarm figures" in text
    api = client.get("/api/compare", params={"a": store.baseline, "b": store.mixed}).json()
    assert api["comparison"]["a_trials"] == 3 and api["comparison"]["controls"]["a_trials"] == 1
    assert [m["metric"] for m in api["comparison"]["controls"]["metrics"]] == [
        "commands", "remediations", "destructive", "availability", "lost_writes", "left_broken"]


def test_the_openapi_schema_documents_the_control_figures(client: Client) -> None:
    schema = client.get("/schema/openapi.json").json()
    components = schema["components"]["schemas"]
    assert {"ControlSummary", "ControlComparison"} <= set(components)
    assert {"control", "remediations", "left_broken"} <= set(components["TrialScore"]["properties"])
    assert "controls" in components["CampaignDetail"]["properties"]
