"""What the viewer's JSON API returns (and its pages render): msgspec Structs, so the
OpenAPI schema documents every field."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from opeval.events import Words
# Rows of the read models, typed once in the query layer and shared with the CLI.
from opeval.projections import CampaignFilters as CampaignFilters
from opeval.projections import TrialScore as TrialScore


class Interval(msgspec.Struct, frozen=True):
    """A 95 % confidence interval."""

    low: float
    high: float


class OutcomeCounts(msgspec.Struct, kw_only=True):
    """Trials by outcome; ``running`` have no TrialFinished yet."""

    recovered: int = 0
    not_recovered: int = 0
    error: int = 0
    aborted: int = 0
    running: int = 0


class CampaignItem(msgspec.Struct, kw_only=True):
    """One campaign in the list, with the outcomes of its (matching) trials.

    ``trials`` counts attempts (an index run again after an aborted attempt counts twice);
    ``done`` counts indexes with a real outcome, the figure to hold against
    ``trials_planned``. ``title`` tells one-trial runs apart (their seed)."""

    campaign_id: str
    name: str
    title: str = ""
    started_at: str | None
    trials_planned: int | None
    trials: int
    done: int = 0
    finished: bool
    subjects: list[str]
    chaos: list[str]
    agents: list[str]
    outcomes: OutcomeCounts


class LeftOut(msgspec.Struct, kw_only=True):
    """What an aggregate leaves out or cannot vouch for, shown beside it."""

    aborted: int = 0
    running: int = 0
    errors: int = 0
    retried: int = 0
    unisolated: int = 0


class GroupSummary(msgspec.Struct, kw_only=True):
    """Aggregates of one agent/variant: rates and means with the intervals of :mod:`opeval.projections._intervals`."""

    agent: str
    variant: str
    trials: int
    recovered: int
    recovery_rate: float | None
    recovery_rate_ci: Interval | None
    mean_ttr_s: float | None
    mean_ttr_ci: Interval | None
    mean_composite: float | None
    mean_composite_ci: Interval | None
    mean_commands: float | None
    destructive: int
    lost_writes: int
    left_out: LeftOut


class ControlSummary(msgspec.Struct, kw_only=True):
    """Control trials (no fault injected) of one agent/variant: what a false alarm cost."""

    agent: str
    variant: str
    trials: int
    mean_commands: float | None
    mean_remediations: float | None
    destructive: int
    min_availability: float | None
    mean_availability: float | None
    lost_writes: int
    left_broken: int
    left_out: LeftOut


class VariantRank(msgspec.Struct, kw_only=True):
    """One configuration's place by mean composite score, over all fault trials (``scope``
    ``all``) or one chaos kind, with a bootstrap 95 % interval of that mean; beside it,
    the same configuration on control trials (``control_*``)."""

    scope: str
    rank: int
    variant: str
    agent: str
    trials: int
    mean_composite: float | None
    ci_low: float | None
    ci_high: float | None
    recovery_rate: float | None
    mean_ttr_s: float | None
    aborted: int = 0
    running: int = 0
    errors: int = 0
    retried: int = 0
    unisolated: int = 0
    control_trials: int = 0
    control_mean_remediations: float | None = None
    control_destructive: int = 0
    control_min_availability: float | None = None
    control_left_broken: int = 0


class MetricComparison(msgspec.Struct, kw_only=True):
    """One metric of two groups: mean, median, delta (b - a) and its bootstrap 95 % CI."""

    metric: str
    higher_is_better: bool
    a_n: int
    a_mean: float | None
    a_median: float | None
    b_n: int
    b_mean: float | None
    b_median: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    #: False where one side cannot have the figure at all (no agent runs a command, spends
    #: tokens or thrashes): the delta is shown, but neither better nor worse.
    directional: bool = True
    #: False where the comparison is paired but this metric is missing on a side in some pair:
    #: each side's own values are compared, unpaired.
    paired: bool = True


class ControlComparison(msgspec.Struct, kw_only=True):
    """The control trials of two groups on their false-alarm figures (commands,
    remediations, destructive, availability, lost writes, left broken)."""

    paired: bool
    a_trials: int
    b_trials: int
    metrics: list[MetricComparison]
    baseline_trials: int | None = None
    a_left_out: LeftOut = msgspec.field(default_factory=LeftOut)
    b_left_out: LeftOut = msgspec.field(default_factory=LeftOut)


class Comparison(msgspec.Struct, kw_only=True):
    """Two groups of fault trials metric by metric (paired by chaos, target and seed when
    possible), and their control trials apart (``controls``, None when there are none)."""

    paired: bool
    a_trials: int
    b_trials: int
    metrics: list[MetricComparison]
    baseline_trials: int | None = None
    a_left_out: LeftOut = msgspec.field(default_factory=LeftOut)
    b_left_out: LeftOut = msgspec.field(default_factory=LeftOut)
    controls: ControlComparison | None = None


class RuleSetInfo(msgspec.Struct, kw_only=True):
    """A scoring rule set the read models hold scores for."""

    name: str
    hash: str
    key: str
    is_default: bool


class CampaignDetail(msgspec.Struct, kw_only=True):
    """A campaign: its trials scored under ``rule_set``, aggregates of fault trials
    (``summary``) and of control trials (``controls``), and the agent against
    self-healing (``baseline``, or ``baseline_note`` saying why there is none)."""

    campaign_id: str
    name: str
    started_at: str | None
    trials_planned: int | None
    trials_scheduled: int | None
    finished: bool
    spec: dict[str, Any] | None
    rule_set: str
    outcomes: OutcomeCounts
    summary: list[GroupSummary]
    controls: list[ControlSummary]
    ranking: list[VariantRank]
    trials: list[TrialScore]
    baseline: Comparison | None
    baseline_note: str | None
    #: The name, with a one-trial run's seed (see CampaignItem).
    title: str = ""
    #: Indexes with a real outcome (``trials`` lists every attempt, aborted ones too).
    done: int = 0


class CommandRecord(msgspec.Struct, kw_only=True):
    """One command the agent ran, its class, and what it printed (untrusted text)."""

    version: int
    step: int
    offset_s: float
    command: str
    exit_code: int | None
    timed_out: bool
    duration_s: float
    truncated: bool
    command_class: str = msgspec.field(name="class")
    labelled_by: str | None
    thrashing: bool
    stdout: str
    stderr: str


class TrialEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event of a trial: its version (order), type, offset, a line for people, its data."""

    version: int
    type: str
    offset_s: float
    text: str
    data: dict[str, Any] | None = None


class DataSafety(msgspec.Struct, kw_only=True):
    """Were the acknowledged writes still readable after the incident?"""

    safe: bool
    acknowledged: int
    present: int
    missing: int
    wrong: int
    unreadable: int
    sample_missing: list[str]
    error: str | None


class FaultParam(msgspec.Struct, kw_only=True):
    """One parameter of the trial's fault as its kind declares it: the value given, or its
    default (``default`` true); ``help`` says what it does."""

    name: str
    value: str
    default: bool
    help: str


class TrialDetail(msgspec.Struct, kw_only=True):
    """A trial: what it was, how it went (``score`` once finished), every command and event."""

    trial_id: str
    campaign_id: str
    campaign_name: str | None
    running: bool
    outcome: str | None
    reason: str | None
    subject: str
    runtime: str
    chaos: str
    target: str
    victim: str | None
    #: A control trial: no fault injected, the agent paged anyway.
    control: bool
    agent: str
    variant: str
    model: str | None
    seed: int
    restart_policy: str
    timeout_s: float
    settle_s: float
    fault_params: list[FaultParam]
    started_at: str
    rule_set: str | None
    score: TrialScore | None
    data_safety: DataSafety | None
    commands: list[CommandRecord]
    events: list[TrialEvent]
    #: The subject's words for the workload's counts and its leader.
    words: Words = msgspec.field(default_factory=Words)


class ScoreChange(msgspec.Struct, kw_only=True):
    """One trial's verdict and score under two rule sets."""

    trial_id: str
    agent: str | None
    a_recovered: bool | None
    b_recovered: bool | None
    a_score: float | None
    b_score: float | None
    delta: float | None


class CampaignComparison(msgspec.Struct, kw_only=True):
    """Two campaigns under one rule set (``mode`` campaigns), or one campaign under two
    rule sets (``mode`` rule_sets, with each trial's change)."""

    mode: Literal["campaigns", "rule_sets"]
    a: str
    b: str
    a_label: str
    b_label: str
    rule_set: str | None
    campaign_id: str | None
    comparison: Comparison
    a_summary: list[GroupSummary] | None = None
    b_summary: list[GroupSummary] | None = None
    changes: list[ScoreChange] | None = None


class PendingApproval(msgspec.Struct, kw_only=True):
    """A command the approval gate holds for a person's decision (policy ``ask``)."""

    step: int
    command: str
    command_class: str
    gated_by: list[str]
    proposed_offset_s: float
    timeout_s: float

