"""``xairepro list``: data sets, models, training methods, augmentations, experiments and presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import typer

from xairepro.cli.app import fail

SECTIONS = ("datasets", "models", "methods", "augmentations", "saliency", "experiments")


def _shape(shape: object) -> str:
    return "x".join(str(s) for s in shape) if shape else "any"


# Each builder returns (columns, rows, long_only): the columns only ``--long`` shows are named in long_only.
Listing = tuple[list[str], list[list[str]], tuple[str, ...]]


def _datasets() -> Listing:
    # lazy: start-up time of `xairepro --help`
    from xairepro.data import list_datasets

    rows = [[d.name, d.task, _shape(d.input_shape), str(d.num_classes or "-"),
             "bundled" if d.bundled else "files", d.description] for d in list_datasets()]
    return ["name", "task", "input", "classes", "source", "description"], rows, ()


def _models() -> Listing:
    # lazy: start-up time of `xairepro --help`
    from xairepro.models import list_models

    rows = [[m.example, m.kind, _shape(m.input_shape), ", ".join(m.options), m.description] for m in list_models()]
    return ["name", "kind", "input", "options", "description"], rows, ("options",)


def _methods() -> Listing:
    # lazy: start-up time of `xairepro --help`
    from xairepro.training import list_methods

    rows = []
    for spec in list_methods():
        options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(spec.options)) if spec.options else ""
        rows.append([spec.name, " | ".join(spec.model_kinds or ("any",)), options, spec.description])
    return ["method", "models", "method_options", "description"], rows, ("method_options",)


def _augmentations() -> Listing:
    # lazy: start-up time of `xairepro --help`
    from xairepro.train import augmentation_names

    return ["augment"], [[name] for name in augmentation_names()], ()


def _saliency() -> Listing:
    # lazy: start-up time of `xairepro --help`
    from xairepro.explain import SALIENCY_CLASSES
    from xairepro.metrics import FAITHFULNESS_METRICS, PROTOCOL_PRESETS

    def first_line(obj: object) -> str:
        return " ".join((obj.__doc__ or "").split("\n\n")[0].split())

    rows = [[name, "method", first_line(cls)] for name, cls in SALIENCY_CLASSES.items()]
    rows += [[name, "protocol", first_line(preset)] for name, preset in PROTOCOL_PRESETS.items()]
    rows += [["insdel", "metric", "insertion / deletion / overall under --protocol"]]
    rows += [[name, "metric", text] for name, text in FAITHFULNESS_METRICS.items()]
    return ["name", "kind", "description"], rows, ()


def _experiments() -> Listing:
    # lazy: start-up time of `xairepro --help`
    from xairepro.experiments import list_experiments

    rows = [[e.name, e.study, ", ".join(sorted(e.presets)), e.reproduces or "", e.title]
            for e in list_experiments()]
    return ["experiment", "study", "presets", "reproduces", "title"], rows, ("reproduces",)


_BUILDERS: dict[str, tuple[str, Callable[[], Listing]]] = {
    "datasets": ("Data sets (xairepro train --set data.name=...)", _datasets),
    "models": ("Models (--set model.name=...)", _models),
    "methods": ("Training methods (--set method=...)", _methods),
    "augmentations": ("Batched augmentations (--set train.augment=...)", _augmentations),
    "saliency": ("Saliency methods, insertion/deletion protocols and faithfulness metrics "
                 "(xairepro saliency --methods / --protocol / --metrics)",
                 _saliency),
    "experiments": ("Experiments and presets (xairepro reproduce NAME --preset ...)", _experiments),
}


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
        """List data sets, models, training methods, augmentations, experiments and presets.

        One line per entry, descriptions cut to the terminal's width; --long shows everything.
        """
        # lazy: start-up time of `xairepro --help`
        from rich.console import Console

        if what != "all" and what not in SECTIONS:
            raise fail(f"cannot list {what!r}; choose one of: all, {', '.join(SECTIONS)}")
        console = Console(soft_wrap=False, highlight=False)
        any_cut = False
        for n, name in enumerate(SECTIONS if what == "all" else (what,)):
            title, build = _BUILDERS[name]
            columns, rows, long_only = build()
            if not long:
                keep = [i for i, c in enumerate(columns) if c not in long_only]
                columns, rows = [columns[i] for i in keep], [[r[i] for i in keep] for r in rows]
            console.print(("\n" if n else "") + title, style="bold", markup=False)
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
