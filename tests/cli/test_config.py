"""Defaults from opeval.toml files and OPEVAL_* variables, in the README's order of precedence."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from opeval.cli import main
from opeval.cli._config import settings
from opeval.store import EventStore
from opeval.testing import fake_plugins
from tests.opeval_cli import opeval
from tests.runner.test_campaign_on_fakes import CAMPAIGN


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with an opeval.toml, and a sub-folder to work in."""
    (tmp_path / "opeval.toml").write_text('store = "runs/project.db"\nsubject = "etcd"\nparallel = 3\n')
    (tmp_path / "deep" / "er").mkdir(parents=True)
    return tmp_path


def _effective(proc: subprocess.CompletedProcess[str]) -> dict[str, tuple[object, str]]:
    assert proc.returncode == 0, proc.stderr
    return {r["key"]: (r["value"], r["from"]) for r in json.loads(proc.stdout)["settings"]}


def test_precedence_flag_then_variable_then_project_then_user_file(project: Path) -> None:
    user = Path(os.environ["XDG_CONFIG_HOME"]) / "opeval"
    user.mkdir(parents=True)
    (user / "opeval.toml").write_text('store = "/tmp/user.db"\nmodel = "claude-haiku-4-5"\nparallel = 1\n')
    here = project / "deep" / "er"

    got = _effective(opeval("config", "--json", cwd=here))
    assert got["store"] == (str(project / "runs" / "project.db"), str(project / "opeval.toml"))
    assert got["parallel"] == (3, str(project / "opeval.toml"))  # the project's file beats the user's
    assert got["model"] == ("claude-haiku-4-5", str(user / "opeval.toml"))
    assert got["subject"][0] == "etcd"

    got = _effective(opeval("config", "--json", cwd=here, env={"OPEVAL_PARALLEL": "2", "OPEVAL_STORE": "/tmp/v.db"}))
    assert got["parallel"] == (2, "OPEVAL_PARALLEL") and got["store"] == ("/tmp/v.db", "OPEVAL_STORE")

    # The store the commands use follows the same order, and --store beats them all.
    assert "no store at " + str(project / "runs" / "project.db") in opeval("list", cwd=here).stderr
    assert "no store at /tmp/v.db" in opeval("list", cwd=here, env={"OPEVAL_STORE": "/tmp/v.db"}).stderr
    flag = project / "flag.db"
    EventStore(flag).close()
    assert opeval("list", "--store", str(flag), cwd=here, env={"OPEVAL_STORE": "/tmp/v.db"}).returncode == 0


def test_without_any_source_the_built_in_defaults_apply(tmp_path: Path) -> None:
    got = _effective(opeval("config", "--json", cwd=tmp_path))
    assert all(origin == "built-in default" for _, origin in got.values()) and got["subject"][0] is None


@pytest.mark.parametrize(("text", "fragment"), [
    ('store = "x.db"\ncolour = "blue"\n', "opeval.toml:2: unknown key 'colour' (allowed: model, parallel, store, subject)"),
    ("parallel = 0\n", "opeval.toml:1: parallel must be a whole number >= 1 and <= 64, not 0"),
    ("parallel = [\n", "not valid TOML"),
])
def test_a_bad_file_is_one_line_and_exit_code_2(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "opeval.toml").write_text(text)
    proc = opeval("list", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("opeval: error: ") and fragment in proc.stderr, proc.stderr


def test_a_bad_variable_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    proc = opeval("list", cwd=tmp_path, env={"OPEVAL_PARALLEL": "many"})
    assert proc.returncode == 2 and "OPEVAL_PARALLEL: parallel must be a whole number" in proc.stderr


@pytest.fixture
def fakes(no_leaks: None) -> Iterator[None]:
    with fake_plugins():
        yield


def test_parallel_from_the_config_beats_the_campaign_file_and_the_flag_beats_it(
        fakes: None, tmp_path: Path, store_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.yaml").write_text(CAMPAIGN.replace("repetitions: 2", "repetitions: 1"))
    monkeypatch.setenv("OPEVAL_PARALLEL", "1")
    settings.cache_clear()
    for extra, width in (([], 1), (["--parallel", "3"], 3)):
        with pytest.raises(SystemExit):
            main(["run", "campaign", str(tmp_path / "c.yaml"), "--store", str(store_path), *extra])
        assert re.search(rf"4 trials, {width} at a time", capsys.readouterr().err)
