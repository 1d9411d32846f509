"""One trial's sandbox, set up before the agent is paged and torn down after it stops."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from opeval.sandbox._bwrap import _SYSTEM, OPERATOR_GID, OPERATOR_UID, Bubblewrap, Limits
from opeval.sandbox._network import OperatorNetwork
from opeval.sandbox._shell import Sandbox


def _grant(path: Path) -> None:
    """Hand a member's subdirectories (its data) to the operator user, as an on-call
    engineer has the member's host: the operator can read and clear space in them.

    The directory itself and the files in it (the log) stay the harness's: readable, but
    never replaceable by a link the harness would follow. The members still run as the
    harness's user; what they create later stays theirs.
    """
    for top in path.iterdir():
        if top.is_symlink() or not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(name, OPERATOR_UID, OPERATOR_GID, follow_symlinks=False)


def _visible(path: Path) -> bool:
    """Would ``path`` be seen through one of the system directories bound into the sandbox?"""
    real = os.path.realpath(path)
    return any(real == top or real.startswith(top.rstrip("/") + "/") for top in _SYSTEM)


@contextlib.asynccontextmanager
async def operator_sandbox(
    *, mechanism: str, root: Path, trial_id: str, tool_env: dict[str, str], control_socket: Path,
    allowed_tools: set[str] | None, client_urls: Iterable[str], member_dirs: dict[str, Path],
    mount_capped: Callable[[Path, int], None] | None, secrets: Iterable[Path] = (), limits: Limits = Limits(),  # noqa: B008
) -> AsyncIterator[Sandbox]:
    """The sandbox of one trial's agent (``control_socket`` must be listening already).

    ``secrets``: harness paths (the store, the read models, the runtime directory) that
    must not be visible; any that happen to lie under a bound system directory is masked.
    """
    if mechanism == "none":
        yield Sandbox(root, trial_id, tool_env, control_socket, allowed_tools)
        return
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    if mount_capped is not None:
        mount_capped(home, limits.home_bytes)
    os.chown(home, OPERATOR_UID, OPERATOR_GID)
    os.chmod(home, 0o700)
    for d in member_dirs.values():
        _grant(d)
    os.chmod(control_socket, 0o666)  # reachable only through the sandbox's bind of it
    forwards = []
    for url in client_urls:
        parts = urlsplit(url)
        forwards.append((parts.hostname or "127.0.0.1", parts.port or 80))
    hidden = tuple(Path(p) for p in secrets if Path(p).exists() and _visible(Path(p)))
    async with OperatorNetwork(forwards).serving() as net:
        policy = Bubblewrap(network=net, control_socket=control_socket, members=dict(member_dirs),
                            hidden=hidden, limits=limits)
        yield Sandbox(root, trial_id, tool_env, control_socket, allowed_tools, isolation=policy)
