"""The runbook agent: deterministic and offline, a scripted on-call engineer.

The procedure belongs to the subject (:meth:`~opeval.subjects.Subject.runbook`): this
agent pages the subject's runbook with the incident, so one agent name serves every
subject. The helper below reads the harness's own ``nodectl status`` table, which every
subject's runbook may use.
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
    """Runs the incident's subject's runbook."""

    name = "runbook"

    def __init__(self, spec: AgentSpec | None = None) -> None:
        self.spec = spec or AgentSpec(name="runbook")

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """Diagnose, repair, verify, as the subject's runbook says."""
        from opeval.subjects import SUBJECTS  # subjects build on agents' types: resolve at run time

        return await SUBJECTS.get(incident.subject)().runbook(incident, tools)


async def restart_down_members(incident: Incident, tools: AgentTools, *, polls: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
                               ) -> AgentResult:
    """The runbook any subject can fall back on: start every member whose process is down
    (restart a hung one), then poll the supervisor until every member runs."""
    tools.note(f"Paged: {incident.alert}. First the supervisor's view of every member.")
    down = down_members((await tools.shell("nodectl status")).stdout)
    if not down:
        tools.note("Every member process is running; this runbook has no repair for this.")
    for member, state in down.items():
        tools.note(f"{member} is {state}: reading its log, then bringing it back.")
        await tools.shell(f"nodectl logs {member} -n 20")
        await tools.shell(f"nodectl {'restart' if state.startswith('paused') else 'start'} {member}")
    for delay in polls:
        if not down_members((await tools.shell("nodectl status")).stdout):
            repaired = ", ".join(down) or "nothing"
            return AgentResult("done", f"restarted {repaired}; every member runs", declared_resolved=True)
        await anyio.sleep(delay)
    return AgentResult("done", "members still down after the runbook's steps", declared_resolved=False)
