"""Tables fitted to the terminal's width: the least important columns are left out until
the rest fits, and a caption names what was left out.

A column that holds text a user copies (a worker id, a queue name) folds onto more lines
when even the essential columns do not fit; it is never cut. Other cells never wrap, so no
header is squashed to ``work…``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

T = TypeVar("T")

#: Wide enough that measuring a table never clamps it to the width it is measured with.
_UNBOUNDED_WIDTH = 1_000_000


@dataclass(frozen=True, slots=True)
class Column(Generic[T]):
    """One column: its header, how a row's cell reads, and how it is laid out."""

    header: str
    cell: Callable[[T], str]
    #: Text a user copies: folded onto more lines when narrow, never cut.
    holds_ids: bool = False
    justify: Literal["left", "right"] = "left"


@dataclass(frozen=True, slots=True)
class FittedTable:
    """The table to print, and the headers of the columns left out of it."""

    table: Table
    left_out: list[str]


def _fits(console: Console, table: Table) -> bool:
    """Whether ``table`` fits ``console``'s width without any cell wrapping."""
    options = console.options.update_width(_UNBOUNDED_WIDTH)
    return Measurement.get(console, options, table).maximum <= console.width


def _build(
    new_table: Callable[[], Table], columns: Sequence[Column[T]], rows: Sequence[T]
) -> Table:
    table = new_table()
    for column in columns:
        if column.holds_ids:
            table.add_column(column.header, overflow="fold", justify=column.justify)
        else:
            table.add_column(column.header, no_wrap=True, justify=column.justify)
    for row in rows:
        table.add_row(*(column.cell(row) for column in columns))
    return table


def fitted_table(
    console: Console,
    new_table: Callable[[], Table],
    columns: Sequence[Column[T]],
    rows: Sequence[T],
    drop_order: Sequence[str],
) -> FittedTable:
    """A table (made by ``new_table``) of ``rows`` with as many of ``columns`` as fit
    ``console``'s width: the columns named in ``drop_order`` are left out, the first one
    first, until the rest fits; the columns not named there are always shown."""
    shown = list(columns)
    left_out: list[str] = []
    for header in drop_order:
        if _fits(console, _build(new_table, shown, rows)):
            break
        shown = [column for column in shown if column.header != header]
        left_out.append(header)
    return FittedTable(_build(new_table, shown, rows), left_out)


def left_out_caption(left_out: Sequence[str]) -> str | None:
    """The caption naming the columns a narrow terminal left out (``None`` if none)."""
    if not left_out:
        return None
    return "wider terminal for: " + ", ".join(left_out)
