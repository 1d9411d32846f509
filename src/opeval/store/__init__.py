"""The event store (eventsourcing on SQLite), where it lives by default, and its check."""

from opeval.store._store import ENV_VAR, EventStore, default_store_path, read_model_path, resolve_store_path, warn_undecodable
from opeval.store._verify import Problem, Report, verify_log

__all__ = ["ENV_VAR", "EventStore", "Problem", "Report", "verify_log", "default_store_path", "read_model_path", "resolve_store_path", "warn_undecodable"]
