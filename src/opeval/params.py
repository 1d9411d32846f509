"""Declared parameters: every chaos kind's ``params`` and every trial setting, checked once.

A :class:`Param` says a parameter's name, type, range, default and help, once. The
campaign loader, ``opeval run``'s flags, the README's tables and the viewer all read the
same declarations: a chaos kind lists its own in ``params`` (``FaultBase.params``), the
trial settings are :data:`TRIAL_SETTINGS`. :func:`check_params` refuses an unknown name
(listing the allowed ones and suggesting the nearest), a value of the wrong type, a
number that is not finite and one out of range; it returns the values normalised (a
whole number given for a decimal one becomes a float).

A plugin declares its parameters the same way::

    class Flood(FaultBase):
        kind = "flood"
        params = (Param("rate_hz", float, default=1000.0, low=0, low_open=True, high=1e6,
                        help="requests per second"), DURATION)
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opeval.errors import UsageError
from opeval.events import TrialConfig
from opeval.events._values import number_problem

#: The most trials one campaign may plan (repetitions x chaos kinds x variants): a bigger
#: plan is refused before anything starts.
MAX_TRIALS = 10_000
#: The most trials a campaign runs at once.
MAX_PARALLEL = 64
#: Seeds are recorded as 64-bit integers.
SEED_RANGE = (0, 2**63 - 1)

_TYPE_WORDS = {int: "a whole number", float: "a number", str: "a text", bool: "true or false"}


class ParamError(UsageError):
    """A parameter that cannot be used: ``name`` is the parameter (to point at its line),
    ``reason`` the message without its owner, ``unknown`` whether the name is not declared."""

    def __init__(self, message: str, *, name: str, reason: str | None = None, unknown: bool = False) -> None:
        super().__init__(message)
        self.name, self.reason, self.unknown = name, reason or message, unknown


@dataclass(frozen=True)
class Param:
    """One parameter: its name, type, range (``low``/``high``, open with ``*_open``, or
    ``choices``), default (None: not set unless given) and what it does."""

    name: str
    type: type
    help: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    unit: str = ""

    def range_text(self) -> str:
        """The range in words: ``> 0 and <= 10000``, ``one of nospace, fill``, ``any text``."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
        if self.high is not None:
            parts.append(f"<= {_num(self.high)}")
        if parts:
            return " and ".join(parts)
        return "a non-empty text" if self.type is str else "any"

    def default_text(self) -> str:
        """The default in words (``-``: not set unless given)."""
        if self.default is None:
            return "-"
        return _num(self.default) if isinstance(self.default, int | float) and not isinstance(self.default, bool) \
            else str(self.default).lower() if isinstance(self.default, bool) else str(self.default)

    def check(self, value: Any) -> Any:
        """``value`` normalised, or a ParamError saying what this parameter must be."""
        wanted = self.range_text() if self.choices or self.type is str else \
            f"{_TYPE_WORDS[self.type]} {self.range_text()}"
        if self.type is bool:
            if not isinstance(value, bool):
                raise ParamError(f"must be true or false, not {value!r}", name=self.name)
            return value
        if self.type is str:
            if not isinstance(value, str) or not value.strip() or (self.choices and value not in self.choices):
                raise ParamError(f"must be {wanted}, not {value!r}", name=self.name)
            return value
        problem = number_problem(value, integer=self.type is int)
        if problem is None:
            low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
            if low_ok and (self.high is None or value <= self.high):
                return float(value) if self.type is float else value
        raise ParamError(f"must be {wanted}{' ' + self.unit if self.unit else ''}, not {value!r}", name=self.name)


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v)}"


def nearest(name: str, allowed: list[str]) -> str:
    """`` (did you mean 'duration_s'?)`` for the closest allowed name, or nothing."""
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_params(declared: tuple[Param, ...], given: Mapping[Any, Any], owner: str) -> dict[str, Any]:
    """``given`` checked against ``declared``, normalised; ``owner`` names them in errors
    (``latency``, ``trial``)."""
    by_name = {p.name: p for p in declared}
    out: dict[str, Any] = {}
    for name, value in given.items():
        param = by_name.get(name) if isinstance(name, str) else None
        if param is None:
            allowed = ", ".join(by_name) or "none: it takes no parameters"
            reason = f"{owner}: unknown parameter {name!r} (allowed: {allowed}){nearest(str(name), list(by_name))}"
            raise ParamError(reason, name=str(name), reason=reason, unknown=True)
        try:
            out[name] = param.check(value)
        except ParamError as e:
            raise ParamError(f"{owner}: {name} {e}", name=name, reason=str(e)) from None
    return out


_D = TrialConfig()

#: The settings of every trial (TrialConfig), as ``trial:`` in a campaign file sets them.
TRIAL_SETTINGS: tuple[Param, ...] = (
    Param("members", int, "cluster size (the subject bounds it: etcd 1-9)", _D.members, low=1, high=99),
    Param("restart_policy", str, "what the supervisor does when a member dies", _D.restart_policy,
          choices=("on-failure", "never")),
    Param("timeout_s", float, "seconds after the fault is verified before the trial ends as not_recovered",
          _D.timeout_s, low=0, low_open=True, high=86_400),
    Param("settle_s", float, "seconds the recovery criteria must hold without a break", _D.settle_s,
          low=0, high=3_600),
    Param("poll_interval_s", float, "seconds between the monitor's observations", _D.poll_interval_s,
          low=0.01, high=60),
    Param("snapshot_interval_s", float, "seconds between periodic state snapshots", _D.snapshot_interval_s,
          low=0.1, high=3_600),
    Param("workload_rate_hz", float, "client operations per second (puts and gets alternate)",
          _D.workload_rate_hz, low=0, low_open=True, high=10_000),
    Param("warmup_s", float, "seconds of workload before the fault", _D.warmup_s, low=0, high=3_600),
    Param("verify_timeout_s", float, "seconds to wait for the fault's effect to be observed",
          _D.verify_timeout_s, low=0, low_open=True, high=3_600),
)

#: ``opeval run``'s flag for each trial setting it takes.
TRIAL_FLAGS = {"members": "--members", "restart_policy": "--restart-policy", "timeout_s": "--timeout",
               "settle_s": "--settle", "workload_rate_hz": "--rate"}

#: How many trials run at once (``parallel`` in a campaign file, opeval.toml, --parallel).
PARALLEL = Param("parallel", int, "trials run at once", 1, low=1, high=MAX_PARALLEL)
#: A campaign's repetitions (each with its own seed).
REPETITIONS = Param("repetitions", int, "times every chaos kind x variant runs", 1, low=1, high=MAX_TRIALS)
#: A trial's seed (the target choice and the workload).
SEED = Param("seed", int, "makes the target choice and the workload reproducible", low=SEED_RANGE[0],
             high=SEED_RANGE[1])

#: The numeric settings of a variant (an agent's configuration); ``opeval run`` has a flag for the first two.
VARIANT_NUMBERS: tuple[Param, ...] = (
    Param("max_steps", int, "most shell commands the agent may run", 30, low=1, high=10_000),
    Param("command_timeout_s", float, "seconds before one agent command is killed", 30.0, low=0, low_open=True,
          high=86_400),
    Param("max_total_tokens", int, "most tokens (in and out) the agent may use", low=1, high=10**9),
    Param("temperature", float, "the model's sampling temperature", low=0, high=2),
    Param("max_tokens", int, "most tokens the model may write in one answer", low=1, high=10**6),
    Param("max_turns", int, "most model calls the agent may make", low=1, high=10_000),
    Param("request_timeout_s", float, "seconds before one model call is given up", low=0, low_open=True,
          high=86_400),
    Param("max_retries", int, "times a failed model call is retried (connection errors, 429, 5xx)", low=0, high=20),
    Param("continuations", int, "times an answer cut at max_tokens is continued", low=0, high=20),
)
VARIANT_FLAGS = {"max_steps": "--max-steps", "command_timeout_s": "--command-timeout"}

#: The settings of ``agent: command`` (an external agent's command line in the sandbox, its tools over MCP).
COMMAND_SETTINGS: tuple[Param, ...] = (
    Param("command", str, "the agent's command line, run with bash -c in the sandbox (default: the shipped "
          "reference agent, opeval-agent)"),
    Param("forward", str, "endpoints the agent's process may reach, host:port, comma-separated (its model "
          "server; base_url's is forwarded without it)"),
    Param("pass_env", str, "the harness's environment variables handed to the agent's process (its API key), "
          "comma-separated"),
    Param("reasoning_cap_bytes", int, "most bytes of the agent's output recorded as reasoning", 65536,
          low=0, high=64 << 20),
)
COMMAND_FLAGS = {"command": "--command", "forward": "--forward", "pass_env": "--pass-env"}

#: A fault's length, shared by the kinds that can be undone before the trial ends.
DURATION = Param("duration_s", float, "seconds before the fault is reverted (not set: at the end of the trial)",
                 low=0, low_open=True, high=86_400)


def check_trial_settings(given: Mapping[Any, Any], owner: str = "trial") -> dict[str, Any]:
    """Trial settings checked (see :data:`TRIAL_SETTINGS`)."""
    return check_params(TRIAL_SETTINGS, given, owner)


def check_flags(declared: tuple[Param, ...], flags: Mapping[str, str], given: Mapping[str, Any]) -> dict[str, Any]:
    """Command-line values checked against their declarations, errors naming the flag
    (``--rate must be a number > 0 and <= 10000, not 0.0``)."""
    try:
        return check_params(declared, given, "options")
    except ParamError as e:
        raise ParamError(f"{flags.get(e.name, e.name)} {e.reason}", name=e.name, reason=e.reason) from None


def params_table(declared: tuple[Param, ...]) -> list[tuple[str, str, str, str, str]]:
    """Rows of name, type, range, default and help: the README's tables and the viewer's."""
    return [(p.name, p.type.__name__, p.range_text(), p.default_text(), p.help) for p in declared]


def chaos_params_markdown() -> str:
    """The README's table of every registered chaos kind's parameters (a test compares them)."""
    from opeval.chaos import CHAOS

    rows = ["| kind | parameter | type | range | default | what it does |", "| --- | --- | --- | --- | --- | --- |"]
    for kind in CHAOS.names():
        for name, tp, rng, default, text in params_table(CHAOS.get(kind)().params) or [("-", "", "", "", "")]:
            rows.append(f"| `{kind}` | {'`' + name + '`' if name != '-' else 'none'} | {tp} | {rng} | {default} | {text} |")
    return "\n".join(rows)


def trial_settings_markdown() -> str:
    """The README's table of trial settings (a test compares them)."""
    rows = ["| setting | `opeval run` | type | range | default | what it sets |", "| --- | --- | --- | --- | --- | --- |"]
    for name, tp, rng, default, text in params_table(TRIAL_SETTINGS):
        flag = f"`{TRIAL_FLAGS[name]}`" if name in TRIAL_FLAGS else "-"
        rows.append(f"| `{name}` | {flag} | {tp} | {rng} | {default} | {text} |")
    return "\n".join(rows)


__all__ = [
    "COMMAND_FLAGS",
    "COMMAND_SETTINGS",
    "DURATION",
    "PARALLEL",
    "REPETITIONS",
    "SEED",
    "VARIANT_FLAGS",
    "VARIANT_NUMBERS",
    "MAX_PARALLEL",
    "MAX_TRIALS",
    "SEED_RANGE",
    "TRIAL_FLAGS",
    "TRIAL_SETTINGS",
    "Param",
    "ParamError",
    "check_flags",
    "check_params",
    "check_trial_settings",
    "nearest",
    "params_table",
]
