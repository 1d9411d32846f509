"""Shell completion: installed for bash and zsh, and completing commands, plugin names and ids."""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from opeval.projections.synthetic import write_campaign
from opeval.store import EventStore
from tests.opeval_cli import opeval


@pytest.mark.parametrize(("shell", "script", "rc", "line"), [
    ("bash", ".local/share/bash-completion/completions/opeval", ".bashrc", ". "),
    ("zsh", ".zsh/completions/_cyclopts_opeval", ".zshrc", "fpath=("),
])
def test_install_completion_writes_the_script_and_loads_it_from_the_rc_file(
        tmp_path: Path, shell: str, script: str, rc: str, line: str) -> None:
    env = {"HOME": str(tmp_path), "ZSH": "", "ZSH_CUSTOM": ""}
    proc = opeval("--install-completion", "--shell", shell, env=env)
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / script
    assert installed.is_file() and "opeval" in installed.read_text()
    assert line in (tmp_path / rc).read_text() and str(installed.parent) in (tmp_path / rc).read_text()


@pytest.fixture
def completing(tmp_path: Path, store_path: Path) -> tuple[str, Path, str]:
    """The bash script, an ``opeval`` on the PATH, and a store with one campaign."""
    with EventStore(store_path) as es:
        campaign = write_campaign(es, "completed", 2, rng=random.Random(1), seconds=10, seeds=[1, 2])
    script = opeval("completion", "bash").stdout
    (tmp_path / "comp.bash").write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "opeval"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m opeval "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(tmp_path / "comp.bash"), bin_dir, campaign.id.hex


def _complete(setup: tuple[str, Path, str], *words: str) -> list[str]:
    script, bin_dir, _ = setup
    array = " ".join(f"'{w}'" for w in ("opeval", *words))
    proc = subprocess.run(
        ["bash", "-c", f'source "{script}"; COMP_WORDS=({array}); COMP_CWORD={len(words)}; _opeval; '
                       'printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_plugins_and_ids(completing: tuple[str, Path, str], store_path: Path) -> None:
    _, _, campaign = completing
    assert _complete(completing, "camp") == ["campaigns"]
    assert {"node_kill", "pause", "none"} <= set(_complete(completing, "run", "--chaos", ""))
    assert _complete(completing, "run", "--agent", "r") == ["runbook"]
    ids = _complete(completing, "analyze", "--store", str(store_path), campaign[:3])
    assert ids == [campaign[:8]]
    assert len(_complete(completing, "show", "--store", str(store_path), "")) == 3  # the campaign and its trials
