"""Every event type round-trips through the store's codec exactly, and topics are stable."""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
import uuid
from typing import Any

import msgspec
import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from opeval.events import ALL_EVENTS, EVENT_BY_TOPIC, ClusterState, MsgspecMapper, Trial
from opeval.store import EventStore


def sample(tp: Any, depth: int = 0) -> Any:  # noqa: PLR0911 - one branch per kind of type
    """A non-trivial value of type ``tp`` (awkward on purpose: micros, unicode, negatives)."""
    if isinstance(tp, typing.TypeVar):  # the aggregate id type
        return uuid.uuid4()
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return sample(args[-1], depth)  # the last alternative (e.g. None-able float -> float)
    if origin is list:
        (inner,) = typing.get_args(tp)
        return [sample(inner, depth + 1), sample(inner, depth + 1)]
    if origin is dict:
        _, value_type = typing.get_args(tp)
        if typing.get_origin(value_type) in (typing.Union, types.UnionType):  # Scalar: mix them all
            return {"k\u00e9y": 1.5, "n": None, "flag": True, "s": "x\ny", "i": -3}
        return {"k\u00e9y": sample(value_type, depth + 1), "b": sample(value_type, depth + 2)}
    if tp is str:
        return f"v\u00e9-{depth}-\u2603"
    if tp is bool:
        return True
    if tp is int:
        return 2**40 + depth
    if tp is float:
        return 0.1 + 0.2 + depth
    if tp is uuid.UUID:
        return uuid.uuid4()
    if tp is dt.datetime:
        return dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        hints = typing.get_type_hints(tp)
        return tp(**{f: sample(hints[f], depth + 1) for f in tp.__struct_fields__})
    raise AssertionError(f"no sample for {tp!r}")


def make_event(cls: type) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: sample(hints[f.name]) for f in dataclasses.fields(cls)}
    fields["originator_version"] = 7
    fields["timestamp"] = dt.datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=dt.UTC)
    if "originator_topic" in fields:
        fields["originator_topic"] = "opeval.trial:Trial"
    return cls(**fields)


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_every_event_round_trips_exactly(cls: type) -> None:
    mapper = MsgspecMapper()
    event = make_event(cls)
    back = mapper.to_domain_event(mapper.to_stored_event(event))
    assert type(back) is cls
    assert vars(back) == vars(event)
    # Types survive, not just values that compare equal.
    for name, value in vars(event).items():
        assert type(vars(back)[name]) is type(value), name


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_every_event_round_trips_through_a_real_store(cls: type, store_path: Any) -> None:
    event = make_event(cls)
    with EventStore(store_path) as store:
        store.app.events.put([event])
        (back,) = store.events(event.originator_id)
    assert vars(back) == vars(event)


def test_stored_topics_are_explicit_and_stable() -> None:
    # A log written today must replay next year: these strings may never change.
    expected = {
        "opeval.trial:TrialStarted", "opeval.trial:ClusterUp", "opeval.trial:StateSnapshot",
        "opeval.trial:WorkloadStarted", "opeval.trial:WorkloadSampled", "opeval.trial:WorkloadStopped",
        "opeval.trial:ChaosInjected", "opeval.trial:ChaosVerified", "opeval.trial:ChaosReverted",
        "opeval.trial:FaultDetected", "opeval.trial:AgentStarted", "opeval.trial:AgentReasoning",
        "opeval.trial:AgentCommandExecuted", "opeval.trial:AgentUsage", "opeval.trial:AgentFinished", "opeval.trial:AgentToolError",
        "opeval.trial:MemberProcessExited",
        "opeval.trial:MemberProcessStarted", "opeval.trial:RecoveryDetected",
        "opeval.trial:DataSafetyChecked", "opeval.trial:ClusterDown", "opeval.trial:TrialAborted",
        "opeval.trial:TrialFinished", "opeval.campaign:CampaignStarted",
        "opeval.campaign:TrialScheduled", "opeval.campaign:CampaignFinished",
        "opeval.labels:LabelsStarted", "opeval.labels:ModelCalled", "opeval.labels:CommandClassified",
        "opeval.trial:CommandProposed", "opeval.trial:CommandDecided", "opeval.approval:ApprovalRequested",
        "opeval.approval:ApprovalDecided",
    }
    assert set(EVENT_BY_TOPIC) == expected
    assert all(get_topic(c) == c.TOPIC for c in ALL_EVENTS)


class _Shaped(Aggregate):
    """A throwaway aggregate whose event evolved from v1 (``msg``) to v2 (``message``, ``level``)."""

    class Noted(Aggregate.Event):
        class_version = 2
        message: str
        level: int
        at: dt.datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["message"] = state.pop("msg")
            state["level"] = 1


def test_old_versions_are_upcast_and_typed() -> None:
    mapper = MsgspecMapper()
    new = _Shaped.Noted(originator_id=uuid.uuid4(), originator_version=2,
                        timestamp=dt.datetime.now(dt.UTC), message="hi", level=3,
                        at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    stored = mapper.to_stored_event(new)
    # Forge the v1 payload an older release would have written.
    v1 = msgspec.json.decode(stored.state)
    v1.pop("class_version")
    v1["msg"] = v1.pop("message")
    v1.pop("level")
    old = dataclasses.replace(stored, state=msgspec.json.encode(v1))
    back = mapper.to_domain_event(old)
    assert back.message == "hi"
    assert back.level == 1
    assert back.at == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)  # still a datetime after the slow path
    assert isinstance(back.timestamp, dt.datetime)


def test_a_finished_trial_refuses_more_events() -> None:
    from opeval.events import AgentSpec, ChaosSpec, HarnessInfo, TrialClosedError, TrialConfig

    trial = Trial._create(Trial.TrialStarted, campaign_id=uuid.uuid4(), index=0, subject="etcd",
                          runtime="local", chaos=ChaosSpec(kind="node_kill"), agent=AgentSpec(), seed=1,
                          config=TrialConfig(), harness=HarnessInfo(host="h", pid=1, start_ticks=1, version="0"),
                          offset_s=0.0)
    trial.record(Trial.TrialFinished, outcome="error", reason="x", time_to_detect_s=None,
                 time_to_recover_s=None, offset_s=1.0)
    with pytest.raises(TrialClosedError):
        trial.record(Trial.ClusterDown, graceful=True, detail="late", offset_s=2.0)


def test_a_trial_started_before_sandboxing_reads_back_as_unrecorded() -> None:
    from opeval.events import AgentSpec, ChaosSpec, HarnessInfo, SandboxInfo, Trial, TrialConfig

    mapper = MsgspecMapper()
    now = Trial._create(Trial.TrialStarted, id=uuid.uuid4(), campaign_id=uuid.uuid4(), index=0, subject="etcd",
                        runtime="local", chaos=ChaosSpec(kind="node_kill"), agent=AgentSpec(name="runbook"), seed=1,
                        config=TrialConfig(), harness=HarnessInfo(host="h", pid=1, start_ticks=1, version="0"),
                        offset_s=0.0, sandbox=SandboxInfo(mechanism="bubblewrap", version="bubblewrap 0.8.0"))
    stored = mapper.to_stored_event(now.collect_events()[0])
    assert mapper.to_domain_event(stored).sandbox.isolated
    v1 = msgspec.json.decode(stored.state)  # what the release before sandboxing wrote
    v1.pop("class_version")
    v1.pop("sandbox")
    back = mapper.to_domain_event(dataclasses.replace(stored, state=msgspec.json.encode(v1)))
    assert back.sandbox is None and back.agent.name == "runbook"


def test_a_snapshot_written_when_states_were_etcd_shaped_reads_back_generic() -> None:
    """Logs from before subjects owned their state carried etcd's fields at the top of each
    member; they read back with those fields in ``detail`` and the role derived."""
    mapper = MsgspecMapper()
    trial_id = uuid.uuid4()
    v1_state = {
        "phase": "before", "offset_s": 1.5, "originator_topic": "x",
        "state": {"members": [
            {"name": "etcd-1", "process_up": True, "reachable": True, "healthy": True, "member_id": "11",
             "leader_id": "11", "is_leader": True, "cluster_id": "c1", "raft_term": 2, "raft_index": 9,
             "revision": 5, "db_size": 20480, "alarms": [], "member_names": ["etcd-1", "etcd-2"], "error": None},
            {"name": "etcd-2", "process_up": False, "reachable": False, "healthy": False, "member_id": None,
             "leader_id": None, "is_leader": False, "cluster_id": None, "raft_term": None, "raft_index": None,
             "revision": None, "db_size": None, "alarms": [], "member_names": [], "error": "status: ConnectError"}],
            "leader": "etcd-1", "healthy": 1, "expected": 2, "cluster_id": "c1"},
        "timestamp": "2026-11-30T10:00:00+00:00",
    }
    stored = dataclasses.replace(
        mapper.to_stored_event(Trial.StateSnapshot(originator_id=trial_id, originator_version=2,
                                                   timestamp=Trial.StateSnapshot.create_timestamp(), phase="x",
                                                   state=ClusterState(members=[]), offset_s=0.0)),
        state=msgspec.json.encode(v1_state))
    back = mapper.to_domain_event(stored)
    leader, down = back.state.members
    assert back.state.leader == "etcd-1" and back.state.detail == {"cluster_id": "c1"}
    assert leader.role == "leader" and leader.detail == {
        "member_id": "11", "leader_id": "11", "cluster_id": "c1", "raft_term": 2, "raft_index": 9, "revision": 5,
        "db_size": 20480, "member_names": "etcd-1,etcd-2"}
    assert down.role is None and down.detail == {"member_names": ""} and down.error == "status: ConnectError"


def test_usage_written_before_cache_tokens_reads_back_with_none_and_the_server_model() -> None:
    """v1 AgentUsage had no cache tokens, no stop reason and recorded the server's model name."""
    mapper = MsgspecMapper()
    now = Trial.AgentUsage(originator_id=uuid.uuid4(), originator_version=7,
                           timestamp=Trial.AgentUsage.create_timestamp(), call=3, model="asked",
                           served_model="served", input_tokens=10, output_tokens=2, cache_read_tokens=500,
                           cache_write_tokens=4, cost_usd=None, stop_reason="tool_use", latency_s=0.5, cut=False,
                           offset_s=1.0)
    stored = mapper.to_stored_event(now)
    assert mapper.to_domain_event(stored).cache_read_tokens == 500
    v1 = msgspec.json.decode(stored.state)
    v1.pop("class_version")
    for key in ("served_model", "cache_read_tokens", "cache_write_tokens", "stop_reason", "latency_s", "cut"):
        v1.pop(key)
    back = mapper.to_domain_event(dataclasses.replace(stored, state=msgspec.json.encode(v1)))
    assert (back.model, back.served_model, back.input_tokens, back.cache_read_tokens, back.stop_reason, back.cut) == (
        "asked", "asked", 10, 0, "", False)


def test_a_whole_number_in_a_float_field_is_written_as_a_reader_writes_it_back() -> None:
    # 0 in a float field reads back as 0.0: the first payload is already that reading,
    # so writing the read-back event again gives the same bytes.
    mapper = MsgspecMapper()
    event = Trial.FaultDetected(originator_id=uuid.uuid4(), originator_version=3,
                                timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), offset_s=0, symptoms=["x"])
    stored = mapper.to_stored_event(event)
    assert b'"offset_s":0.0' in stored.state
    back = mapper.to_domain_event(stored)
    assert type(back.offset_s) is float
    assert mapper.to_stored_event(back).state == stored.state
