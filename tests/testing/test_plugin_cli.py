"""A subject installed only by its entry point runs from the command line, with the
sandboxed runbook, and leaves nothing behind: opeval itself was not edited for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from opeval.events import Trial
from opeval.store import EventStore
from tests.opeval_cli import opeval
from tests.plugins.toykv.conftest import HERE, install_metadata


@pytest.mark.integration
def test_opeval_run_finds_the_plugin_subject_by_entry_point(tmp_path: Path, runtime_dir: Path) -> None:
    install_metadata(tmp_path / "site")
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{HERE}", "OPEVAL_STORE": str(tmp_path / "e.db")}
    r = opeval("run", "--subject", "toykv", "--chaos", "node_kill", "--agent", "runbook", "--restart-policy", "never",
               "--seed", "2", env=env, check=True)
    assert "recovered" in r.stdout
    with EventStore(tmp_path / "e.db") as store:
        (trial_id,) = {e.originator_id for _, e in store.iter_events() if isinstance(e, Trial.TrialStarted)}
        events = store.events(trial_id)
    started = events[0]
    assert started.subject == "toykv" and started.sandbox is not None and started.sandbox.mechanism == "bubblewrap"
    commands = [e.command for e in events if isinstance(e, Trial.AgentCommandExecuted)]
    assert any(c.startswith("nodectl start toykv-") for c in commands), commands
    assert events[-1].outcome == "recovered"
    assert not list((runtime_dir / "trials").glob("*")), "a workspace was left behind"

    bad = opeval("run", "--subject", "toykv", "--chaos", "partition", env=env)
    assert bad.returncode == 2
    assert "subject toykv does not support chaos kind 'partition': choose one of node_kill, none, pause\n" in bad.stderr
    assert "Traceback" not in bad.stderr
