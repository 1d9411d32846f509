"""What any subject's members show an operator: the part of the symptoms every subject shares."""

from __future__ import annotations

from opeval.events import ClusterState


def member_symptoms(now: ClusterState) -> list[str]:
    """Members unreachable, unhealthy (with their error) or raising alarms."""
    found = []
    for m in now.members:
        if not m.reachable:
            found.append(f"{m.name} unreachable")
        elif not m.healthy:
            found.append(f"{m.name} unhealthy ({m.error})")
        if m.alarms:
            found.append(f"{m.name} alarms: {', '.join(m.alarms)}")
    return found
