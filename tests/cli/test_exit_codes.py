"""One table of exit codes: the program's, the README's, and what commands really return."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opeval.agents._labeller import LabellingFailed
from opeval.cli._exit import MEANINGS, ExitCode, for_outcome
from opeval.errors import EnvironmentProblem, NotFoundError, OpevalError, StoreError, UsageError
from opeval.runner import CampaignFileError
from opeval.store import EventStore
from tests.opeval_cli import opeval

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> dict[int, str]:
    section = README.read_text().split("## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.M)}


def test_the_readme_shows_the_programs_table() -> None:
    assert readme_table() == {int(code): meaning for code, meaning in MEANINGS.items()}
    assert set(MEANINGS) == set(ExitCode)


@pytest.mark.parametrize(("error", "code"), [
    (UsageError, ExitCode.USAGE), (CampaignFileError, ExitCode.USAGE), (StoreError, ExitCode.STORE),
    (NotFoundError, ExitCode.NOT_FOUND), (EnvironmentProblem, ExitCode.MISSING), (LabellingFailed, ExitCode.MODEL),
])
def test_every_error_exits_with_a_code_of_the_table(error: type[OpevalError], code: ExitCode) -> None:
    assert error("x").exit_code == code


def test_outcomes_map_to_the_table() -> None:
    assert [for_outcome(o) for o in ("recovered", "not_recovered", "error", "aborted")] == [
        ExitCode.OK, ExitCode.OK, ExitCode.TRIAL_ERROR, ExitCode.INTERRUPTED]


def test_commands_exit_as_the_table_says(store_path: Path, tmp_path: Path) -> None:
    cases: list[tuple[list[str], ExitCode]] = [
        (["list", "--no-such-option"], ExitCode.USAGE),
        (["no-such-command"], ExitCode.USAGE),
        (["run", "--members", "three"], ExitCode.USAGE),
        (["show", "abc", "--store", str(store_path)], ExitCode.STORE),  # no store there yet
    ]
    for args, code in cases:
        proc = opeval(*args)
        assert proc.returncode == code, (args, proc.stderr)
        assert proc.stderr.startswith("opeval: error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    EventStore(store_path).close()
    for args in (["show", "abc"], ["analyze", "abc"], ["export", "abc"], ["list", "--campaign", "abc"]):
        proc = opeval(*args, "--store", str(store_path))
        assert proc.returncode == ExitCode.NOT_FOUND, (args, proc.stderr)
        assert "no campaign or trial id starts with 'abc'" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsubject: etcd\n")
    assert opeval("run", "campaign", str(bad), "--store", str(store_path)).returncode == ExitCode.USAGE
