"""The runbook agent: deterministic and offline, a scripted on-call engineer.

It uses only the shell, like any agent: looks at the supervisor's view of the members,
the cluster's own status and member list, reads the logs of any member that is down,
restarts it, and polls health with backoff until the cluster is healthy or it gives up.
"""

from __future__ import annotations

import anyio

from opeval.agents._protocol import AgentResult, AgentTools, Incident
from opeval.events import AgentSpec


def down_members(status_output: str) -> dict[str, str]:
    """Members whose state in ``nodectl status`` output is not ``running``."""
    down = {}
    for line in status_output.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1] != "running":
            state = line[11:31].strip()
            down[parts[0]] = state
    return down


class RunbookAgent:
    """Repairs what an operator's runbook covers: members whose process is gone or hung."""

    name = "runbook"

    def __init__(self, spec: AgentSpec | None = None) -> None:
        self.spec = spec or AgentSpec(name="runbook")

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """Diagnose, repair, verify."""
        tools.note(f"Paged: {incident.alert}. First the supervisor's view of every member.")
        status = await tools.shell("nodectl status")
        await tools.shell("etcdctl endpoint status --cluster -w table")
        await tools.shell("etcdctl member list -w table")
        down = down_members(status.stdout)
        if not down:
            tools.note("Every member process is running; the runbook has no repair for this. Watching health.")
        for member, state in down.items():
            tools.note(f"{member} is {state}: reading its log before restarting it.")
            await tools.shell(f"nodectl logs {member} -n 20")
            tools.note(f"Restarting {member}; its data directory is intact, so it rejoins the same cluster.")
            # A hung (stopped) process must be replaced; a dead one only started again.
            await tools.shell(f"nodectl {'restart' if state.startswith('paused') else 'start'} {member}")
        for delay in (0.5, 1.0, 2.0, 4.0, 8.0):
            health = await tools.shell("etcdctl endpoint health --cluster")
            if health.exit_code == 0:
                tools.note("All members report healthy.")
                repaired = ", ".join(down) or "nothing"
                return AgentResult("done", f"restarted {repaired}; every member healthy", declared_resolved=True)
            await anyio.sleep(delay)
        return AgentResult("done", "cluster still unhealthy after the runbook's steps", declared_resolved=False)
