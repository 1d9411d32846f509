"""Postmortems of one trial, exported from the read models: Markdown, JSON, a standalone
HTML page, or a Chrome trace (Perfetto, ``chrome://tracing``). ``opeval export`` and the
viewer's export links both write them here."""

from __future__ import annotations

import json

import duckdb

from opeval.errors import UsageError
from opeval.export._html import to_html
from opeval.export._markdown import md_block, md_cell, md_code, md_text, timeline, to_markdown
from opeval.export._postmortem import Postmortem, load_postmortem
from opeval.export._trace import to_trace
from opeval.projections import RuleSet, false_alarms, trial_events

#: Each format and the media type it is served as.
FORMATS = {"md": "text/plain; charset=utf-8", "json": "application/json", "html": "text/html; charset=utf-8",
           "trace": "application/json"}


def export_trial(con: duckdb.DuckDBPyConnection, rules: RuleSet, trial_id: str, fmt: str) -> str:
    """A postmortem of one trial as ``md``, ``json``, ``html`` or ``trace``. A control
    trial's says no fault was injected and gives its false-alarm figures (JSON:
    ``false_alarms``) instead of detection and recovery times."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: choose {', '.join(FORMATS)}")
    pm = load_postmortem(con, rules, trial_id)
    if fmt == "json":
        events = [{"position": e.position, "version": e.version, "type": e.type, "state": json.loads(e.state)}
                  for e in trial_events(con, trial_id)]
        return json.dumps({"trial": pm.trial, "rule_set": rules.key, "false_alarms": false_alarms(pm.trial),
                           "commands": pm.commands, "events": events}, indent=2, default=str)
    if fmt == "md":
        return to_markdown(pm)
    if fmt == "html":
        return to_html(pm)
    return to_trace(pm)


__all__ = ["FORMATS", "Postmortem", "export_trial", "load_postmortem", "md_block", "md_cell", "md_code", "md_text",
           "timeline", "to_html", "to_markdown", "to_trace"]
