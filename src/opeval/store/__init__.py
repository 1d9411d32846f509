"""The event store (eventsourcing on SQLite, or on PostgreSQL to scale out), where it
lives by default, and its check."""

from opeval.store._location import (
    ENV_VAR,
    PostgresURL,
    StoreLocation,
    data_home,
    default_store_path,
    is_database,
    parse_store,
    read_model_path,
    resolve_store_path,
    same_store,
    store_address,
)
from opeval.store._copy import copy_events
from opeval.store._store import EventStore, log_origin, log_rows, store_exists, warn_undecodable
from opeval.store._verify import Problem, Report, verify_log

__all__ = ["ENV_VAR", "EventStore", "PostgresURL", "Problem", "Report", "StoreLocation", "copy_events", "data_home",
           "default_store_path", "is_database", "log_origin", "log_rows", "parse_store", "read_model_path",
           "resolve_store_path", "same_store", "store_address", "store_exists", "verify_log", "warn_undecodable"]
