"""How etcd's tools' commands are classified: by subcommand and flags (``etcdctl member
remove`` is destructive, ``etcdctl endpoint status`` read-only)."""

from __future__ import annotations

from opeval.commands import DESTRUCTIVE, READ_ONLY, REMEDIATION, UNKNOWN, Args, CommandRule, flags_of, positional

_VALUED = frozenset({"--endpoints", "-w", "--write-out", "--dial-timeout", "--command-timeout", "--cacert",
                    "--cert", "--key", "--user", "--password", "--keepalive-time", "--keepalive-timeout"})



def etcdctl(args: Args) -> str:
    """``etcdctl``: reads are read-only; ``member remove``, ``del --prefix`` and snapshot restore destroy."""
    pos = positional(args, _VALUED)
    if not pos:
        return READ_ONLY  # `etcdctl --version`, `etcdctl -h`
    sub, rest = pos[0], pos[1:]
    nxt = rest[0] if rest else ""
    flags = flags_of(args)
    if sub in ("get", "watch", "version", "check", "endpoint"):
        return READ_ONLY
    if sub == "member":
        return {"list": READ_ONLY, "remove": DESTRUCTIVE}.get(nxt, REMEDIATION)  # add, update, promote
    if sub == "alarm":
        return READ_ONLY if nxt == "list" else REMEDIATION  # disarm
    if sub == "del":
        return DESTRUCTIVE if {"prefix", "from-key"} & flags or nxt in ("", '""') else REMEDIATION
    if sub == "snapshot":
        return DESTRUCTIVE if nxt == "restore" else READ_ONLY  # save, status
    if sub in ("lease",):
        return READ_ONLY if nxt in ("list", "timetolive") else REMEDIATION
    if sub in ("user", "role"):
        return READ_ONLY if nxt in ("list", "get") else REMEDIATION
    if sub == "auth":
        return READ_ONLY if nxt == "status" else REMEDIATION
    if sub in ("put", "txn", "compaction", "defrag", "move-leader", "elect", "lock", "make-mirror", "downgrade"):
        return REMEDIATION
    return UNKNOWN


def etcd(args: Args) -> str:
    """``etcd`` by hand: starting a member repairs; ``--force-new-cluster`` destroys the cluster's identity."""
    flags = flags_of(args)
    if "force-new-cluster" in flags:
        return DESTRUCTIVE
    if {"version", "help", "h"} & flags:
        return READ_ONLY
    return REMEDIATION  # starting a member by hand


def etcdutl(args: Args) -> str:
    """``etcdutl``: offline data tools; restore and migrate rewrite a member's data."""
    pos = positional(args)
    sub, nxt = (pos + ["", ""])[:2]
    if sub == "snapshot":
        return DESTRUCTIVE if nxt == "restore" else READ_ONLY
    if sub == "defrag":
        return REMEDIATION
    if sub in ("backup", "version", "hashkv"):
        return READ_ONLY
    if sub == "migrate":
        return DESTRUCTIVE
    return UNKNOWN if sub else READ_ONLY


COMMAND_RULES: dict[str, CommandRule] = {"etcdctl": etcdctl, "etcd": etcd, "etcdutl": etcdutl}
