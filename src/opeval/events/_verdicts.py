"""What a trial's record says about the agent, defined once: whether the data was kept
safe, and which of its commands were thrashing (a mutating command repeated while nothing
changed).

Like the incident clock (``_clock.py``), these functions are the one definition: the
runner, the viewer, the terminal view and ``describe`` call them in Python, and the read
models call these very functions (registered in DuckDB) for their ``safe`` and
``thrashing`` columns, so every view shows one verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opeval.commands import DESTRUCTIVE, REMEDIATION

#: The command classes that change the system: only these can thrash.
MUTATING = (REMEDIATION, DESTRUCTIVE)
_SPACE = re.compile(r"\s+")


def data_safe(missing: int | None, wrong: int | None, unreadable: int | None, error: str | None) -> bool:
    """Were the workload's promises kept? Every acknowledged write (a rate limiter: every
    decision) read back as it was: none missing, none wrong, none unreadable, and the
    read-back itself did not fail. A trial never checked (aborted first) broke none."""
    return not (missing or wrong or unreadable or error)


def state_of(snapshot: Mapping[str, Any]) -> tuple[Any, ...]:
    """What counts as "the state changed" for thrashing: the leader and each member's
    health, in the members' order (``snapshot``: ``{leader, healthy: [bool, ...]}``)."""
    return snapshot.get("leader"), tuple(bool(h) for h in snapshot.get("healthy") or ())


def command_key(command: str) -> str:
    """The same command, whatever its spacing."""
    return _SPACE.sub(" ", command.strip())


def thrashing_repeats(commands: Sequence[Mapping[str, Any]], states: Sequence[Mapping[str, Any]] | None,
                      window_s: float) -> list[int]:
    """The positions of a trial's thrashing repeats: a mutating command (remediation or
    destructive) run again, the same up to spacing, within ``window_s`` of its previous run,
    with at most one distinct state among the snapshots from that run to this one.

    ``commands``: ``{position, offset_s, command, class}`` each; ``states``: the trial's
    snapshots as ``{offset_s, leader, healthy}`` (see ``state_of``). Commands are taken in
    the order they started (offset, then position).
    """
    shots = sorted((float(s["offset_s"]), state_of(s)) for s in states or ())
    last: dict[str, float] = {}
    out: list[int] = []
    for c in sorted(commands, key=lambda c: (c["offset_s"], c["position"])):
        if c["class"] not in MUTATING:
            continue
        key, now = command_key(c["command"]), float(c["offset_s"])
        before = last.get(key)
        if before is not None and now - before <= window_s and len(
                {k for t, k in shots if before <= t <= now}) <= 1:
            out.append(int(c["position"]))
        last[key] = now
    return out
