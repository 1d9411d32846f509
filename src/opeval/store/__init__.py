"""The event store (eventsourcing on SQLite) and where it lives by default."""

from opeval.store._store import ENV_VAR, EventStore, default_store_path, read_model_path, resolve_store_path, warn_undecodable

__all__ = ["ENV_VAR", "EventStore", "default_store_path", "read_model_path", "resolve_store_path", "warn_undecodable"]
