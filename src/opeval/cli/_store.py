"""``opeval store``: work on whole stores (copy one into another backend)."""

from __future__ import annotations

from opeval.store import EventStore, copy_events, parse_store

from ._common import err, out, print_json
from ._exit import ExitCode

def copy(src: str, dst: str, /, *, json: bool = False) -> int:
    """Copy every event of the store SRC into the new, empty store DST, in order, unchanged.

    Either may be a SQLite file or a ``postgresql://user:pw@host/db`` URL, so this moves a
    log onto PostgreSQL (to scale out) or back into a file (to archive or share it). DST
    must hold no events yet; SRC is only read.

    Parameters
    ----------
    src
        The store to read.
    dst
        The store to create or fill (empty).
    json
        Print JSON instead of a line.
    """
    source, target = parse_store(src), parse_store(dst)
    with EventStore(source, writable=False) as a, EventStore(target) as b:
        total = a.position()

        def progress(n: int) -> None:
            if not json and total > 50_000:
                err.print(f"copied {n} events...", highlight=False)

        copied = copy_events(a, b, on_progress=progress)
        landed = b.position()
    if json:
        print_json({"src": str(source), "dst": str(target), "events": copied})
    else:
        out.print(f"copied {copied} events from {source} to {target} (its log now ends at {landed})",
                  highlight=False, markup=False, soft_wrap=True)
    return ExitCode.OK
