"""The rate limiter's runbook: what a scripted on-call engineer does for its page.

Through the shell only: the supervisor's view, the nodes' health, the Sentinels' and the
primary's word on replication; then restart what is down, unpause a Redis that refuses
writes, lift a memory cap that evicts counters, put a drifted node back on the configured
limit, and poll the nodes with backoff until every one is healthy.
"""

from __future__ import annotations

import re

import anyio

from opeval.agents import AgentResult, AgentTools, Incident, down_members

_LIMIT = re.compile(r"^(limiter-\d+)\s+limit (\d+) per", re.MULTILINE)
#: Asking the primary the Sentinels name while one may be paused: a stopped Redis still
#: accepts connections and never answers, and redis-cli has no reply timeout of its own.
ASK_PRIMARY = "timeout 2 redis-cli"


async def run_runbook(incident: Incident, tools: AgentTools, limit: int) -> AgentResult:
    """Diagnose, repair, verify."""
    tools.note(f"Paged: {incident.alert}. First the supervisor's view, then the nodes and Redis.")
    status = await tools.shell("nodectl status")
    nodes = await tools.shell("rlctl nodes")
    await tools.shell(f"{ASK_PRIMARY} INFO replication")
    repaired: list[str] = []
    down = down_members(status.stdout)
    if any(m.startswith("redis-") for m in down):
        await _await_failover(tools)
    for member, state in down.items():
        tools.note(f"{member} is {state}: reading its log, then bringing it back.")
        await tools.shell(f"nodectl logs {member} -n 20")
        await tools.shell(f"nodectl {'restart' if state.startswith('paused') else 'start'} {member}")
        repaired.append(f"restarted {member}")
    repaired += await _align_redis(tools, unpause="writes failing" in nodes.stdout)
    memory = await tools.shell("redis-cli CONFIG GET maxmemory")
    cap = memory.stdout.split()[-1] if memory.stdout.split() else "0"
    if cap not in ("0", "maxmemory"):
        tools.note(f"maxmemory is {cap}: counters are being evicted. Lifting the cap.")
        await tools.shell("redis-cli CONFIG SET maxmemory 0")
        await tools.shell("redis-cli CONFIG SET maxmemory-policy noeviction")
        repaired.append("lifted the memory cap")
    limits = await tools.shell("rlctl limits")
    for node, got in _LIMIT.findall(limits.stdout):
        if int(got) != limit:
            tools.note(f"{node} runs with limit {got}, the others {limit}: configuration drift. Setting it back.")
            await tools.shell(f"rlctl limits set {node} {limit}")
            repaired.append(f"set {node} back to {limit}")
    for delay in (0.5, 1.0, 2.0, 4.0, 8.0, 8.0):
        nodes = await tools.shell("rlctl nodes")
        if nodes.exit_code == 0 and not down_members((await tools.shell("nodectl status")).stdout):
            tools.note("Every node reaches Redis and every member runs.")
            return AgentResult("done", "; ".join(repaired) or "nothing to repair; every node healthy",
                               declared_resolved=True)
        await anyio.sleep(delay)
    return AgentResult("done", "nodes still unhealthy after the runbook's steps", declared_resolved=False)


async def _align_redis(tools: AgentTools, *, unpause: bool) -> list[str]:
    """Every Redis server: unpause it if the nodes' writes fail, and make any primary other
    than the one the Sentinels name its replica (an old primary back after a failover)."""
    done = []
    topology = (await tools.shell("rlctl topology")).stdout
    servers = re.findall(r"^(redis-\d+)\s+redis\s+(\S+):(\d+)", topology, re.MULTILINE)
    for name, host, port in servers:
        if unpause:
            tools.note(f"The nodes' writes fail: lifting any client pause on {name}.")
            await tools.shell(f"redis-cli -p {port} CLIENT UNPAUSE")
            done.append(f"unpaused {name}")
    for name, host, port in servers:
        role = (await tools.shell(f"redis-cli -p {port} ROLE")).stdout.split()
        # asked again for each server: a failover may be under way
        current = await tools.shell("redis-cli CLIENT INFO")  # redis-cli goes where the Sentinels point
        addr = re.search(r"laddr=(\S+):(\d+)", current.stdout)
        if addr and role[:1] == ["master"] and (host, port) != (addr.group(1), addr.group(2)):
            tools.note(f"{name} acts as a primary, but the Sentinels' primary is {addr.group(1)}:{addr.group(2)}: "
                       f"making {name} its replica.")
            await tools.shell(f"redis-cli -p {port} REPLICAOF {addr.group(1)} {addr.group(2)}")
            done.append(f"made {name} a replica")
    return done


async def _await_failover(tools: AgentTools) -> None:
    """A Redis server is down: let the Sentinels finish promoting a replica before it comes
    back (a primary without persistence restarted first would return empty, and be kept).
    If they have named no primary that answers after a few seconds (a lost election waits
    twice the failover timeout before the next), ask one Sentinel to fail over now."""
    tools.note("A Redis server is down: waiting for the Sentinels to name a primary that answers before touching it.")
    for attempt, delay in enumerate((0.5, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0)):  # 12.5 s, 9 polls
        if (await tools.shell(f"{ASK_PRIMARY} ROLE")).stdout.split()[:1] == ["master"]:
            return
        if attempt == 4:  # about 4 s: Sentinel's own failover takes 1-3 s here
            topology = (await tools.shell("rlctl topology")).stdout
            sentinel = re.search(r"^sentinel-\d+\s+sentinel\s+\S+:(\d+)\s+\(master name (\S+)\)", topology,
                                 re.MULTILINE)
            if sentinel:
                tools.note("No primary answers yet: asking a Sentinel to fail over to the replica.")
                await tools.shell(f"redis-cli -p {sentinel.group(1)} SENTINEL FAILOVER {sentinel.group(2)}")
        await anyio.sleep(delay)
