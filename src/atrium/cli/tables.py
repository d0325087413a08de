"""Tables for the terminal: identifiers never wrap, the last (prose) column takes the rest."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.markup import escape
from rich.table import Table


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, prose_last: bool = False
) -> Table:
    """A table of plain-text cells; a truncated name cannot be copied into a command."""
    result = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    fixed = len(headers) - 1 if prose_last else len(headers)
    for index, header in enumerate(headers):
        if index < fixed:
            width = max(len(header), *(len(row[index]) for row in rows)) if rows else len(header)
            result.add_column(header, no_wrap=True, min_width=width)
        else:
            result.add_column(header, ratio=1, min_width=20)
    for row in rows:
        result.add_row(*(escape(cell) for cell in row))
    return result
