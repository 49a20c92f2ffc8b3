"""``xairepro list``: data sets, models, training methods, augmentations, saliency methods and protocols,
experiments and presets.

The entries come from ``catalog.json`` (see :mod:`xairepro.cli.catalog`), so listing loads neither torch
nor the studies' code.
"""

from __future__ import annotations

from typing import Any

import typer

from xairepro.cli.app import fail
from xairepro.cli.catalog import SECTIONS, load_catalog


def _table(columns: list[str], rows: list[list[str]], width: int, long: bool) -> tuple[Any, bool]:
    """Compact: one line per row, the last column cut to the terminal's ``width`` with an ellipsis; long:
    every column, wrapped.  Returns the table and whether a cell was cut."""
    # lazy: start-up time of `xairepro --help`
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    cut = False
    if long:
        for column in columns:
            table.add_column(column, overflow="fold")
    else:
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
        room = max(width - sum(widths[:-1]) - 2 * (len(columns) - 1), 12)  # 2: padding + separator per column
        cut = widths[-1] > room
        for i, column in enumerate(columns):
            last = i == len(columns) - 1
            table.add_column(column, no_wrap=True, overflow="ellipsis" if last else "fold",
                             max_width=room if last else None)
    for row in rows:
        table.add_row(*row)
    return table, cut


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_command(
        what: str = typer.Argument("all", metavar="[WHAT]",
                                   help=f"One of: all, {', '.join(SECTIONS)}."),
        long: bool = typer.Option(False, "--long", "-l", help="Every column, descriptions in full (wrapped)."),
    ) -> int:
        """List data sets, models, training methods, augmentations, saliency methods, experiments, presets.

        One line per entry, descriptions cut to the terminal's width; --long shows everything.
        """
        # lazy: start-up time of `xairepro --help`
        from rich.console import Console

        if what != "all" and what not in SECTIONS:
            raise fail(f"cannot list {what!r}; choose one of: all, {', '.join(SECTIONS)}")
        catalog = load_catalog()
        console = Console(soft_wrap=False, highlight=False)
        any_cut = False
        for n, name in enumerate(SECTIONS if what == "all" else (what,)):
            section = catalog[name]
            columns, rows, long_only = section["columns"], section["rows"], section["long_only"]
            if not long:
                keep = [i for i, c in enumerate(columns) if c not in long_only]
                columns, rows = [columns[i] for i in keep], [[r[i] for i in keep] for r in rows]
            console.print(("\n" if n else "") + section["title"], style="bold", markup=False)
            if name == "augmentations" and not long:
                console.print("  " + ", ".join(r[0] for r in rows), markup=False)
                continue
            table, cut = _table(columns, rows, console.width, long)
            console.print(table)
            any_cut = any_cut or cut
        if any_cut:
            console.print("\n(cut to the terminal's width: xairepro list --long shows every column in full)",
                          style="dim", markup=False)
        return 0
