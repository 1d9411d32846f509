"""The viewer over a PostgreSQL store: a live trial's stream is woken by the server's
NOTIFY, not by polling."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient

from opeval.store import EventStore
from opeval.viewer import create_app
from tests.viewer.helpers import finish_trial, start_trial
from tests.viewer.test_pages import _sse

pytestmark = pytest.mark.integration


def test_the_live_stream_wakes_on_notify(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with EventStore(postgres_url) as es:
        campaign, trial = start_trial(es, "live")
        seen = trial.version
    # A poll interval of an hour: the stream can only end in time if NOTIFY wakes it.
    app = create_app(postgres_url, poll_interval_s=3600)

    def finish_later() -> None:
        time.sleep(0.4)
        with EventStore(postgres_url) as es:
            finish_trial(es, trial, campaign)

    writer = threading.Thread(target=finish_later)
    with TestClient(app, timeout=60) as client:
        writer.start()
        r = client.get(f"/api/trials/{trial.id.hex[:8]}/events", params={"after": seen})
        writer.join()
        assert r.status_code == 200
        messages = _sse(r.text)
        events = [m for m in messages if m.get("event") == "trial-event"]
        assert [int(m["id"]) for m in events] == list(range(seen + 1, trial.version + 1))
        assert json.loads(events[-1]["data"])["type"] == "TrialFinished"
        assert messages[-1]["event"] == "finished"
        assert trial.id.hex in client.get(f"/trials/{trial.id.hex}").text  # pages read the database too
