"""The event contract: aggregates, their events, the value types they carry, the codec.

Stored topics are explicit (``opeval.trial:ClusterUp``) and registered here, so a log
written by any version of opeval resolves after classes move.
"""

from __future__ import annotations

from eventsourcing.utils import get_topic

from opeval.events._approval import DECISIONS, Approval, ApprovalDecidedError
from opeval.events._campaign import Campaign
from opeval.events._clock import clock_text, time_to_detect, time_to_recover
from opeval.events._verdicts import MUTATING, data_safe, thrashing_repeats
from opeval.events._codec import MsgspecMapper, MsgspecTranscoder
from opeval.events._labels import CommandLabels
from opeval.events._render import Words, describe, event_json, member_summary
from opeval.events._trial import OUTCOMES, Trial, TrialClosedError
from opeval.events._types import (
    AgentSpec,
    ChaosSpec,
    ClusterState,
    HarnessInfo,
    MemberEndpoint,
    MemberState,
    SandboxInfo,
    Scalar,
    TimeWindow,
    TrialConfig,
)

#: Every event class that can be stored, in the order of a trial's life.
TRIAL_EVENTS: tuple[type, ...] = (
    Trial.TrialStarted,
    Trial.ClusterUp,
    Trial.StateSnapshot,
    Trial.WorkloadStarted,
    Trial.WorkloadSampled,
    Trial.ChaosInjected,
    Trial.ChaosVerified,
    Trial.FaultDetected,
    Trial.AgentStarted,
    Trial.AgentReasoning,
    Trial.AgentCommandExecuted,
    Trial.CommandProposed,
    Trial.CommandDecided,
    Trial.AgentUsage,
    Trial.AgentToolError,
    Trial.AgentFinished,
    Trial.MemberProcessExited,
    Trial.MemberProcessStarted,
    Trial.ChaosReverted,
    Trial.RecoveryDetected,
    Trial.WorkloadStopped,
    Trial.DataSafetyChecked,
    Trial.ClusterDown,
    Trial.TrialAborted,
    Trial.TrialFinished,
)
CAMPAIGN_EVENTS: tuple[type, ...] = (
    Campaign.CampaignStarted,
    Campaign.TrialScheduled,
    Campaign.CampaignFinished,
)
LABEL_EVENTS: tuple[type, ...] = (
    CommandLabels.LabelsStarted,
    CommandLabels.ModelCalled,
    CommandLabels.CommandClassified,
)
APPROVAL_EVENTS: tuple[type, ...] = (
    Approval.ApprovalRequested,
    Approval.ApprovalDecided,
)
ALL_EVENTS = TRIAL_EVENTS + CAMPAIGN_EVENTS + LABEL_EVENTS + APPROVAL_EVENTS

#: topic -> class, for readers that dispatch on the stored topic.
EVENT_BY_TOPIC: dict[str, type] = {get_topic(cls): cls for cls in ALL_EVENTS}


def event_name(cls_or_topic: type | str) -> str:
    """The short display name of an event class or stored topic (``ClusterUp``)."""
    topic = cls_or_topic if isinstance(cls_or_topic, str) else get_topic(cls_or_topic)
    return topic.rpartition(":")[2]


__all__ = [
    "ALL_EVENTS",
    "APPROVAL_EVENTS",
    "DECISIONS",
    "Approval",
    "ApprovalDecidedError",
    "CAMPAIGN_EVENTS",
    "EVENT_BY_TOPIC",
    "LABEL_EVENTS",
    "OUTCOMES",
    "TRIAL_EVENTS",
    "Words",
    "AgentSpec",
    "Campaign",
    "CommandLabels",
    "ChaosSpec",
    "ClusterState",
    "HarnessInfo",
    "MemberEndpoint",
    "MemberState",
    "MsgspecMapper",
    "MsgspecTranscoder",
    "SandboxInfo",
    "Scalar",
    "TimeWindow",
    "Trial",
    "TrialClosedError",
    "TrialConfig",
    "MUTATING",
    "clock_text",
    "data_safe",
    "thrashing_repeats",
    "describe",
    "time_to_detect",
    "time_to_recover",
    "event_json",
    "event_name",
    "member_summary",
]
