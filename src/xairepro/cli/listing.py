"""``xairepro list``: data sets, models, training methods, augmentations, experiments and presets."""

from __future__ import annotations

from collections.abc import Callable

import typer

SECTIONS = ("datasets", "models", "methods", "augmentations", "experiments")


def _shape(shape: object) -> str:
    return "x".join(str(s) for s in shape) if shape else "any"


def _datasets() -> tuple[list[str], list[list[str]]]:
    from xairepro.data import list_datasets

    rows = [[d.name, d.task, _shape(d.input_shape), str(d.num_classes or "-"),
             "bundled" if d.bundled else "files", d.description] for d in list_datasets()]
    return ["name", "task", "input", "classes", "source", "description"], rows


def _models() -> tuple[list[str], list[list[str]]]:
    from xairepro.models import list_models

    rows = [[m.example, m.kind, _shape(m.input_shape), ", ".join(m.options), m.description] for m in list_models()]
    return ["name", "kind", "input", "options", "description"], rows


def _methods() -> tuple[list[str], list[list[str]]]:
    import dataclasses

    from xairepro.experiments.training import list_methods

    rows = []
    for spec in list_methods():
        options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(spec.options)) if spec.options else ""
        rows.append([spec.name, " | ".join(spec.model_kinds or ("any",)), options, spec.description])
    return ["method", "models", "method_options", "description"], rows


def _augmentations() -> tuple[list[str], list[list[str]]]:
    from xairepro.train import augmentation_names

    return ["augment"], [[name] for name in augmentation_names()]


def _experiments() -> tuple[list[str], list[list[str]]]:
    from xairepro.experiments import list_experiments

    rows = [[e.name, e.study, ", ".join(sorted(e.presets)), e.reproduces or "", e.title]
            for e in list_experiments()]
    return ["experiment", "study", "presets", "reproduces", "title"], rows


_BUILDERS: dict[str, tuple[str, Callable[[], tuple[list[str], list[list[str]]]]]] = {
    "datasets": ("Data sets (xairepro train --set data.name=...)", _datasets),
    "models": ("Models (--set model.name=...)", _models),
    "methods": ("Training methods (--set method=...)", _methods),
    "augmentations": ("Batched augmentations (--set train.augment=...)", _augmentations),
    "experiments": ("Experiments and presets (xairepro reproduce NAME --preset ...)", _experiments),
}


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_command(
        what: str = typer.Argument("all", metavar="[WHAT]",
                                   help=f"One of: all, {', '.join(SECTIONS)}."),
    ) -> int:
        """List data sets, models, training methods, augmentations, experiments and presets."""
        from rich.console import Console
        from rich.table import Table

        from xairepro.cli.app import fail

        if what != "all" and what not in SECTIONS:
            raise fail(f"cannot list {what!r}; choose one of: all, {', '.join(SECTIONS)}")
        console = Console(soft_wrap=False)
        for name in SECTIONS if what == "all" else (what,):
            title, build = _BUILDERS[name]
            columns, rows = build()
            table = Table(title=title, title_justify="left", show_lines=False)
            for column in columns:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print(table)
        return 0
