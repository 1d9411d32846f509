"""Tables as a person reads them: in an 80-column terminal, piped, and with ``--wide``."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import pytest
from rich.console import Console

from opeval.cli._ids import short_ids
from opeval.cli._tables import Col, fit, print_table
from opeval.projections.synthetic import make_control_trial, make_trial, new_campaign, write_campaign
from opeval.store import EventStore
from tests.cli.terminal import in_terminal
from tests.opeval_cli import opeval

COLS = [Col("trial", keep=True), Col("campaign", keep=True), Col("started (UTC)", fold=False, drop=6),
        Col("subject", drop=9), Col("chaos → target", drop=2), Col("agent", drop=3),
        Col("seed", justify="right", fold=False, drop=7), Col("outcome", keep=True),
        Col("TTR", justify="right", fold=False, drop=4)]
ROWS = [["0f3c9a12", "b4a69e3e", "12-02 08:40", "etcd", "node_kill → follower", "none/baseline", "1234567890",
         "not_recovered", "-"],
        ["0f3d0000", "b4a69e3e", "12-02 08:41", "etcd", "pause → leader", "runbook", "7", "recovered", "4.694s"]]


def _terminal(width: int) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)


def _lines(console: Console) -> list[str]:
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [80, 60, 40, 24])
def test_ids_and_outcomes_are_never_cut(width: int) -> None:
    console = _terminal(width)
    print_table(COLS, ROWS, console=console)
    text = "\n".join(_lines(console))
    for row in ROWS:
        for value in (row[0], row[1], row[7]):
            assert re.search(rf"(^|\s){re.escape(value)}(\s|$)", text, re.M), (value, text)
    assert "…" not in text


def test_the_least_important_columns_are_left_out_and_named() -> None:
    console = _terminal(60)
    print_table(COLS, ROWS, console=console)
    lines = _lines(console)
    assert all(len(line.rstrip()) <= 60 for line in lines), lines
    note = " ".join(" ".join(lines[-2:]).split())
    layout = fit(COLS, ROWS, 60)
    left_out = [COLS[i].header for i in layout.left_out]
    assert left_out and "subject" in left_out and "trial" not in left_out
    assert f"not shown at 60 columns: {', '.join(left_out)} (--wide shows every column)" in note
    assert all(h not in lines[0] for h in ("subject", "seed"))


def test_wide_shows_every_column_even_past_the_terminal() -> None:
    console = _terminal(60)
    print_table(COLS, ROWS, console=console, wide=True)
    text = "\n".join(_lines(console))
    for c in COLS:
        for word in c.header.split():
            assert word in text
    assert "not shown" not in text and "1234567890" in text


def test_cells_fold_at_words_before_columns_go() -> None:
    layout = fit(COLS, ROWS, 72)
    widths = dict(zip(layout.shown, layout.widths, strict=True))
    assert 4 in widths and widths[4] < len("node_kill → follower")  # folded onto two lines...
    assert widths[4] >= len("node_kill")  # ...at a word boundary
    assert layout.total <= 72


def test_piped_output_is_plain_and_complete() -> None:
    console = Console(file=io.StringIO(), width=40)  # not a terminal
    print_table(COLS, ROWS, console=console, title="trials", caption="a caption")
    lines = _lines(console)
    assert lines[0] == "trials" and lines[-1] == "a caption"
    assert lines[1].split() == "trial campaign started (UTC) subject chaos → target agent seed outcome TTR".split()
    assert "\x1b" not in "".join(lines)
    for row, line in zip(ROWS, lines[2:4], strict=True):
        for value in row:
            assert value in line


# --- the commands, in an 80-column terminal -----------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two campaigns of fault trials, a control, and a one-trial run."""
    path = tmp_path_factory.mktemp("tables") / "events.db"
    with EventStore(path) as es:
        write_campaign(es, "agent-runbook", 4, rng=random.Random(1), seconds=12, seeds=[1, 2, 3, 4])
        write_campaign(es, "self-healing", 4, rng=random.Random(2), seconds=12, seeds=[1, 2, 3, 4], agent="none")
        mixed = new_campaign("with a control", 2)
        es.save(mixed)
        es.save(mixed, make_trial(mixed, 0, random.Random(3), seconds=12, seed=5),
                make_control_trial(mixed, 1, random.Random(4), seed=5))
    return path


def _json(*args: str) -> object:
    return json.loads(opeval(*args, "--json", check=True).stdout)


def _assert_fits(text: str, width: int) -> None:
    long = [line for line in text.splitlines() if len(line.rstrip()) > width]
    assert not long, long


def _whole(word: str, text: str) -> bool:
    return re.search(rf"(^|\s){re.escape(word)}(\s|$)", text, re.M) is not None


def test_list_in_an_80_column_terminal(store: Path) -> None:
    trials = _json("list", "--store", str(store))
    campaigns = _json("campaigns", "--store", str(store))
    short = short_ids([t["trial_id"] for t in trials] + [c["campaign_id"] for c in campaigns])  # type: ignore[index]
    code, text = in_terminal("list", "--store", str(store), columns=80)
    assert code == 0, text
    _assert_fits(text, 80)
    for t in trials:  # type: ignore[union-attr]
        line = next(line for line in text.splitlines() if short[t["trial_id"].replace("-", "")] in line)
        assert _whole(short[t["campaign_id"].replace("-", "")], line) and _whole(t["outcome"], line), line
    assert "(--wide shows every column)" in text


def test_campaigns_in_an_80_column_terminal(store: Path) -> None:
    campaigns = _json("campaigns", "--store", str(store))
    code, text = in_terminal("campaigns", "--store", str(store), columns=80)
    assert code == 0, text
    _assert_fits(text, 80)
    for c in campaigns:  # type: ignore[union-attr]
        assert _whole(c["campaign_id"][:8], text), c
        line = next(line for line in text.splitlines() if _whole(c["campaign_id"][:8], line))
        assert _whole(c["status"], line) and _whole(f"{c['done']}/{c['trials_planned']}", line), line


def test_analyze_in_an_80_column_terminal(store: Path) -> None:
    campaigns = _json("campaigns", "--store", str(store))
    mixed = next(c for c in campaigns if c["name"] == "with a control")  # type: ignore[union-attr]
    analyzed = _json("analyze", mixed["campaign_id"], "--store", str(store))
    code, text = in_terminal("analyze", mixed["campaign_id"][:8], "--store", str(store), columns=80)
    assert code == 0, text
    _assert_fits(text, 80)
    for t in analyzed["trials"]:  # type: ignore[index]
        line = next(line for line in text.splitlines() if _whole(t["trial_id"][:8], line))
        assert _whole(t["outcome"], line), line
    assert "not shown at 80 columns:" in text


def test_piped_list_is_every_column_of_every_trial(store: Path) -> None:
    proc = opeval("list", "--store", str(store), columns=80)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["trial", "campaign", "started", "(UTC)", "subject", "chaos", "→", "target", "agent",
                                "seed", "restart", "outcome", "TTR"]
    assert len(lines) == 1 + 10 and "\x1b" not in proc.stdout and "…" not in proc.stdout
    assert any(len(line) > 80 for line in lines)  # nothing was cut to fit
