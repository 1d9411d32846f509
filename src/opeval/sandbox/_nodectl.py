"""``nodectl``: the supervisor CLI an operator (or agent) uses on a trial's members.

    nodectl status [MEMBER] | start MEMBER | stop MEMBER | restart MEMBER | logs MEMBER [-n N]

It talks to the trial's harness over the Unix socket in ``$OPEVAL_NODECTL_SOCKET``. This
module is the client and imports nothing heavy: it runs once per command.
"""

from __future__ import annotations

import json
import os
import socket
import sys

USAGE = "usage: nodectl status [MEMBER] | start MEMBER | stop MEMBER | restart MEMBER | logs MEMBER [-n LINES]"
OPS = ("status", "start", "stop", "restart", "logs")


def main(argv: list[str]) -> int:
    """Send one request, print the answer, exit with its code."""
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in OPS:
        print(USAGE, file=sys.stderr)
        return 2
    op, rest = argv[0], argv[1:]
    lines = 40
    if "-n" in rest:
        i = rest.index("-n")
        try:
            lines = int(rest[i + 1])
        except (IndexError, ValueError):
            print("nodectl: -n needs a number", file=sys.stderr)
            return 2
        rest = rest[:i] + rest[i + 2 :]
    if op != "status" and len(rest) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    path = os.environ.get("OPEVAL_NODECTL_SOCKET")
    if not path:
        print("nodectl: OPEVAL_NODECTL_SOCKET is not set", file=sys.stderr)
        return 2
    request = {"op": op, "member": rest[0] if rest else None, "lines": lines}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(path)
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError as e:
        print(f"nodectl: cannot reach the supervisor: {e}", file=sys.stderr)
        return 1
    reply = json.loads(data)
    stream = sys.stdout if reply["code"] == 0 else sys.stderr
    if reply["output"]:
        print(reply["output"], file=stream)
    return int(reply["code"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
