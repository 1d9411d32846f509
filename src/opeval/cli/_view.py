"""``opeval view``: the web viewer over a store."""

from __future__ import annotations

from opeval.store import resolve_store_path

from ._app import app
from ._common import StoreOption, err, out


@app.command
def view(
    *,
    store: StoreOption = None,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> int:
    """Serve the web viewer: campaigns, trials and their timelines, comparisons, live trials,
    and a JSON API (OpenAPI at /schema). Read-only; Ctrl-C stops it.

    Parameters
    ----------
    host
        Address to listen on (default: this machine only). Anything but loopback exposes
        the store's trials, agent output included, to the network without authentication.
    port
        TCP port (0 picks a free one).
    """
    from opeval.viewer import StoreView, bind, is_loopback, serve

    path = resolve_store_path(store)
    StoreView(path).check()  # a missing or unreadable store fails here, in one line
    sock = bind(host, port)
    if not is_loopback(host):
        err.print(f"warning: listening on {host}: anyone who can reach it can read this store (no authentication)",
                  highlight=False)

    def ready(url: str) -> None:
        out.print(f"opeval viewer on {url} (store {path}); Ctrl-C stops it", highlight=False, soft_wrap=True)

    try:
        serve(path, sock, on_ready=ready)
    except KeyboardInterrupt:
        pass  # the server already shut down gracefully; Ctrl-C is how it is meant to stop
    finally:
        sock.close()
    out.print("viewer stopped", highlight=False)
    return 0
