"""One trial's time to detect is one number: the one ``TrialFinished`` records and ``run``
prints, that ``show`` lists, ``analyze --json`` reports, the viewer's trial page and its
data carry and every export format writes. So is its time to recover."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from litestar.testing import TestClient

from opeval.events import Trial
from opeval.store import EventStore
from opeval.viewer import create_app
from tests.opeval_cli import opeval

pytestmark = pytest.mark.integration


def test_every_view_shows_the_time_to_detect_the_trial_recorded(store_path: Path, no_leaks: None) -> None:
    s = ["--store", str(store_path)]
    ran = opeval("run", "--agent", "runbook", "--restart-policy", "never", "--seed", "7", "--timeout", "30", *s,
                 check=True).stdout
    with EventStore(store_path, writable=False) as es:
        (finished,) = [e for _, e in es.iter_events(topics=["opeval.trial:TrialFinished"])]
        events = es.events(finished.originator_id)
    trial = finished.originator_id.hex
    assert finished.outcome == "recovered", ran
    ttd, ttr = finished.time_to_detect_s, finished.time_to_recover_s
    assert ttd is not None and ttr is not None
    # The number is the log's own: the first alert's offset less the verification's.
    verified = next(e.offset_s for e in events if isinstance(e, Trial.ChaosVerified))
    detected = next(e.offset_s for e in events if isinstance(e, Trial.FaultDetected))
    assert ttd == max(0.0, detected - verified)
    ttd_text, ttr_text = f"{ttd:.3f}", f"{ttr:.3f}"

    assert re.search(rf"trial {trial[:8]}\w*: recovered - .* \(TTD {ttd_text}s, TTR {ttr_text}s\)", ran), ran
    shown = opeval("show", trial[:8], "--wide", *s, check=True).stdout
    assert f"(TTD {ttd_text}s, TTR {ttr_text}s)" in shown, shown

    analyzed = json.loads(opeval("analyze", trial[:8], "--json", *s, check=True).stdout)
    (row,) = analyzed["trials"]
    assert row["ttd_s"] == ttd and row["ttr_s"] == ttr

    with TestClient(create_app(store_path)) as client:
        data = client.get(f"/api/trials/{trial}").json()
        page = client.get(f"/trials/{trial}").text
        exported = {fmt: client.get(f"/trials/{trial}/export/{fmt}").text for fmt in ("md", "json", "trace")}
    assert data["score"]["ttd_s"] == ttd and data["score"]["ttr_s"] == ttr
    assert re.search(rf"time to detect</span><strong>{ttd_text} s<", page)
    assert re.search(rf"time to recover</span><strong>{ttr_text} s<", page)

    md = opeval("export", trial[:8], *s, check=True).stdout
    assert md == exported["md"].rstrip("\n") + "\n" or md.rstrip("\n") == exported["md"].rstrip("\n")
    assert f"**Time to detect:** {ttd_text} s; **time to recover:** {ttr_text} s" in md
    assert f"(TTD {ttd_text}s, TTR {ttr_text}s)" in md  # the timeline's TrialFinished line
    assert json.loads(exported["json"])["trial"]["ttd_s"] == ttd
    assert json.loads(exported["trace"])["otherData"]["ttd_s"] == ttd
