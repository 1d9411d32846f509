"""Projections: the event log read into DuckDB read models, scores under rule sets, and
the command classifier. Analysis never writes to the event store."""

from opeval.projections._classify import CLASSES, classify

__all__ = ["CLASSES", "classify"]
