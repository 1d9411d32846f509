"""The Trial aggregate: one subject, one fault, one agent (or none), start to finish.

Event classes are nested in the aggregate (the eventsourcing convention) and carry an
explicit ``TOPIC``: the stored topic never depends on where the class lives, so a log
written today replays after any refactoring. Changing a field means bumping
``class_version`` and adding an ``upcast_vN_vN+1`` static method.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from opeval.events._clock import time_to_detect
from opeval.events._types import (
    AgentSpec,
    ChaosSpec,
    ClusterState,
    HarnessInfo,
    MemberEndpoint,
    SandboxInfo,
    Scalar,
    TimeWindow,
    TrialConfig,
    upcast_cluster_state_v1,
)

#: Outcomes a trial can end with.
OUTCOMES = ("recovered", "not_recovered", "error", "aborted")


class TrialClosedError(RuntimeError):
    """An event was triggered on a trial that already finished."""


class Trial(Aggregate):
    """One trial. Its events, in order, are the contract described in DESIGN.md."""

    TOPIC = "opeval.trial:Trial"

    class Event(Aggregate.Event):
        """Base of every trial event; ``offset_s`` is monotonic seconds since start."""

        offset_s: float

        def apply(self, aggregate: Any) -> None:
            if aggregate.outcome is not None:
                raise TrialClosedError(
                    f"trial {aggregate.id} already finished; refusing {type(self).__name__}"
                )
            self.apply_to(aggregate)

        def apply_to(self, aggregate: Any) -> None:
            """Evolve the trial's state; most events only add to the log."""

    class Created(Aggregate.Created):
        """Base of the creation event (never stored itself)."""

        TOPIC = "opeval.trial:Created"

    class TrialStarted(Created):
        """The trial began: everything needed to reproduce it.

        ``sandbox`` says how the agent was isolated (None: no agent, or a log written
        before sandboxing, whose agents ran unisolated).
        """

        TOPIC = "opeval.trial:TrialStarted"
        class_version = 2
        campaign_id: UUID
        index: int
        subject: str
        runtime: str
        chaos: ChaosSpec
        agent: AgentSpec
        seed: int
        config: TrialConfig
        harness: HarnessInfo
        offset_s: float
        sandbox: SandboxInfo | None = None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Before v2 nothing recorded the sandbox: such agents ran unisolated."""
            state["sandbox"] = None

    class ClusterUp(Event):
        """Every member answered its health probe for the first time."""

        TOPIC = "opeval.trial:ClusterUp"
        members: list[MemberEndpoint]
        cluster_id: str
        time_to_healthy_s: float

    class StateSnapshot(Event):
        """The subject's state: ``phase`` is ``before``, ``periodic`` or ``after``."""

        TOPIC = "opeval.trial:StateSnapshot"
        class_version = 2
        phase: str
        state: ClusterState

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """v1 states carried etcd's fields at the top: they move into ``detail``."""
            upcast_cluster_state_v1(state["state"])

    class WorkloadStarted(Event):
        """The client loop began writing and reading."""

        TOPIC = "opeval.trial:WorkloadStarted"
        rate_hz: float
        key_prefix: str

    class WorkloadSampled(Event):
        """Client results over one window (about a second) of the trial."""

        TOPIC = "opeval.trial:WorkloadSampled"
        window: TimeWindow
        writes_ok: int
        writes_failed: int
        reads_ok: int
        reads_failed: int
        latency_p50_ms: float | None
        latency_p99_ms: float | None

    class WorkloadStopped(Event):
        """The client loop ended; totals and the windows with no acknowledged write."""

        TOPIC = "opeval.trial:WorkloadStopped"
        writes_ok: int
        writes_failed: int
        reads_ok: int
        reads_failed: int
        acknowledged: int
        unavailable: list[TimeWindow]
        longest_unavailable_s: float

    class ChaosInjected(Event):
        """The fault was applied (``target`` is the member it hit)."""

        TOPIC = "opeval.trial:ChaosInjected"
        kind: str
        target: str
        params: dict[str, Scalar]
        detail: dict[str, Scalar]

        def apply_to(self, aggregate: Any) -> None:
            aggregate.chaos_injected_at = self.offset_s

    class ChaosVerified(Event):
        """The fault's effect was observed on the subject: TTD and TTR count from here."""

        TOPIC = "opeval.trial:ChaosVerified"
        effect: str
        observations: dict[str, Scalar]

        def apply_to(self, aggregate: Any) -> None:
            aggregate.chaos_verified_at = self.offset_s

    class ChaosReverted(Event):
        """The harness undid the fault (faults with nothing to undo record none)."""

        TOPIC = "opeval.trial:ChaosReverted"
        kind: str
        target: str
        action: str

    class FaultDetected(Event):
        """The monitor saw a symptom, from the subject's own signals."""

        TOPIC = "opeval.trial:FaultDetected"
        symptoms: list[str]

        def apply_to(self, aggregate: Any) -> None:
            if aggregate.fault_detected_at is None:
                aggregate.fault_detected_at = self.offset_s

    class AgentStarted(Event):
        """The agent was paged: ``context`` is exactly what it was told."""

        TOPIC = "opeval.trial:AgentStarted"
        agent: AgentSpec
        context: str
        tools: list[str]

        def apply_to(self, aggregate: Any) -> None:
            aggregate.agent_started_at = self.offset_s

    class AgentReasoning(Event):
        """Text the agent produced (a model's text block, a runbook's note)."""

        TOPIC = "opeval.trial:AgentReasoning"
        step: int
        text: str

    class AgentCommandExecuted(Event):
        """One shell command the agent ran, exactly as written, and what came of it.

        ``stdout``/``stderr`` are the excerpts the agent saw; ``*_bytes`` the full sizes.
        ``exit_code`` is None if the command was killed at its timeout.
        """

        TOPIC = "opeval.trial:AgentCommandExecuted"
        step: int
        command: str
        exit_code: int | None
        timed_out: bool
        stdout: str
        stderr: str
        stdout_bytes: int
        stderr_bytes: int
        stdout_truncated: bool
        stderr_truncated: bool
        started_offset_s: float
        duration_s: float

    class CommandProposed(Event):
        """The agent proposed a command the approval policy gates, before it ran.

        ``command_class`` is the whole command's class, ``parts`` each part's (a pipeline's
        or chain's commands); ``gated_by`` the parts' classes the policy gates, ``mode`` what
        the policy does with them (``allow``, ``deny`` or ``ask``).
        """

        TOPIC = "opeval.trial:CommandProposed"
        step: int
        command: str
        command_class: str
        parts: list[str]
        gated_by: list[str]
        mode: str
        timeout_s: float

    class CommandDecided(Event):
        """What became of a proposed command: ``decision`` ``allowed`` or ``denied``;
        ``decided_by`` ``policy``, ``timeout`` or ``person:<who>``; ``waited_s`` how long
        the agent waited for it (excluded from its time to recover)."""

        TOPIC = "opeval.trial:CommandDecided"
        step: int
        command: str
        command_class: str
        mode: str
        decision: str
        decided_by: str
        reason: str
        proposed_offset_s: float
        waited_s: float

    class AgentUsage(Event):
        """One model API call's token usage and its cost (None: model not in the price table).

        ``model`` is the model the variant asked for, ``served_model`` the name the server
        answered with. ``input_tokens`` are the input tokens not read from or written to a
        cache; the cache's are beside them, so the call's input is the sum of the three.
        ``stop_reason`` is the API's own word, as it came. ``cut``: the trial's deadline
        cancelled the call before it answered (its tokens are then unknown, recorded as 0).
        ``latency_s``: from sending the request to its answer (or its cancellation).
        """

        TOPIC = "opeval.trial:AgentUsage"
        class_version = 2
        call: int
        model: str
        input_tokens: int
        output_tokens: int
        cost_usd: float | None
        cache_read_tokens: int = 0
        cache_write_tokens: int = 0
        served_model: str = ""
        stop_reason: str = ""
        latency_s: float | None = None
        cut: bool = False

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """v1 recorded neither cache tokens nor the stop reason; its model was the server's."""
            state.update(cache_read_tokens=0, cache_write_tokens=0, served_model=state["model"], stop_reason="",
                         latency_s=None, cut=False)

    class AgentToolError(Event):
        """A tool call the harness refused (``tool`` empty: the model called no tool at all);
        ``arguments`` exactly as sent, ``error`` what the model was told. It counts as a step."""

        TOPIC = "opeval.trial:AgentToolError"
        step: int
        tool: str
        arguments: str
        error: str

    class AgentFinished(Event):
        """The agent stopped: ``reason`` is done, max_steps, token_budget, time_budget,
        recovered (stopped because recovery was detected), end_turn (prose after a
        reminder), truncated (cut at the token limit), refusal, max_turns or error."""

        TOPIC = "opeval.trial:AgentFinished"
        reason: str
        summary: str
        steps: int
        declared_resolved: bool | None

    class MemberProcessExited(Event):
        """A member's process ended (``signal`` set if a signal ended it)."""

        TOPIC = "opeval.trial:MemberProcessExited"
        member: str
        pid: int
        exit_code: int | None
        signal: int | None

    class MemberProcessStarted(Event):
        """A member's process started; ``reason`` says who started it and why."""

        TOPIC = "opeval.trial:MemberProcessStarted"
        member: str
        pid: int
        restarts: int
        reason: str

    class RecoveryDetected(Event):
        """The recovery criteria held for the whole settle window.

        ``criteria_met_offset_s`` is when they first held; time to recover ends there.
        """

        TOPIC = "opeval.trial:RecoveryDetected"
        criteria_met_offset_s: float
        held_s: float

        def apply_to(self, aggregate: Any) -> None:
            aggregate.recovered_at = self.criteria_met_offset_s

    class DataSafetyChecked(Event):
        """Acknowledged writes read back after the incident."""

        TOPIC = "opeval.trial:DataSafetyChecked"
        acknowledged: int
        present: int
        missing: int
        wrong: int
        unreadable: int
        sample_missing: list[str]
        error: str | None

    class ClusterDown(Event):
        """Every member stopped and the trial's resources were released."""

        TOPIC = "opeval.trial:ClusterDown"
        graceful: bool
        detail: str

    class TrialAborted(Event):
        """The trial could not run to its end (interrupted, or its harness died)."""

        TOPIC = "opeval.trial:TrialAborted"
        reason: str
        reaped: list[str]

    class TrialFinished(Event):
        """The last event of every trial."""

        TOPIC = "opeval.trial:TrialFinished"
        outcome: str
        reason: str
        time_to_detect_s: float | None
        time_to_recover_s: float | None

        def apply_to(self, aggregate: Any) -> None:
            aggregate.outcome = self.outcome

    # --- state -----------------------------------------------------------------
    # Set by TrialStarted through the created-event machinery.
    campaign_id: UUID
    subject: str
    chaos: ChaosSpec
    agent: AgentSpec
    seed: int

    def __init__(  # noqa: PLR0913 - the trial's identity is this wide
        self,
        campaign_id: UUID,
        index: int,
        subject: str,
        runtime: str,
        chaos: ChaosSpec,
        agent: AgentSpec,
        seed: int,
        config: TrialConfig,
        harness: HarnessInfo,
        offset_s: float,
    ) -> None:
        self.campaign_id = campaign_id
        self.index = index
        self.subject = subject
        self.runtime = runtime
        self.chaos = chaos
        self.agent = agent
        self.seed = seed
        self.config = config
        self.harness = harness
        self.outcome: str | None = None
        self.chaos_injected_at: float | None = None
        self.chaos_verified_at: float | None = None
        self.fault_detected_at: float | None = None
        self.recovered_at: float | None = None
        self.agent_started_at: float | None = None

    def time_to_detect(self) -> float | None:
        """This trial's time to detect so far, from its own events, by the one definition
        (:func:`opeval.events.time_to_detect`); None for a control trial (chaos ``none``:
        no fault to detect, as the read models' ``trials.control`` says)."""
        if self.chaos.kind == "none":
            return None
        return time_to_detect(self.chaos_verified_at, self.fault_detected_at)

    def record(self, event_class: type[Trial.Event], **fields: Any) -> None:
        """Append an event of ``event_class`` to this trial's pending events."""
        self.trigger_event(event_class, **fields)
