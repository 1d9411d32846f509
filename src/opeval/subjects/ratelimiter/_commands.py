"""How the rate limiter's tools' commands are classified: ``redis-cli`` by the Redis
command it sends, ``rlctl`` by subcommand, ``redis-server``/``redis-sentinel`` by hand."""

from __future__ import annotations

from opeval.commands import DESTRUCTIVE, READ_ONLY, REMEDIATION, UNKNOWN, Args, CommandRule, positional

_CLI_VALUED = frozenset({"-h", "-p", "-s", "-a", "-u", "-n", "-r", "-i", "-d", "-D", "--user", "--pass",
                         "--askpass", "--tls", "--cacert", "--cert", "--key", "--pattern", "--count", "--rdb",
                         "--functions-rdb", "--memkeys-samples"})
_READ = frozenset("""ping info get mget exists ttl pttl type keys scan sscan zscan hscan hget hgetall hkeys hvals
hlen smembers sismember scard zcard zcount zrange zrangebyscore zscore llen lrange strlen dbsize time role
echo lastsave memory slowlog latency monitor object dump config""".split())
_DESTROY = frozenset({"flushall", "flushdb", "shutdown", "debug", "del", "unlink", "swapdb"})
_REPAIR = frozenset({"set", "hset", "hdel", "sadd", "srem", "zadd", "zrem", "zremrangebyscore", "expire", "pexpire",
                     "persist", "replicaof", "slaveof", "failover", "script", "bgsave", "save", "bgrewriteaof",
                     "client", "acl"})


def redis_cli(args: Args) -> str:
    """``redis-cli``: reads are read-only; flushing, shutting down and deleting counters destroy;
    ``CONFIG GET`` reads and ``CONFIG SET`` repairs; ``SENTINEL`` queries read, its
    ``FAILOVER``/``RESET``/``REMOVE`` act."""
    pos = positional(args, _CLI_VALUED)
    if not pos:
        return READ_ONLY  # an interactive shell, `--help`, `--version`, `--stat`
    cmd, rest = pos[0].lower(), [p.lower() for p in pos[1:]]
    nxt = rest[0] if rest else ""
    if cmd == "config":
        return READ_ONLY if nxt == "get" else REMEDIATION
    if cmd == "client":
        return READ_ONLY if nxt in ("list", "info", "getname", "id") else REMEDIATION  # unpause, kill, pause
    if cmd == "sentinel":
        if nxt in ("remove", "reset"):
            return DESTRUCTIVE
        return REMEDIATION if nxt in ("failover", "set", "monitor", "flushconfig", "config") else READ_ONLY
    if cmd in _DESTROY:
        return DESTRUCTIVE
    if cmd in _READ:
        return READ_ONLY
    if cmd in _REPAIR:
        return REMEDIATION
    return UNKNOWN


def rlctl(args: Args) -> str:
    """``rlctl``: looking is read-only; setting a limit, blocking a key repairs; resetting
    every counter destroys the windows (admits afresh)."""
    pos = positional(args)
    sub, rest = (pos[0], pos[1:]) if pos else ("", [])
    if sub in ("", "topology", "nodes", "health", "counters", "check"):
        return READ_ONLY
    if sub in ("limits", "blocks"):
        return REMEDIATION if rest and rest[0] in ("set", "add", "rm") else READ_ONLY
    if sub == "reset":
        return REMEDIATION if rest else DESTRUCTIVE
    return UNKNOWN


def redis_server(args: Args) -> str:
    """Starting a Redis server or a Sentinel by hand repairs; ``--version`` reads."""
    if {"-v", "--version", "-h", "--help"} & set(args):
        return READ_ONLY
    return REMEDIATION


COMMAND_RULES: dict[str, CommandRule] = {"redis-cli": redis_cli, "rlctl": rlctl, "redis-server": redis_server,
                                         "redis-sentinel": redis_server}
