"""Ids on the command line: shown as short unique prefixes, accepted as any unique prefix.

Every command that takes an id takes a trial's or a campaign's, whichever it is given:
a campaign command given a trial works on that trial's campaign, a trial command given
a one-trial campaign works on its trial (both say so on standard error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from opeval.errors import NotFoundError
from opeval.store import EventStore

from ._common import err, hint

#: Shortest prefix shown: as long as git's usual abbreviation, unique in any store seen so far.
SHORT = 8


def short_ids(ids: Iterable[str], minimum: int = SHORT) -> dict[str, str]:
    """Each hex id's shortest prefix of at least ``minimum`` characters shared by no other id."""
    keys = sorted({i.replace("-", "") for i in ids})
    shortest: dict[str, str] = {}
    for n, key in enumerate(keys):
        need = minimum
        for other in (keys[n - 1] if n else "", keys[n + 1] if n + 1 < len(keys) else ""):
            common = 0
            while common < min(len(key), len(other)) and key[common] == other[common]:
                common += 1
            need = max(need, common + 1)
        shortest[key] = key[:need]
    return shortest


def store_ids(es: EventStore) -> list[str]:
    """Every campaign and trial id in the store (hex)."""
    return [e.originator_id.hex for _, e in es.iter_events(
        topics=["opeval.trial:TrialStarted", "opeval.campaign:CampaignStarted"])]


def campaign_id(es: EventStore, prefix: str, *, quiet: bool = False) -> UUID:
    """The campaign ``prefix`` names, or the campaign of the trial it names."""
    kind, oid = es.resolve(prefix)
    if kind == "campaign":
        return oid
    cid = es.trial(oid).campaign_id
    if not quiet:
        err.print(f"{prefix} is a trial: using its campaign {cid.hex[:SHORT]}", highlight=False)
    return cid


def trial_id(es: EventStore, prefix: str, *, quiet: bool = False) -> UUID:
    """The trial ``prefix`` names, or the only trial of the campaign it names."""
    kind, oid = es.resolve(prefix)
    if kind == "trial":
        return oid
    campaign = es.campaign(oid)
    if len(campaign.trial_ids) == 1:
        (tid,) = campaign.trial_ids
        if not quiet:
            err.print(f"{prefix} is a one-trial campaign: using its trial {tid.hex[:SHORT]}", highlight=False)
        return tid
    raise NotFoundError(f"{prefix!r} is campaign {campaign.name!r} of {len(campaign.trial_ids)} trials, not a trial: "
                        f"pick one with `{hint('list --campaign ' + prefix)}`")


def completer(kind: str | None) -> Callable[[Any], list[tuple[str, str]]]:
    """Shell completion of ids (``kind`` ``campaign``, ``trial`` or None for both) from the
    store named on the command line so far, or the default one; newest first."""

    def complete(ctx: Any) -> list[tuple[str, str]]:
        from opeval.store import store_exists

        from ._common import store_path

        given = ctx.get("--store")
        raw = given.raw if given is not None and given.provided else None
        path = store_path(raw or None)
        if not store_exists(path):
            return []
        found: list[tuple[str, str]] = []
        with EventStore(path, writable=False) as es:
            if kind in (None, "campaign"):
                found += [(e.originator_id.hex, e.name) for _, e in
                          es.iter_events(topics=["opeval.campaign:CampaignStarted"])]
            if kind in (None, "trial"):
                found += [(e.originator_id.hex, f"{e.chaos.kind} → {e.chaos.target}, {e.agent.name}, seed {e.seed}")
                          for _, e in es.iter_events(topics=["opeval.trial:TrialStarted"])]
            short = short_ids(store_ids(es))
        return [(short[oid], what) for oid, what in reversed(found)][:200]

    return complete
