"""``xairepro reproduce``: re-run studies into an output folder and write their report."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

DEFAULT_PRESET = "quick"


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
        address: str = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray)."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                            help="Config override, for every experiment (key=v) or one "
                                                 "(EXPERIMENT.key=v); repeatable."),
        force: bool = typer.Option(False, "--force", help="Recompute every cell, ignoring the cache."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress display."),
    ) -> int:
        """Run the studies' experiments (cached, resumable) and write results.csv, report.md, index.html."""
        from xairepro.report import render_report
        from xairepro.runner import reproduce

        summary = reproduce(studies or [], preset=preset, out_dir=out, data_dir=data_dir, executor=executor,
                            address=address, overrides=overrides or [], force=force, show_progress=progress)
        _, html = render_report(summary.out_dir)
        print(f"{summary.total} cells: {summary.computed} computed, {summary.cached} cached, "
              f"{summary.failed} failed ({summary.wall_time_s:.1f} s) -> {html}")
        for failure in summary.failures:
            print(f"xairepro: cell failed: {failure.label}: {failure.error}", file=sys.stderr)
        if not summary.ok:
            print(f"xairepro: {summary.failed} cell(s) failed; rerun the same command to retry them "
                  f"(tracebacks in {summary.out_dir / 'cells'}/*/*.failed.json)", file=sys.stderr)
            return 1
        return 0
