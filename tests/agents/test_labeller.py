"""Model labels for commands the rules leave unknown: recorded as events first, then used
by the read models (incrementally and on rebuild) without calling a model again."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx  # the anthropic SDK's own HTTP client package
import pytest

from opeval.agents import CommandLabeller, LabellingFailed, Price
from opeval.cli import main
from opeval.events import CommandLabels
from opeval.projections import ReadModels, RuleSet, file_digest, query, trial_scores
from opeval.projections.synthetic import make_trial, new_campaign
from opeval.store import EventStore

MODEL = "claude-haiku-4-5"
ODD = ["frobnicate --heal {v}", "cluster-doctor --inspect", "nodectl status"]


def _answer(classes: list[dict[str, Any]], tokens: tuple[int, int] = (400, 60)) -> httpx.Response:
    return httpx.Response(200, json={
        "id": "msg_label", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "tool_use",
        "stop_sequence": None, "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "record_classes", "input": {"classes": classes}}],
    })


def _store_with_odd_commands(store_path: Path, trials: int = 6) -> None:
    rng = random.Random(11)
    with EventStore(store_path) as store:
        campaign = new_campaign("odd", trials)
        store.save(campaign)
        store.save(campaign, *[make_trial(campaign, i, rng, seconds=15, commands=ODD) for i in range(trials)])


def _unknown(rm: ReadModels) -> list[str]:
    with rm.connect() as con:
        rows = query(con, "SELECT DISTINCT command FROM commands WHERE class = 'unknown' ORDER BY command")
    return [r["command"] for r in rows]


def _label(store_path: Path, commands: list[str], handler: Any, **kw: Any) -> Any:
    labeller = CommandLabeller(MODEL, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)), **kw)
    with EventStore(store_path) as store:
        return anyio.run(lambda: labeller.label(store, commands, prices={"claude-haiku-4-5": Price(1.0, 5.0, 0.1, 1.25)}))


def test_labels_are_recorded_then_used_by_the_read_models(store_path: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    _store_with_odd_commands(store_path)
    inc = ReadModels(store_path, tmp_path / "inc.duckdb")
    inc.update()
    unknown = _unknown(inc)
    assert unknown and all(c.startswith(("frobnicate", "cluster-doctor")) for c in unknown)
    inc.score(RuleSet.default())
    with inc.connect() as con:
        before = {r["trial_id"]: r for r in trial_scores(con, RuleSet.default())}

    sent: list[dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content)
        sent.append(body)
        assert body["tool_choice"] == {"type": "tool", "name": "record_classes"}
        listed = body["messages"][0]["content"].splitlines()[1:]
        return _answer([{"index": i, "label": "read_only" if "--inspect" in line else "remediation",
                         "rationale": f"because {i}"} for i, line in enumerate(listed)])

    result = _label(store_path, unknown, handler)
    assert len(sent) == 1 and result.calls == 1
    assert {lab["command"]: lab["label"] for lab in result.labels} == {
        c: "read_only" if "--inspect" in c else "remediation" for c in unknown}
    assert result.cost_usd == pytest.approx((400 * 1.0 + 60 * 5.0) / 1e6)

    # recorded first: the answers are events in the store
    with EventStore(store_path, writable=False) as store:
        stream = store.labels(MODEL)
        assert stream is not None and set(stream.labels) == set(unknown)
        kinds = [type(e).__name__ for e in store.events(CommandLabels.id_for(MODEL))]
    assert kinds == ["LabelsStarted", "ModelCalled"] + ["CommandClassified"] * len(unknown)

    # the read models pick them up incrementally: classes, the model's name, the scores
    digest = file_digest(store_path)
    inc.update()
    assert _unknown(inc) == []
    with inc.connect() as con:
        labelled = query(con, "SELECT DISTINCT command, class, labelled_by FROM commands "
                              "WHERE labelled_by IS NOT NULL ORDER BY command")
        after = {r["trial_id"]: r for r in trial_scores(con, RuleSet.default())}
        rule_class = query(con, "SELECT DISTINCT class, labelled_by FROM commands WHERE command = 'nodectl status'")
    assert {r["command"] for r in labelled} == set(unknown) and {r["labelled_by"] for r in labelled} == {MODEL}
    assert rule_class == [{"class": "read_only", "labelled_by": None}]  # the rules' answer is kept where they have one
    fixes = [t for t in after if before[t]["first_remediation_s"] is None and after[t]["first_remediation_s"] is not None]
    assert fixes, "a command now known to be a remediation must give a time to first remediation"

    # a rebuild replays the labels from the log: identical tables, no model, the store untouched
    full = ReadModels(store_path, tmp_path / "full.duckdb")
    full.rebuild()
    full.score(RuleSet.default())
    assert inc.content_hash() == full.content_hash()
    assert file_digest(store_path) == digest
    assert len(sent) == 1


def test_a_failed_call_keeps_what_earlier_calls_recorded(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    _store_with_odd_commands(store_path, trials=1)
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return _answer([{"index": 0, "label": "destructive", "rationale": "wipes things"},
                            {"index": 1, "label": "bogus-class", "rationale": "not a class"}])
        return httpx.Response(500, json={"type": "error", "error": {"type": "api_error", "message": "down"}})

    with pytest.raises(LabellingFailed, match="labels saved so far are kept"):
        _label(store_path, ["wipe-it --now", "mystery", "third-one"], handler, batch=2, max_retries=0)
    with EventStore(store_path, writable=False) as store:
        stream = store.labels(MODEL)
    # the first answer is durable; a class outside the four is not recorded (asked again next time)
    assert stream is not None and stream.labels == {"wipe-it --now": "destructive"}


def test_classify_lists_what_it_would_send_and_needs_a_key(store_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _store_with_odd_commands(store_path, trials=3)
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--all", "--dry-run", "--json", "--store", str(store_path)])
    assert exit_.value.code in (0, None)
    pending = json.loads(capsys.readouterr().out)["pending"]
    assert pending and all(c.startswith(("frobnicate", "cluster-doctor")) for c in pending)

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    digest = file_digest(store_path)
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--all", "--store", str(store_path)])
    assert exit_.value.code == 2
    assert "ANTHROPIC_API_KEY is not set" in capsys.readouterr().err
    assert file_digest(store_path) == digest
