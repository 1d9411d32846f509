"""Scoring rule sets: data (YAML) with a name, a version and a content hash."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from opeval._assets import asset_path
from opeval.errors import UsageError, yaml_problem

METRICS = {"recovered", "ttd_s", "first_diagnostic_s", "first_remediation_s", "ttr_s", "availability",
           "lost_writes", "safe", "commands", "unique_commands", "thrashing", "destructive", "tokens",
           "cost_usd", "speed", "remediations"}
_THRESHOLDS = ("min_settle_s", "ttr_target_s", "thrashing_window_s", "thrashing_threshold")
_SQL_WORDS = {"cast", "as", "integer", "double", "case", "when", "then", "else", "end", "and", "or", "not",
              "coalesce", "greatest", "least", "ln", "log", "sqrt", "abs", "round", "null", "true", "false",
              "is", "exp", "pow", "power"}


class RuleSet:
    """One parsed, validated rule set."""

    def __init__(self, data: dict[str, Any], source: str, origin: str) -> None:
        self.origin = origin
        self.source = source
        try:
            self.name = str(data["name"])
            self.version = int(data.get("version", 1))
            self.thresholds = {k: float(data["thresholds"][k]) for k in _THRESHOLDS}
            self.destructive_classes = [str(c) for c in data.get("destructive_classes", ["destructive"])]
            self.weights = {str(k): float(v) for k, v in (data.get("weights") or {}).items()}
            self.composite = " ".join(str(data["composite"]).split())
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"rule set {origin}: missing or bad key {e}") from None
        for k in self.weights:  # each becomes a column name, w_<name>, in the scoring SQL
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", k):
                raise UsageError(f"rule set {origin}: weight name {k!r} must be letters, digits and underscores")
        allowed = METRICS | {f"w_{k}" for k in self.weights} | _SQL_WORDS
        for word in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", self.composite):
            if word.lower() not in allowed:
                raise UsageError(f"rule set {origin}: composite uses unknown name {word!r} "
                                 f"(metrics: {', '.join(sorted(METRICS))}; weights as w_<name>)")
        canonical = json.dumps({"name": self.name, "version": self.version, "thresholds": self.thresholds,
                                "destructive_classes": self.destructive_classes, "weights": self.weights,
                                "composite": self.composite}, sort_keys=True)
        self.hash = hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def key(self) -> str:
        """``name@hash``: how scores under this rule set are keyed."""
        return f"{self.name}@{self.hash}"

    @classmethod
    def load(cls, path: Path | str) -> RuleSet:
        """Read a rule set file."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise UsageError(f"cannot read rule set {p}: {e.strerror}") from None
        return cls.parse(text, str(p))

    @classmethod
    def parse(cls, text: str, origin: str = "<text>") -> RuleSet:
        """Parse rule set YAML."""
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as e:
            raise UsageError(f"rule set {yaml_problem(origin, e)}") from None
        if not isinstance(data, dict):
            raise UsageError(f"rule set {origin} must be a mapping")
        return cls(data, text, origin)

    @classmethod
    def default(cls) -> RuleSet:
        """The shipped default rule set."""
        return cls.load(asset_path("projections/rules/default.yaml"))
