"""Tables for people: never printed empty (a title and a header with no rows says nothing); one line instead."""
from __future__ import annotations

from rich.table import Table

from .common import out


def show_table(table: Table, when_empty: str) -> None:
    """The table when it has rows, else `when_empty` (its title's facts, said in one line)."""
    if table.row_count:
        out.print(table)
    else:
        out.print(when_empty, highlight=False)
