"""``opeval view``: the web viewer over a store."""

from __future__ import annotations

from ._common import StoreOption, out, store_path


def view(
    *,
    store: StoreOption = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
) -> int:
    """Serve the web viewer: campaigns, trials, comparisons, live trials, and a JSON API.

    Read-only; the OpenAPI document is at /schema; Ctrl-C stops it.

    Parameters
    ----------
    host
        Address to listen on (default: this machine only). Anything but loopback needs a
        ``--token``.
    port
        TCP port (0 picks a free one).
    token
        Lock the viewer: every page and API call needs this token (API: ``Authorization:
        Bearer TOKEN``; pages: a login form). ``generate`` makes one and prints it once.
        Default: ``$OPEVAL_VIEW_TOKEN``.
    """
    import os

    from opeval.errors import UsageError
    from opeval.viewer import StoreView, bind, is_loopback, serve
    from opeval.viewer._lock import TOKEN_ENV, generate_token

    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if token == "generate":
        token = generate_token()
        out.print(f"viewer token (shown once): {token}", highlight=False, soft_wrap=True)
    if token is not None and (len(token) < 16 or not token.isprintable() or " " in token):
        raise UsageError("--token must be at least 16 printable characters without spaces "
                         "(or `generate` to make one)")
    if not is_loopback(host) and token is None:
        raise UsageError(f"listening on {host} would open this store to the network: lock it with --token SECRET, "
                         f"${TOKEN_ENV}, or --token generate")
    path = store_path(store)
    StoreView(path).check()  # a missing or unreadable store fails here, in one line
    sock = bind(host, port)

    def ready(url: str) -> None:
        out.print(f"opeval viewer on {url} (store {path}); Ctrl-C stops it", highlight=False, soft_wrap=True)

    try:
        serve(path, sock, on_ready=ready, token=token)
    except KeyboardInterrupt:
        pass  # the server already shut down gracefully; Ctrl-C is how it is meant to stop
    finally:
        sock.close()
    out.print("viewer stopped", highlight=False)
    return 0
