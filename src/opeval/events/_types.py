"""Value types carried inside events: msgspec Structs, so they cross every boundary
(the store, the CLI's --json, the read models) with one exact encoding."""

from __future__ import annotations

from msgspec import Struct, field

#: A scalar that may appear in free-form parameter maps.
Scalar = str | int | float | bool | None


class ChaosSpec(Struct, frozen=True, kw_only=True):
    """What fault to inject: its kind, whom it targets, and its parameters."""

    kind: str
    target: str = "random"
    params: dict[str, Scalar] = field(default_factory=dict)


class AgentSpec(Struct, frozen=True, kw_only=True):
    """Who repairs the fault. ``name`` ``none`` is the baseline: no agent at all."""

    name: str = "none"
    variant: str = "default"
    config: dict[str, Scalar] = field(default_factory=dict)


class TrialConfig(Struct, frozen=True, kw_only=True):
    """Knobs of one trial that the analysis needs to interpret its events."""

    members: int = 3
    restart_policy: str = "on-failure"
    timeout_s: float = 60.0
    settle_s: float = 2.0
    poll_interval_s: float = 0.1
    snapshot_interval_s: float = 1.0
    workload_rate_hz: float = 50.0
    warmup_s: float = 1.0
    verify_timeout_s: float = 10.0


class HarnessInfo(Struct, frozen=True, kw_only=True):
    """The process that ran a trial, so a dead harness can be told from a live one."""

    host: str
    pid: int
    start_ticks: int
    version: str


class SandboxInfo(Struct, frozen=True, kw_only=True):
    """How the agent's commands were isolated from the harness (recorded in TrialStarted).

    ``mechanism`` is ``bubblewrap`` or ``none`` (unisolated: the agent ran beside the
    harness, so its score cannot be trusted the same way).
    """

    mechanism: str
    version: str = ""
    user: str = ""
    namespaces: list[str] = field(default_factory=list)
    network: str = ""
    mounts: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def isolated(self) -> bool:
        """True when the agent could not reach the harness."""
        return self.mechanism != "none"


class MemberEndpoint(Struct, frozen=True, kw_only=True):
    """Where a member of the subject can be reached."""

    name: str
    client_url: str
    peer_url: str
    member_id: str = ""


class MemberState(Struct, frozen=True, kw_only=True):
    """One member as the monitor saw it at one moment.

    The fields are what every subject has; ``role`` is the subject's own word for the
    member's part (``leader``, ``follower``, ``primary``, ``replica``...), and ``detail``
    holds whatever else the subject reports (etcd: member id, raft term, revision...).
    """

    name: str
    process_up: bool
    reachable: bool = False
    healthy: bool = False
    role: str | None = None
    alarms: list[str] = field(default_factory=list)
    error: str | None = None
    detail: dict[str, Scalar] = field(default_factory=dict)


class ClusterState(Struct, frozen=True, kw_only=True):
    """The whole subject at one moment: every expected member plus a summary.

    ``leader`` is the member the others follow, for systems that have one (None: none
    agreed, or the system has no such member); ``detail`` is the subject's own summary.
    """

    members: list[MemberState]
    leader: str | None = None
    healthy: int = 0
    expected: int = 0
    detail: dict[str, Scalar] = field(default_factory=dict)


#: MemberState fields of logs written before subjects owned their state (etcd's, all of them).
_V1_MEMBER_DETAIL = ("member_id", "leader_id", "cluster_id", "raft_term", "raft_index", "revision", "db_size",
                     "member_names")


def upcast_cluster_state_v1(state: dict[str, object]) -> None:
    """Rewrite a v1 (etcd-shaped) cluster state in place into the generic shape."""
    cluster_id = state.pop("cluster_id", None)
    state["detail"] = {"cluster_id": cluster_id} if cluster_id is not None else {}
    for m in state.get("members") or []:  # type: ignore[attr-defined]
        detail: dict[str, object] = {}
        for key in _V1_MEMBER_DETAIL:
            value = m.pop(key, None)
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            if value is not None:
                detail[key] = value
        is_leader = m.pop("is_leader", False)
        m["role"] = "leader" if is_leader else ("follower" if detail.get("leader_id") else None)
        m["detail"] = detail


class TimeWindow(Struct, frozen=True, array_like=True):
    """A span of trial time in seconds from trial start: ``[start_s, end_s]``."""

    start_s: float
    end_s: float
