"""etcd's runbook: what a scripted on-call engineer does for an etcd page.

It uses only the shell, like any agent: looks at the supervisor's view of the members,
the cluster's own status and member list, reads the logs of any member that is down,
restarts it, clears a NOSPACE alarm or a full disk, and polls health with backoff until
the cluster is healthy or it gives up.
"""

from __future__ import annotations

import re

import anyio

from opeval.agents import AgentResult, AgentTools, Incident, down_members

#: etcdctl waits its command timeout (5 s, as the sandbox presets it) on a member that is
#: dead or hung before it answers for the others: the runbook probes with short timeouts.
#: etcdctl refuses a flag its environment already sets, so the variables are overridden.
_PROBE = "ETCDCTL_DIAL_TIMEOUT=1s ETCDCTL_COMMAND_TIMEOUT=1s etcdctl"
_HEALTH = "ETCDCTL_DIAL_TIMEOUT=1s ETCDCTL_COMMAND_TIMEOUT=2s etcdctl endpoint health --cluster"


async def run_runbook(incident: Incident, tools: AgentTools) -> AgentResult:
    """Diagnose, repair, verify."""
    tools.note(f"Paged: {incident.alert}. First the supervisor's view of every member.")
    status = await tools.shell("nodectl status")
    await tools.shell(f"{_PROBE} endpoint status --cluster -w table")
    await tools.shell(f"{_PROBE} member list -w table")
    alarms = await tools.shell(f"{_PROBE} alarm list")
    down = down_members(status.stdout)
    if "NOSPACE" in alarms.stdout:
        await _clear_nospace(tools)
    elif not down:
        tools.note("Every member process is running; the runbook has no repair for this. Watching health.")
    for member, state in down.items():
        tools.note(f"{member} is {state}: reading its log before restarting it.")
        log = await tools.shell(f"nodectl logs {member} -n 20")
        if "no space left on device" in log.stdout:
            await _free_space(tools, member, log.stdout)
        tools.note(f"Restarting {member}; its data directory is intact, so it rejoins the same cluster.")
        # A hung (stopped) process must be replaced; a dead one only started again.
        await tools.shell(f"nodectl {'restart' if state.startswith('paused') else 'start'} {member}")
    for delay in (0.5, 1.0, 2.0, 4.0, 8.0):
        health = await tools.shell(_HEALTH)
        if health.exit_code == 0:
            tools.note("All members report healthy.")
            repaired = ", ".join(down) or "nothing"
            return AgentResult("done", f"restarted {repaired}; every member healthy", declared_resolved=True)
        await anyio.sleep(delay)
    return AgentResult("done", "cluster still unhealthy after the runbook's steps", declared_resolved=False)


async def _clear_nospace(tools: AgentTools) -> None:
    """etcd's NOSPACE runbook: compact history, defragment, disarm."""
    tools.note("NOSPACE alarm: the backend hit its quota. Compact history, defragment, then disarm.")
    st = await tools.shell("etcdctl endpoint status -w json")
    revisions = [int(r) for r in re.findall(r'"revision":\s*(\d+)', st.stdout)]
    if revisions:
        await tools.shell(f"etcdctl compaction {max(revisions)} --physical")
    await tools.shell("etcdctl defrag --cluster")
    await tools.shell("etcdctl alarm disarm")
    await tools.shell("etcdctl alarm list")


async def _free_space(tools: AgentTools, member: str, log: str) -> None:
    """A full disk: find the filesystem from the log, remove what is not etcd's, restart."""
    found = re.search(r'(/[^\s"]+?/data)(?:/member|/|")', log)
    if not found:
        tools.note(f"{member} ran out of disk space, but its log does not say where; restarting it anyway.")
        return
    data = found.group(1)
    tools.note(f"{member} ran out of disk space on {data}: looking for what filled it.")
    await tools.shell(f"df -h {data}")
    listing = await tools.shell(f"find {data} -maxdepth 1 -type f -size +1M")
    for path in listing.stdout.split():
        tools.note(f"{path} is not part of etcd's data (that lives in member/): removing it.")
        await tools.shell(f"rm -f {path}")
