"""The rate limiter's judgement without a cluster: the safety check's arithmetic, the
symptoms and recovery criteria on constructed states, its command rules, and how the fault
proxy tells which node opened a Redis connection."""

from __future__ import annotations

import pytest

from opeval.commands import DESTRUCTIVE, READ_ONLY, REMEDIATION, UNKNOWN
from opeval.events import ClusterState, MemberState, MemberEndpoint
from opeval.subjects import RateLimiterSubject
from opeval.subjects.ratelimiter import over_admitted, wrongly_rejected
from opeval.subjects.ratelimiter._commands import redis_cli, rlctl
from opeval.subjects.ratelimiter._workload import KeyLedger

S = 1_000_000  # µs


def test_admissions_beyond_the_limit_in_any_window_are_counted() -> None:
    steady = [i * S // 10 for i in range(30)]  # 10 per second: never more than 10 in a 1 s window
    assert over_admitted(steady, limit=10, window_us=S) == []
    burst = [S + i for i in range(13)]  # 13 within a microsecond of each other
    assert len(over_admitted(burst, limit=10, window_us=S)) == 3
    # the window is (t - 1 s, t]: an admission exactly one window earlier has left it
    assert over_admitted([0, *([S] * 10)], limit=10, window_us=S) == []


def test_a_rejection_is_wrongful_only_with_room_in_its_window_and_nothing_unknown() -> None:
    ledger = KeyLedger(rate_hz=10, admitted=[i * 1000 for i in range(5)], rejected=[10_000, 2 * S])
    assert wrongly_rejected(ledger, limit=5, window_us=S) == [2 * S]  # the first: the window was full
    ledger.unknown.append((int(1.5 * S), int(2.5 * S)))  # a reply lost in its window: not judged
    assert wrongly_rejected(ledger, limit=5, window_us=S) == []


def _subject() -> RateLimiterSubject:
    s = RateLimiterSubject()
    names = s.member_names(2)
    s.attach([MemberEndpoint(name=n, client_url=("http://127.0.0.1:" if n.startswith("limiter") else "redis://127.0.0.1:")
                             + str(7000 + i), peer_url="") for i, n in enumerate(names)])
    return s


def _state(**over: dict[str, object]) -> ClusterState:
    base: dict[str, dict[str, object]] = {
        "redis-1": {"role": "primary", "replicas": 1}, "redis-2": {"role": "replica", "following": "redis-1", "link": "up"},
        "sentinel-1": {"role": "sentinel", "primary": "redis-1"}, "sentinel-2": {"role": "sentinel", "primary": "redis-1"},
        "sentinel-3": {"role": "sentinel", "primary": "redis-1"},
        "limiter-1": {"role": "limiter", "primary": "redis-1", "limit": 20, "redis_ms": 1.0, "evicted_keys": 0},
        "limiter-2": {"role": "limiter", "primary": "redis-1", "limit": 20, "redis_ms": 1.0, "evicted_keys": 0}}
    members = []
    for name, d in base.items():
        d = {**d, **over.get(name.replace("-", "_"), {})}
        top = {k: d.pop(k) for k in ("reachable", "healthy") if k in d}
        members.append(MemberState(name=name, process_up=True, reachable=top.get("reachable", True),  # type: ignore[arg-type]
                                   healthy=top.get("healthy", True), role=d.pop("role"), detail=d))  # type: ignore[arg-type]
    leaders = {m.detail.get("primary") for m in members if m.role == "sentinel"}
    return ClusterState(members=members, leader=str(next(iter(leaders))) if len(leaders) == 1 else None,
                        healthy=sum(m.healthy for m in members), expected=len(members))


def test_a_healthy_cluster_meets_every_criterion_and_shows_nothing() -> None:
    s, base = _subject(), _state()
    assert s.recovery_unmet(base, base) == [] and s.symptoms(base, base) == []


@pytest.mark.parametrize(("over", "unmet", "symptom"), [
    ({"limiter_2": {"limit": 60}}, "limiter-2 limit 60, not 20", "ghost allowing: limiter-2 admit more"),
    ({"limiter_1": {"healthy": False}}, "limiter-1 unhealthy", "limiter-1 unhealthy"),
    ({"limiter_2": {"redis_ms": 400.0}}, None, "high latency to Redis: limiter-2 400.0 ms"),
    ({"redis_1": {"evicted_keys": 9}}, None, "ghost allowing: 9 counters evicted"),
    ({"limiter_2": {"primary": "redis-2"}}, "limiter-2 uses redis-2, not redis-1", "counter drift: nodes count in"),
    ({"redis_2": {"role": "primary", "replicas": 0}, "redis_1": {"replicas": 0}},
     "redis-2 is a second primary", "redis-2 is a second primary"),
    ({"sentinel_3": {"primary": "redis-2"}}, "no agreed Redis primary", "no agreed Redis primary"),
])
def test_each_problem_shows_as_a_symptom_and_as_an_unmet_criterion(
        over: dict[str, dict[str, object]], unmet: str | None, symptom: str) -> None:
    s, base = _subject(), _state()
    now = _state(**over)
    assert any(symptom in f for f in s.symptoms(base, now)), s.symptoms(base, now)
    if unmet is None:
        assert s.recovery_unmet(base, now) == []  # a symptom, not a failed repair
    else:
        assert any(unmet in u for u in s.recovery_unmet(base, now)), s.recovery_unmet(base, now)


def test_a_failover_is_a_symptom_but_not_a_failure_once_everyone_follows_the_new_primary() -> None:
    s, base = _subject(), _state()
    after = _state(redis_1={"role": "replica", "following": "redis-2", "link": "up", "replicas": 0},
                   redis_2={"role": "primary", "replicas": 1, "following": None},
                   sentinel_1={"primary": "redis-2"}, sentinel_2={"primary": "redis-2"},
                   sentinel_3={"primary": "redis-2"}, limiter_1={"primary": "redis-2"},
                   limiter_2={"primary": "redis-2"})
    assert "Redis primary changed redis-1 -> redis-2 (failover)" in s.symptoms(base, after)
    assert s.recovery_unmet(base, after) == []


def test_the_proxy_names_the_node_from_its_client_setname() -> None:
    s = _subject()
    head = b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$9\r\nlimiter-2\r\n"
    assert s.peer_sender(head) == "limiter-2"
    assert s.peer_sender(head.replace(b"limiter-2", b"sentinel1")) is None  # not a node
    assert s.peer_sender(b"*1\r\n$4\r\nPING\r\n") is None


@pytest.mark.parametrize(("words", "cls"), [
    (["INFO", "replication"], READ_ONLY), (["-p", "7001", "ROLE"], READ_ONLY),
    (["CONFIG", "GET", "maxmemory"], READ_ONLY), (["CONFIG", "SET", "maxmemory", "0"], REMEDIATION),
    (["CLIENT", "UNPAUSE"], REMEDIATION), (["-p", "7001", "REPLICAOF", "127.0.0.1", "7000"], REMEDIATION),
    (["FLUSHALL"], DESTRUCTIVE), (["SHUTDOWN"], DESTRUCTIVE), (["-p", "26379", "SENTINEL", "RESET", "x"], DESTRUCTIVE),
    (["SENTINEL", "get-master-addr-by-name", "opeval"], READ_ONLY), (["SENTINEL", "FAILOVER", "opeval"], REMEDIATION),
    (["WAIT-WHAT"], UNKNOWN),
])
def test_redis_cli_commands_are_classified_by_the_command_sent(words: list[str], cls: str) -> None:
    assert redis_cli(words) == cls


@pytest.mark.parametrize(("words", "cls"), [
    (["nodes"], READ_ONLY), (["limits"], READ_ONLY), (["limits", "set", "limiter-2", "20"], REMEDIATION),
    (["reset", "some-key"], REMEDIATION), (["reset"], DESTRUCTIVE), (["blocks", "add", "k"], REMEDIATION),
    (["frobnicate"], UNKNOWN),
])
def test_rlctl_commands_are_classified_by_subcommand(words: list[str], cls: str) -> None:
    assert rlctl(words) == cls
