"""``xairepro reproduce``: re-run studies into an output folder and write their report."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

DEFAULT_PRESET = "quick"


def print_results(out_dir: Path) -> None:
    """Print the claim verdicts and the summary table (ours vs published) of a finished run."""
    # lazy: start-up time of `xairepro --help`
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    console = Console()
    claims_path, summary_path = out_dir / "claims.json", out_dir / "summary.csv"
    if claims_path.is_file():
        table = Table(title="Claims", title_justify="left")
        for col in ("experiment", "claim", "verdict", "numbers that decided"):
            table.add_column(col, overflow="fold")
        colour = {"holds": "green", "fails": "red", "inconclusive": "yellow"}
        for exp, claims in json.loads(claims_path.read_text()).items():
            for c in claims:
                table.add_row(exp, c["text"], f"[{colour.get(c['status'], 'white')}]{c['status']}[/]", c["reason"])
        console.print(table)
    if summary_path.is_file():
        frame = pd.read_csv(summary_path)
        table = Table(title="Results (mean ± std over seeds; published value where the study gives one)",
                      title_justify="left")
        for col in ("experiment", "dataset", "variant", "metric", "ours", "published"):
            table.add_column(col, overflow="fold", justify="right" if col in ("ours", "published") else "left")
        for row in frame.itertuples(index=False):
            ours = f"{row.mean:.4g}" + (f" ± {row.std:.2g}" if pd.notna(row.std) else "")
            ref = "" if pd.isna(row.reference) else f"{row.reference:.4g}"
            table.add_row(row.experiment, row.dataset, row.variant, row.metric, ours, ref)
        console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("reproduce")
    def reproduce_command(
        studies: list[str] = typer.Argument(None, metavar="STUDY",
                                            help="Experiments or studies to run (default: every registered "
                                                 "one offering the preset; see `xairepro list`)."),
        preset: str = typer.Option(DEFAULT_PRESET, "--preset", help="quick (bundled data, CPU, minutes) or "
                                   "paper (the studies' settings: real data, a GPU)."),
        out: Path = typer.Option(..., "--out", help="Output folder (created; reused to resume a run)."),
        data_dir: Path = typer.Option(None, "--data-dir", help="Folder holding the real data sets."),
        executor: str = typer.Option("local", "--executor", help="local (in-process) or ray."),
        workers: int = typer.Option(None, "--workers", min=1, help="Cells computed at once by the local "
                                    "executor, each in its own process (default: as many as the CPU cores "
                                    "hold; 1 for GPU cells on a GPU machine). The numbers do not depend on it."),
        address: str = typer.Option(None, "--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT (default: start a local Ray)."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                            help="Config override, for every experiment (key=v) or one "
                                                 "(EXPERIMENT.key=v); repeatable."),
        force: bool = typer.Option(False, "--force", help="Recompute every cell, ignoring the cache."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress display."),
        download: bool = typer.Option(False, "--download", help="Let experiments fetch missing real data sets "
                                      "from their official sources (never done otherwise)."),
    ) -> int:
        """Run the studies' experiments (cached, resumable) and write results.csv, report.md, index.html."""
        # lazy: start-up time of `xairepro --help`
        from xairepro.report import render_report
        from xairepro.runner import reproduce

        written: list[Path] = []  # the report is rendered while the run still holds the folder's lock
        summary = reproduce(studies or [], preset=preset, out_dir=out, data_dir=data_dir, executor=executor,
                            address=address, workers=workers, overrides=overrides or [], force=force, download=download,
                            show_progress=progress, finish=lambda folder: written.extend(render_report(folder)))
        html = written[-1]
        print_results(summary.out_dir)
        print(f"{summary.total} cells: {summary.computed} computed, {summary.cached} cached, "
              f"{summary.failed} failed ({summary.wall_time_s:.1f} s) -> {html}")
        for error, labels in _group_failures(summary.failures):
            if len(labels) == 1:
                print(f"xairepro: cell failed: {labels[0]}: {error}", file=sys.stderr)
            else:
                named = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
                print(f"xairepro: {len(labels)} cells failed with the same error ({named}): {error}",
                      file=sys.stderr)
        if not summary.ok:
            print(f"xairepro: {summary.failed} cell(s) failed; rerun the same command to retry them "
                  f"(tracebacks in {summary.out_dir / 'cells'}/*/*.failed.json)", file=sys.stderr)
            return 1
        return 0


def _group_failures(failures: Sequence[Any]) -> list[tuple[str, list[str]]]:
    """(error, labels of the cells that failed with it), errors in order of first appearance.

    A missing data set fails every cell that needs it with the same message: one line says it once.
    """
    groups: dict[str, list[str]] = {}
    for failure in failures:
        groups.setdefault(str(failure.error), []).append(failure.label)
    return list(groups.items())
