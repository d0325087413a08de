"""Tables for the terminal: identifiers never wrap, the last (prose) column takes the rest.

Every text cell is outside data as far as the table knows: it is printed through
``safe_text`` (no character that acts on the terminal, no newline that would forge a row) and
with Rich markup escaped. A ``rich.text.Text`` cell is taken as it is: its maker made it safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from atrium.cli.safe_text import safe_text

Cell = str | Text


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, prose_last: bool = False
) -> Table:
    """A table of plain-text cells; a truncated name cannot be copied into a command."""
    rows = [[_safe(cell) for cell in row] for row in rows]
    result = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    fixed = len(headers) - 1 if prose_last else len(headers)
    for index, header in enumerate(headers):
        if index < fixed:
            width = max(len(header), *(len(row[index]) for row in rows)) if rows else len(header)
            result.add_column(header, no_wrap=True, min_width=width)
        else:
            result.add_column(header, ratio=1, min_width=20)
    for row in rows:
        result.add_row(*(cell if isinstance(cell, Text) else escape(cell) for cell in row))
    return result


def _safe(cell: Cell) -> Cell:
    return cell if isinstance(cell, Text) else safe_text(cell)
