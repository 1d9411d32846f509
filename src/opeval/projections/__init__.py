"""Projections: the event log read into DuckDB read models and scores under rule sets
(commands classified by :mod:`opeval.commands`). Analysis never writes to the event store."""

from opeval.projections._analysis import (
    COMPARED,
    CONTROL_COMPARED,
    CONTROL_KIND,
    REAL_OUTCOMES,
    approval_summary,
    campaign_overview,
    campaign_title,
    campaign_rows,
    compare_baseline,
    compare_groups,
    control_summary,
    controls,
    denied_commands,
    false_alarms,
    faults,
    left_out,
    model_use_line,
    measured,
    rank_variants,
    summary,
    trial_scores,
)
from opeval.commands import CLASSES, classify
from opeval.projections._engine import DERIVED, TABLES, ReadModels, file_digest, query, read_model_path
from opeval.projections._rules import METRICS, RuleSet

__all__ = ["REAL_OUTCOMES", "approval_summary", "denied_commands", "campaign_overview", "campaign_title", "COMPARED", "CONTROL_COMPARED", "CONTROL_KIND", "campaign_rows", "compare_baseline", "compare_groups",
           "control_summary", "controls", "false_alarms", "faults", "left_out", "measured", "model_use_line",
           "rank_variants",
           "summary", "trial_scores", "CLASSES", "DERIVED", "METRICS", "TABLES", "ReadModels", "RuleSet", "classify", "file_digest", "query",
           "read_model_path"]
