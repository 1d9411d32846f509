"""Tables that fit the terminal, and plain, complete text when the output is piped.

On a terminal a table takes the terminal's width: cells of ordinary columns fold onto
more lines, and when even that is not enough the least important columns are left out
and a note says which (``--wide`` shows them all, wider than the terminal if it must).
A column marked ``keep`` (an id, an outcome) is never cut, folded or left out. Piped or
redirected output is plain text: every column, every character, no colour.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._common import out

#: Characters between two columns: one of padding and the (blank) rule of the box.
GAP = 2


@dataclass
class Col:
    """A column: its header, whether it may never be cut (``keep``: never folded or left
    out), and ``drop``, its rank among the columns left out on a narrow terminal (the
    highest goes first; 0: never). A column that must not ``fold`` (a
    time, a number) is left out rather than folded."""

    header: str
    keep: bool = False
    fold: bool = True
    drop: int = 0
    justify: Literal["left", "right"] = "left"
    style: Callable[[str], str | None] | None = field(default=None, repr=False)


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"\s+", text) if w]


def _natural(col: Col, cells: Sequence[str]) -> int:
    return max([cell_len(line) for c in (col.header, *cells) for line in c.split("\n")] or [1])


#: A cell's word longer than this may be split to fold it.
LONG_WORD = 20


def _minimum(col: Col, cells: Sequence[str], natural: int) -> int:
    if col.keep or not col.fold:
        return natural
    # Folded at word boundaries: a header word is never split, nor a cell's word of up
    # to LONG_WORD characters.
    header_word = max((cell_len(w) for w in _words(col.header)), default=1)
    cell_word = max((cell_len(w) for c in cells for w in _words(c)), default=1)
    return min(natural, max(header_word, min(cell_word, LONG_WORD)))


@dataclass
class Layout:
    """Which columns are shown, at what widths, and which were left out."""

    shown: list[int]
    widths: list[int]
    left_out: list[int]

    @property
    def total(self) -> int:
        return sum(self.widths) + GAP * max(len(self.widths) - 1, 0)


def fit(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, *, wide: bool = False) -> Layout:
    """Choose the columns and widths of a table ``width`` characters wide."""
    shown = list(range(len(cols)))
    natural = [_natural(c, [r[i] for r in rows]) for i, c in enumerate(cols)]
    minimum = [_minimum(c, [r[i] for r in rows], natural[i]) for i, c in enumerate(cols)]
    left_out: list[int] = []

    def need(idx: list[int], widths: Sequence[int]) -> int:
        return sum(widths[i] for i in idx) + GAP * max(len(idx) - 1, 0)

    if not wide:
        while need(shown, minimum) > width:
            droppable = [i for i in shown if cols[i].drop > 0]
            if not droppable:
                break
            # A column with nothing to say ("-" in every row) goes before the others.
            victim = max(droppable, key=lambda i: (all(r[i] in ("-", "") for r in rows), cols[i].drop, i))
            shown.remove(victim)
            left_out.append(victim)
    widths = {i: natural[i] for i in shown}
    excess = need(shown, [widths.get(i, 0) for i in range(len(cols))]) - width
    while excess > 0:
        shrinkable = [i for i in shown if widths[i] > minimum[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: (widths[i], -i))
        widths[widest] -= 1
        excess -= 1
    return Layout(shown, [widths[i] for i in shown], sorted(left_out))


def _cell(col: Col, value: str, terminal: bool) -> Text | str:
    if not terminal:
        return value
    style = col.style(value) if col.style else None
    return Text(value, style=style or "")


def print_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], *, title: str | None = None,
                caption: str | None = None, wide: bool = False, console: Console | None = None) -> None:
    """Print ``rows`` under ``cols``: fitted on a terminal, plain and complete otherwise."""
    console = console or out
    rows = [[str(v) for v in r] for r in rows]
    if not console.is_terminal:
        _print_plain(cols, rows, title=title, caption=caption, console=console)
        return
    layout = fit(cols, rows, console.width, wide=wide)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  title=title, title_justify="left", caption=caption, caption_justify="left",
                  title_style="bold", caption_style="dim")
    for i, w in zip(layout.shown, layout.widths, strict=True):
        c = cols[i]
        table.add_column(c.header, width=w, no_wrap=c.keep, overflow="fold", justify=c.justify)
    for r in rows:
        table.add_row(*[_cell(cols[i], r[i], True) for i in layout.shown])
    if layout.total > console.width:
        # Only --wide or columns that must never be cut get here: print wider than the
        # terminal (it wraps the lines) rather than cut an id.
        wider = Console(file=console.file, width=layout.total, force_terminal=True,
                        color_system=console.color_system, no_color=console.no_color)  # type: ignore[arg-type]
        wider.print(table, soft_wrap=False)
    else:
        console.print(table, soft_wrap=False)
    if layout.left_out:
        names = ", ".join(cols[i].header for i in layout.left_out)
        console.print(f"not shown at {console.width} columns: {names} (--wide shows every column)",
                      style="dim", highlight=False, markup=False, soft_wrap=False)


def _print_plain(cols: Sequence[Col], rows: Sequence[Sequence[str]], *, title: str | None, caption: str | None,
                 console: Console) -> None:
    flat = [[v.replace("\n", " ") for v in r] for r in rows]
    widths = [_natural(c, [r[i] for r in flat]) for i, c in enumerate(cols)]
    lines = []
    if title:
        lines.append(title)
    for r in [[c.header for c in cols], *flat]:
        cells = [(v.rjust(w) if c.justify == "right" else v.ljust(w)) for c, v, w in zip(cols, r, widths, strict=True)]
        lines.append((" " * GAP).join(cells).rstrip())
    if caption:
        lines.append(caption)
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def outcome_style(value: str) -> str | None:
    """Outcomes in colour on a terminal."""
    head = value.split(" ")[0]
    return {"recovered": "green", "not_recovered": "yellow", "error": "red", "aborted": "magenta",
            "running": "cyan", "finished": "green", "interrupted": "yellow"}.get(head)
