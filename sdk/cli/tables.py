"""Tables that fit the output without cutting what people look for.

How wide the output is (`output_width`): `COLUMNS` when it is set, else the terminal's
width when stdout is a terminal, else no limit. So a pipe or a file gets every column of
every row on one line (`redurable workflow list | grep order-5` finds any id), and a
terminal gets tables that fit it.

How a table fits (`fit`): columns that hold ids, run ids, dead-letter ids and statuses never
wrap and are never cut. When the table is wider than the output, the columns that may wrap
(reasons, failures, details) wrap at spaces down to their minimum width, then the less
important columns are left out, least important first (the caller prints which: the JSON
output has them all), then the wrapping columns narrow further. When the kept columns
still need more than the output has (an id longer than the terminal is wide), the table
is printed as wide as they need and the terminal folds its lines: an id is never cut.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

#: The width of "no limit": wider than any line we print, small enough for rich.
UNLIMITED = 1_000_000


def output_width() -> int | None:
    """Columns the output has: COLUMNS, else the terminal's, else None (no limit)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


@dataclass(frozen=True)
class Column:
    header: str
    #: Left out when the table does not fit: 0 never; otherwise the highest number first.
    drop: int = 0
    #: May wrap at spaces down to `min_width` (to `floor` as a last resort, when leaving
    #: out columns was not enough); a column that may not wrap keeps every value on one
    #: line, whole.
    wrap: bool = False
    min_width: int = 20
    floor: int = 10
    justify: JustifyMethod = "left"
    style: str = ""


Cell = str | Text


@dataclass
class Fitted:
    """A table laid out for an output, and what it had to leave out."""

    table: Table
    #: The width to print it at: at least what its kept columns need.
    width: int
    dropped: list[str] = field(default_factory=list)

    def note(self, width: int | None) -> Text | None:
        """The line that says which columns were left out, if any."""
        if not self.dropped:
            return None
        return Text(
            f"Left out at {width} columns: {', '.join(self.dropped)} (-o json has them)",
            style="dim",
        )


def _cell_width(cell: Text) -> int:
    return max((cell_len(line) for line in cell.plain.split("\n")), default=0)


def _longest_word(cell: Text) -> int:
    """What a wrapping cell needs at least: rich wraps at spaces only, so a longer
    word would be folded (and an id in it cut)."""
    return max((cell_len(word) for word in cell.plain.split()), default=0)


def fit(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    width: int | None,
    **table_options: Any,
) -> Fitted:
    """Lay out `rows` under `columns` for an output `width` columns wide (None: no
    limit). `table_options` go to rich's Table (title, box, show_header...)."""
    cells = [[c if isinstance(c, Text) else Text(c) for c in row] for row in rows]
    natural = [
        max([_cell_width(Text(col.header)), *(_cell_width(row[i]) for row in cells)])
        for i, col in enumerate(columns)
    ]
    words = [
        max([_longest_word(Text(col.header)), *(_longest_word(row[i]) for row in cells)])
        for i, col in enumerate(columns)
    ]
    shrunk = [min(natural[i], col.min_width) if col.wrap else natural[i]
              for i, col in enumerate(columns)]  # fmt: skip
    floored = [min(shrunk[i], col.floor) if col.wrap else natural[i]
               for i, col in enumerate(columns)]  # fmt: skip

    def build(keep: list[int], widths: list[int]) -> Table:
        table = Table(**table_options)
        for i in keep:
            col = columns[i]
            table.add_column(
                col.header,
                justify=col.justify,
                style=col.style,
                no_wrap=not col.wrap,
                overflow="fold",
                min_width=widths[i],
            )
        for row in cells:
            table.add_row(*(row[i] for i in keep))
        return table

    def needed(keep: list[int], widths: list[int]) -> int:
        """The narrowest the table can be: its columns at `widths`, a wrapping column's
        words whole (a longer word than its minimum widens it), plus what rich adds
        (padding, borders), measured on the columns alone: a page of 10,000 rows is
        laid out in a moment."""
        table = Table(**table_options)
        for i in keep:
            table.add_column(columns[i].header, min_width=max(widths[i], words[i]))
        probe = Console(width=UNLIMITED, file=io.StringIO())
        return Measurement.get(probe, probe.options, table).minimum

    keep = list(range(len(columns)))
    dropped: list[str] = []
    if width is None:
        return Fitted(build(keep, natural), needed(keep, natural))
    droppable = sorted((i for i, col in enumerate(columns) if col.drop),
                       key=lambda i: -columns[i].drop)  # fmt: skip
    for i in droppable:
        if needed(keep, shrunk) <= width:
            break
        keep.remove(i)
        dropped.append(columns[i].header)
    if needed(keep, natural) <= width:  # no wrapping needed after all
        return Fitted(build(keep, natural), width, dropped)
    if needed(keep, shrunk) > width:
        shrunk = floored
    return Fitted(build(keep, shrunk), max(width, needed(keep, shrunk)), dropped)


def print_fitted(console: Console, fitted: Fitted, width: int | None) -> None:
    """Print the table at its width (wider than the console when its ids need it),
    then the note on what was left out."""
    saved = console.width
    console.width = max(saved, fitted.width)
    try:
        console.print(fitted.table)
    finally:
        console.width = saved
    note = fitted.note(width)
    if note is not None:
        console.print(note)
