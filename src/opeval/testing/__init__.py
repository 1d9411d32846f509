"""The testing kit for opeval and its plugins (public).

- Fakes: :class:`FakeRuntime` and :class:`FakeSubject` run whole trials in about a second
  with no cluster, deterministic, for tests of the runner, the monitor and the workload,
  and of agents. :func:`fake_plugins` registers them (as ``fake``) while a block runs.
- Contract suites: :class:`SubjectContract`, :class:`RuntimeContract`,
  :class:`ChaosContract` and :class:`AgentContract`. Subclass one in a test module
  (``class TestMySubject(SubjectContract): subject_name = "mine"``) and pytest runs every
  check of the contract against your plugin, as opeval's own built-ins do.
- :func:`postgres_server`: a throwaway PostgreSQL server (Debian's binaries) for tests
  and benchmarks of the PostgreSQL store; :func:`fresh_database` adds an empty database.
"""

from opeval.testing._contracts import (
    AgentContract,
    ChaosContract,
    RuntimeContract,
    SubjectContract,
    fake_plugins,
    run_one_trial,
)
from opeval.testing._fakes import FakeRuntime, FakeSubject
from opeval.testing._postgres import fresh_database, postgres_server

__all__ = [
    "AgentContract",
    "ChaosContract",
    "FakeRuntime",
    "FakeSubject",
    "RuntimeContract",
    "SubjectContract",
    "fake_plugins",
    "fresh_database",
    "postgres_server",
    "run_one_trial",
]
