"""Projections: the event log read into DuckDB read models, scores under rule sets, and
the command classifier. Analysis never writes to the event store."""

from opeval.projections._classify import CLASSES, classify
from opeval.projections._engine import DERIVED, TABLES, ReadModels, file_digest, query, read_model_path
from opeval.projections._rules import METRICS, RuleSet

__all__ = ["CLASSES", "DERIVED", "METRICS", "TABLES", "ReadModels", "RuleSet", "classify", "file_digest", "query",
           "read_model_path"]
