"""Projections: the event log read into DuckDB read models and scores under rule sets
(commands classified by :mod:`opeval.commands`). Analysis never writes to the event store.

Every read of the read models goes through the query functions exported here (typed
rows); no other package writes SQL against them."""

from opeval.projections._analysis import (
    COMPARED,
    CONTROL_COMPARED,
    CONTROL_KIND,
    compare_baseline,
    compare_groups,
    control_summary,
    controls,
    false_alarms,
    faults,
    left_out,
    model_use_line,
    measured,
    rank_variants,
    summary,
)
from opeval.commands import CLASSES, classify
from opeval.projections._engine import DERIVED, TABLES, ReadModels, file_digest, query, read_model_path
from opeval.projections._queries import (
    REAL_OUTCOMES,
    TRIAL_FILTERS,
    ApprovalGate,
    CampaignFilters,
    CampaignOverview,
    CampaignRecord,
    CommandRow,
    DeniedCommand,
    EventRow,
    RuleSetRow,
    TrialListing,
    TrialScore,
    approval_summary,
    campaign_filters,
    campaign_names,
    campaign_overview,
    campaign_record,
    campaign_rows,
    campaign_title,
    denied_commands,
    find_rule_set,
    has_rule_set,
    log_position,
    rule_sets,
    thrashing_positions,
    trial_commands,
    trial_events,
    trial_listing,
    trial_score,
    trial_scores,
    unknown_commands,
)
from opeval.projections._rules import METRICS, RuleSet

__all__ = ["REAL_OUTCOMES", "TRIAL_FILTERS", "approval_summary", "denied_commands", "campaign_overview",
           "campaign_title", "COMPARED", "CONTROL_COMPARED", "CONTROL_KIND", "campaign_rows", "compare_baseline",
           "compare_groups", "control_summary", "controls", "false_alarms", "faults", "left_out", "measured",
           "model_use_line", "rank_variants", "summary", "trial_scores", "CLASSES", "DERIVED", "METRICS", "TABLES",
           "ReadModels", "RuleSet", "classify", "file_digest", "query", "read_model_path",
           "ApprovalGate", "CampaignFilters", "CampaignOverview", "CampaignRecord", "CommandRow", "DeniedCommand", "EventRow", "RuleSetRow", "TrialListing",
           "TrialScore", "campaign_filters", "campaign_names", "campaign_record", "find_rule_set", "has_rule_set",
           "log_position", "rule_sets", "thrashing_positions", "trial_commands", "trial_events", "trial_listing", "trial_score",
           "unknown_commands"]
