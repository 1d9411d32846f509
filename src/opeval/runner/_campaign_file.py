"""Campaign files: a YAML definition of many trials, validated with precise errors.

```yaml
name: etcd-process-faults
subject: etcd
repetitions: 2            # or seeds: [1, 2] (one repetition per seed)
parallel: 2
trial: {timeout_s: 30, settle_s: 1, restart_policy: never}
chaos:
  - {kind: node_kill, target: follower}
  - {kind: pause, target: random, params: {duration_s: 10}}
variants:
  - {name: runbook, agent: runbook}
  - {name: sonnet-terse, agent: anthropic, model: claude-sonnet-4-6, max_steps: 15}
  - {name: baseline, agent: none}
  - {name: runbook-gated, agent: runbook, approval: deny}   # or {mode: ask, gate: [destructive], timeout_s: 60}
```

Every trial of a repetition shares its seed, so trials of different variants or chaos
kinds are paired by seed in comparisons.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from opeval.errors import UsageError, yaml_problem
from opeval.events import AgentSpec, ChaosSpec, Scalar, TrialConfig
from opeval.params import (
    check_params,
    MAX_TRIALS,
    PARALLEL,
    REPETITIONS,
    SEED_RANGE,
    TRIAL_SETTINGS,
    VARIANT_NUMBERS,
    COMMAND_SETTINGS,
    ParamError,
    check_trial_settings,
    nearest,
)

TOP_KEYS = ("name", "description", "subject", "runtime", "sandbox", "members", "repetitions", "seeds", "seed", "parallel",
            "trial", "chaos", "variants")
CHAOS_KEYS = ("kind", "target", "params")
VARIANT_KEYS = ("name", "agent", "model", "system_prompt", "tools", "max_steps", "command_timeout_s",
                "max_total_tokens", "temperature", "context", "stop_on_recovery", "approval", "base_url", "api_key_env",
                "max_tokens", "max_turns", "request_timeout_s", "max_retries", "continuations", "tool_choice",
                *(p.name for p in COMMAND_SETTINGS))
#: The harness's own operator tool; a subject adds its own (``Subject.tools``).
HARNESS_TOOLS = ("nodectl",)
TRIAL_KEYS = tuple(p.name for p in TRIAL_SETTINGS if p.name != "members")  # members is set at the top
#: Campaign files larger than this are refused unread (a campaign is a page of YAML).
MAX_FILE_BYTES = 1 << 20


class CampaignFileError(UsageError):
    """A campaign file that cannot be used; the message names file, line and key."""


class _Mapping(dict[str, Any]):
    """A YAML mapping that remembers the line of itself and of each key."""

    line = 0
    lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    m = _Mapping()
    m.line = node.start_mark.line + 1
    m.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.MarkedYAMLError(problem=f"a key must be a plain word, not {type(key).__name__}",
                                       problem_mark=key_node.start_mark)
        if key in m:
            raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
        m[key] = loader.construct_object(value_node, deep=True)
        m.lines[str(key)] = key_node.start_mark.line + 1
    return m


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of the campaign, by its index."""

    index: int
    chaos: ChaosSpec
    agent: AgentSpec
    seed: int
    repetition: int


@dataclass(frozen=True)
class CampaignPlan:
    """A validated campaign file, expanded into trials."""

    path: Path
    name: str
    subject: str
    runtime: str
    config: TrialConfig
    parallel: int
    sandbox: str
    trials: list[PlannedTrial]
    source: str
    sha256: str

    def spec(self) -> dict[str, Scalar]:
        """What CampaignStarted records: enough to resume it and to see what was asked."""
        return {"file": str(self.path), "sha256": self.sha256, "source": self.source, "resumable": True,
                "subject": self.subject, "runtime": self.runtime, "parallel": self.parallel,
                "sandbox": self.sandbox}


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: _Mapping | None, key: str | None, message: str) -> CampaignFileError:
        line = (where.lines.get(key or "", where.line) if key else where.line) if where is not None else 1
        return CampaignFileError(f"{self.path}:{line}: {message}")

    def mapping(self, value: Any, parent: _Mapping, key: str, what: str) -> _Mapping:
        if not isinstance(value, _Mapping):
            raise self.fail(parent, key, f"{what}: expected a mapping (key: value), got {type(value).__name__}")
        return value

    def keys(self, m: _Mapping, allowed: tuple[str, ...], where: str) -> None:
        for k in m:
            if k not in allowed:
                raise self.fail(m, str(k), f"{where}{k}: unknown key (allowed: {', '.join(allowed)})"
                                           f"{nearest(str(k), list(allowed))}")

    def params(self, m: _Mapping, key: str, where: str, check: Any) -> Any:
        """``check(value)`` with a ParamError pointed at the line of the parameter it names."""
        try:
            return check()
        except ParamError as e:
            inner = m.get(key)
            line_of = inner if isinstance(inner, _Mapping) and e.name in inner else m
            at = f"{where}{key}" if e.unknown or e.name == key else f"{where}{key}.{e.name}"
            raise self.fail(line_of, e.name if line_of is inner else key, f"{at}: {e.reason}") from None

    def text(self, m: _Mapping, key: str, where: str) -> str:
        v = m[key]
        if not isinstance(v, str) or not v.strip():
            raise self.fail(m, key, f"{where}{key}: must be a non-empty string, not {v!r}")
        return v


def _scalars(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str | int | float | bool) or v is None for v in value.values())


def load_campaign(path: Path | str) -> CampaignPlan:  # noqa: PLR0912, PLR0915 - one check per key, in file order
    """Read, validate and expand a campaign file; errors name file, line and key."""
    from opeval.agents import AGENTS, TOOL_CHOICES
    from opeval.chaos import CHAOS
    from opeval.runner._trial import check_supported
    from opeval.runtimes import RUNTIMES, RestartPolicy
    from opeval.subjects import SUBJECTS

    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
            raise CampaignFileError(f"{path}: {path.stat().st_size} bytes is too large for a campaign file "
                                    f"(at most {MAX_FILE_BYTES}): is it the right file?")
        source = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CampaignFileError(f"{path}: cannot read the campaign file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise CampaignFileError(f"{path}: not a text file (byte {e.start} is not UTF-8): give a YAML file") from None
    try:
        doc = yaml.load(source, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as e:
        raise CampaignFileError(yaml_problem(path, e)) from None
    c = _Checker(path)
    if not isinstance(doc, _Mapping):
        raise CampaignFileError(f"{path}:1: a campaign file is a mapping with at least name, chaos and variants")
    c.keys(doc, TOP_KEYS, "")
    for required in ("name", "chaos", "variants"):
        if required not in doc:
            raise c.fail(doc, None, f"{required}: missing (a campaign needs name, chaos and variants)")
    name = c.text(doc, "name", "")
    subject = str(doc.get("subject", "etcd"))
    if subject not in SUBJECTS.names():
        raise c.fail(doc, "subject", f"subject: unknown subject {subject!r} (allowed: {', '.join(SUBJECTS.names())})")
    runtime = str(doc.get("runtime", "local"))
    if runtime not in RUNTIMES.names():
        raise c.fail(doc, "runtime", f"runtime: unknown runtime {runtime!r} (allowed: {', '.join(RUNTIMES.names())})")
    from opeval.sandbox import MECHANISMS

    sandbox = str(doc.get("sandbox", "bubblewrap"))
    if sandbox not in MECHANISMS:
        raise c.fail(doc, "sandbox", f"sandbox: unknown sandbox {sandbox!r} (allowed: {', '.join(MECHANISMS)})")
    subj = SUBJECTS.get(subject)()
    members = c.params(doc, "members", "", lambda: check_trial_settings({"members": doc["members"]}, "members")) \
        ["members"] if "members" in doc else subj.default_members
    try:
        names = subj.member_names(members)
    except UsageError as e:
        raise c.fail(doc, "members", f"members: {str(e).removeprefix('--members ')}") from None

    trial_over: dict[str, Any] = {}
    if "trial" in doc:
        t = c.mapping(doc["trial"], doc, "trial", "trial")
        c.keys(t, TRIAL_KEYS, "trial.")
        trial_over = c.params(doc, "trial", "", lambda: check_trial_settings(t, "settings"))
    config = msgspec.convert({"members": members, **trial_over}, TrialConfig)
    RestartPolicy.parse(config.restart_policy)

    low, high = SEED_RANGE
    if "seeds" in doc:
        seeds = doc["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                               and low <= s <= high for s in seeds):
            raise c.fail(doc, "seeds", f"seeds: must be a non-empty list of whole numbers from {low} to {high}")
        if len(set(seeds)) != len(seeds):
            twice = next(s for s in seeds if seeds.count(s) > 1)
            raise c.fail(doc, "seeds", f"seeds: {twice} is listed twice (each repetition needs its own seed)")
        if len(seeds) > MAX_TRIALS:
            raise c.fail(doc, "seeds", f"seeds: {len(seeds)} seeds, more than the {MAX_TRIALS} trials a campaign "
                                       "may plan")
        if "repetitions" in doc and doc["repetitions"] != len(seeds):
            raise c.fail(doc, "repetitions", f"repetitions: {doc['repetitions']!r} but {len(seeds)} seeds given "
                                             "(one repetition per seed; drop one of them)")
    else:
        reps = c.params(doc, "repetitions", "", lambda: REPETITIONS.check(doc["repetitions"])) \
            if "repetitions" in doc else 1
        base = doc.get("seed", 1)
        if isinstance(base, bool) or not isinstance(base, int) or not low <= base <= high - reps:
            raise c.fail(doc, "seed", f"seed: must be a whole number from {low} to {high - reps}, not {base!r}")
        seeds = [base + r for r in range(reps)]
    parallel = c.params(doc, "parallel", "", lambda: PARALLEL.check(doc["parallel"])) if "parallel" in doc else 1

    if not isinstance(doc["chaos"], list) or not doc["chaos"]:
        raise c.fail(doc, "chaos", "chaos: must be a non-empty list of faults ({kind: ..., target: ...})")
    chaos_specs: list[ChaosSpec] = []
    for i, item in enumerate(doc["chaos"]):
        where = f"chaos[{i}]."
        m = c.mapping(item, doc, "chaos", f"chaos[{i}]")
        c.keys(m, CHAOS_KEYS, where)
        if "kind" not in m:
            raise c.fail(m, None, f"{where}kind: missing (allowed: {', '.join(CHAOS.names())})")
        kind = c.text(m, "kind", where)
        if kind not in CHAOS.names():
            raise c.fail(m, "kind", f"{where}kind: unknown chaos kind {kind!r} (allowed: {', '.join(CHAOS.names())})")
        try:
            check_supported(subj, kind)
        except UsageError as e:
            raise c.fail(m, "kind", f"{where}kind: {e}") from None
        params = m.get("params", {})
        if params is None or not _scalars(params):
            raise c.fail(m, "params", f"{where}params: must be a mapping of names to plain values")
        target = m.get("target", "none" if kind == "none" else "random")
        if not isinstance(target, str) or not target.strip():
            raise c.fail(m, "target", f"{where}target: must be a role or a member name, not {target!r}")
        spec = ChaosSpec(kind=kind, target=target, params=dict(params))
        fault = CHAOS.get(kind)()
        spec = ChaosSpec(kind=kind, target=target,
                         params=c.params(m, "params", where, lambda: check_params(fault.params, params, kind)))
        try:
            fault.validate(spec, names)
        except UsageError as e:
            key = "params" if any(p.name in str(e) for p in fault.params) else "target"
            raise c.fail(m, key if key in m else "kind", f"{where}{key}: {e}") from None
        chaos_specs.append(spec)

    if not isinstance(doc["variants"], list) or not doc["variants"]:
        raise c.fail(doc, "variants", "variants: must be a non-empty list ({name: ..., agent: ...})")
    agents: list[AgentSpec] = []
    seen: set[str] = set()
    allowed_agents = ["none", *AGENTS.names()]
    for i, item in enumerate(doc["variants"]):
        where = f"variants[{i}]."
        m = c.mapping(item, doc, "variants", f"variants[{i}]")
        c.keys(m, VARIANT_KEYS, where)
        for required in ("name", "agent"):
            if required not in m:
                raise c.fail(m, None, f"{where}{required}: missing")
        vname, agent = c.text(m, "name", where), c.text(m, "agent", where)
        if vname in seen:
            raise c.fail(m, "name", f"{where}name: {vname!r} is used by another variant (names must be unique)")
        seen.add(vname)
        if agent not in allowed_agents:
            raise c.fail(m, "agent", f"{where}agent: unknown agent {agent!r} (allowed: {', '.join(allowed_agents)})")
        cfg: dict[str, Scalar] = {}
        for p in VARIANT_NUMBERS:
            if p.name in m:
                cfg[p.name] = c.params(m, p.name, where, lambda p=p: p.check(m[p.name]))
        for p in COMMAND_SETTINGS:
            if p.name in m:
                if agent != "command":
                    raise c.fail(m, p.name, f"{where}{p.name}: a setting of agent command, not {agent}")
                cfg[p.name] = c.params(m, p.name, where, lambda p=p: p.check(m[p.name]))
        for k in ("model", "context", "base_url", "api_key_env", "tool_choice"):
            if k in m:
                cfg[k] = c.text(m, k, where)
        if cfg.get("tool_choice") not in (None, *TOOL_CHOICES):
            raise c.fail(m, "tool_choice", f"{where}tool_choice: one of {', '.join(TOOL_CHOICES)}, "
                                           f"not {cfg['tool_choice']!r}")
        if "tools" in m:
            tools = m["tools"]
            allowed_tools = (*subj.tools, *HARNESS_TOOLS)
            if not isinstance(tools, list) or not all(t in allowed_tools for t in tools):
                raise c.fail(m, "tools", f"{where}tools: a list of the harness's tools to hand the agent "
                                         f"(allowed: {', '.join(allowed_tools)}), not {tools!r}")
            cfg["tools"] = ",".join(tools)
        if "stop_on_recovery" in m:
            if not isinstance(m["stop_on_recovery"], bool):
                raise c.fail(m, "stop_on_recovery", f"{where}stop_on_recovery: must be true or false")
            cfg["stop_on_recovery"] = m["stop_on_recovery"]
        if "approval" in m:
            from opeval.agents import ApprovalPolicy

            try:
                cfg.update(ApprovalPolicy.parse(m["approval"], f"{where}approval").config())
            except UsageError as e:
                raise c.fail(m, "approval", str(e)) from None
        if "system_prompt" in m:
            prompt = c.text(m, "system_prompt", where)
            file = (path.parent / prompt) if not Path(prompt).is_absolute() else Path(prompt)
            if "\n" not in prompt and prompt.endswith((".md", ".txt")):
                try:
                    prompt = file.read_text(encoding="utf-8")
                except OSError as e:
                    raise c.fail(m, "system_prompt", f"{where}system_prompt: cannot read {file} ({e.strerror})") from None
                except UnicodeDecodeError as e:
                    raise c.fail(m, "system_prompt", f"{where}system_prompt: {file} is not a text file "
                                                     f"(byte {e.start} is not UTF-8)") from None
            cfg["system_prompt"] = prompt
        if agent == "none" and cfg:
            raise c.fail(m, next(iter(k for k in m if k not in ("name", "agent"))),
                         f"{where}: agent none (the baseline) takes no settings")
        agents.append(AgentSpec(name=agent, variant=vname, config=cfg))

    planned = len(seeds) * len(chaos_specs) * len(agents)
    if planned > MAX_TRIALS:
        raise c.fail(doc, "repetitions" if "repetitions" in doc else "seeds" if "seeds" in doc else "chaos",
                     f"the plan has {planned} trials ({len(seeds)} repetitions x {len(chaos_specs)} chaos kinds x "
                     f"{len(agents)} variants), more than the {MAX_TRIALS} a campaign may plan: split it")
    trials = [PlannedTrial(index=0, chaos=ch, agent=ag, seed=seed, repetition=r)
              for r, seed in enumerate(seeds) for ch in chaos_specs for ag in agents]
    trials = [PlannedTrial(index=i, chaos=t.chaos, agent=t.agent, seed=t.seed, repetition=t.repetition)
              for i, t in enumerate(trials)]
    return CampaignPlan(path=path, name=name, subject=subject, runtime=runtime, config=config, parallel=parallel,
                        sandbox=sandbox, trials=trials, source=source, sha256=hashlib.sha256(source.encode()).hexdigest())
