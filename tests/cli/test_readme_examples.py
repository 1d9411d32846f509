"""The README's examples are true: its output is the program's, and its runs end as it says.

- Every ```console block is run, command by command, in an 80-column terminal on the
  store of :mod:`tests.cli.readme_store`, and its output compared with the block's.
  ``OPEVAL_UPDATE_README=1`` writes the program's output into the README instead.
- Every shipped campaign is run several times (``OPEVAL_CAMPAIGN_RUNS``, default 3) and
  each variant's recoveries compared with the README's table of campaigns.
- Every ``./opeval run ...  # recovered`` (or ``not_recovered``) line is run and its
  outcome compared.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.cli.readme_store import build
from tests.cli.terminal import run_in_terminal
from tests.opeval_cli import opeval

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CONSOLE = re.compile(r"^```console\n(.*?)^```\n", re.M | re.S)


def console_blocks(text: str) -> list[tuple[re.Match[str], list[tuple[str, str]]]]:
    """Each ```console block and its (command, output) pairs."""
    blocks = []
    for m in CONSOLE.finditer(text):
        pairs: list[tuple[str, list[str]]] = []
        for line in m.group(1).splitlines():
            if line.startswith("$ "):
                pairs.append((line[2:], []))
            elif pairs:
                pairs[-1][1].append(line)
        blocks.append((m, [(cmd, "\n".join(out)) for cmd, out in pairs]))
    return blocks


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A folder with the campaigns, an ``opeval`` on the PATH, and the README's store."""
    root = tmp_path_factory.mktemp("readme")
    build(root / "events.db")
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    (root / "bin").mkdir()
    exe = root / "bin" / "opeval"
    exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m opeval "$@"\n')
    exe.chmod(0o755)
    env = {"OPEVAL_STORE": str(root / "events.db"), "OPEVAL_PROG": "opeval", "XDG_CONFIG_HOME": str(root / "config"),
           "PATH": f"{root / 'bin'}:{os.environ['PATH']}"}
    return root, env


def _output(command: str, root: Path, env: dict[str, str]) -> str:
    _, text = run_in_terminal(["bash", "-c", command], columns=80, env=env, cwd=str(root))
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def test_the_readme_shows_the_programs_real_output(workdir: tuple[Path, dict[str, str]]) -> None:
    root, env = workdir
    text = README.read_text()
    blocks = console_blocks(text)
    assert len(blocks) >= 2
    updated, mismatches = text, []
    for m, pairs in reversed(blocks):
        body = []
        for command, shown in pairs:
            real = _output(command, root, env)
            body += [f"$ {command}", *([real] if real else [])]
            if real != shown:
                mismatches.append(f"$ {command}\n--- README\n{shown}\n--- program\n{real}")
        updated = updated[:m.start(1)] + "\n".join(body) + "\n" + updated[m.end(1):]
    if os.environ.get("OPEVAL_UPDATE_README"):
        README.write_text(updated)
        return
    assert not mismatches, "\n\n".join(reversed(mismatches)) + "\n(OPEVAL_UPDATE_README=1 rewrites the README)"


# --- examples that run real clusters -------------------------------------------------------------
def documented_campaigns() -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """The README's table of shipped campaigns: file -> variant -> (recovered, of)."""
    found = []
    for file, outcome in re.findall(r"^\| `(campaigns/[\w.-]+\.yaml)` \| \d+ \| ([^|]+) \|", README.read_text(), re.M):
        expected = {v: (int(n), int(of)) for v, n, of in re.findall(r"(\w+): (\d+) of (\d+) recovered", outcome)}
        found.append((file, expected))
    return found


def test_every_shipped_campaign_is_in_the_readme() -> None:
    assert sorted(f for f, _ in documented_campaigns()) == sorted(
        str(p.relative_to(REPO)) for p in (REPO / "campaigns").glob("*.yaml"))
    assert all(expected for _, expected in documented_campaigns())


@pytest.mark.integration
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("file", "expected"), documented_campaigns(),
                         ids=[Path(f).stem for f, _ in documented_campaigns()])
def test_a_shipped_campaign_gives_the_documented_outcome_run_after_run(
        file: str, expected: dict[str, tuple[int, int]], tmp_path: Path, no_leaks: None) -> None:
    if "network" in file and os.geteuid() != 0:
        pytest.skip("network-and-disk needs root")
    runs = int(os.environ.get("OPEVAL_CAMPAIGN_RUNS", "2"))
    store = tmp_path / "events.db"
    seen = []
    for _ in range(runs):
        proc = opeval("run", "campaign", str(REPO / file), "--store", str(store), "--json", timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        campaign = json.loads(proc.stdout)["campaign_id"]
        trials = json.loads(opeval("analyze", campaign, "--store", str(store), "--json", timeout=900).stdout)["trials"]
        got = {v: (sum(1 for t in trials if t["variant"] == v and t["outcome"] == "recovered"),
                   sum(1 for t in trials if t["variant"] == v)) for v in expected}
        seen.append(got)
    assert seen == [expected] * runs, seen


def documented_runs() -> list[tuple[list[str], str]]:
    """``./opeval run ...`` lines of the README whose comment names the outcome."""
    found = []
    for args, comment in re.findall(r"^\s*\./opeval run (--[^#\n]*?)\s+# (.*)$", README.read_text(), re.M):
        if "recover" in comment:
            found.append((args.split(), "not_recovered" if "not_recovered" in comment else "recovered"))
    return found


@pytest.mark.integration
@pytest.mark.parametrize(("args", "outcome"), documented_runs(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_readme_run_ends_as_the_readme_says(args: list[str], outcome: str, tmp_path: Path, no_leaks: None) -> None:
    proc = opeval("run", *args, "--store", str(tmp_path / "events.db"), "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["outcome"] == outcome
