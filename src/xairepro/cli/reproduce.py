"""``xairepro reproduce``: re-run studies into an output folder and write their report."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

DEFAULT_PRESET = "quick"


def print_claims(out_dir: Path) -> None:
    """Print one line per claim of a finished run (ours, the study's, agreement) and the tally.

    The results tables stay in the report and ``results.csv``.
    """
    from xairepro.report.claims import claim_lines  # lazy: start-up time of `xairepro --help`

    claims_path = out_dir / "claims.json"
    if claims_path.is_file():
        print("\n".join(claim_lines(json.loads(claims_path.read_text(encoding="utf-8")))))


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
        md, html = written
        print(f"{summary.total} cells: {summary.computed} computed, {summary.cached} cached, "
              f"{summary.failed} failed ({summary.wall_time_s:.1f} s)")
        print_claims(summary.out_dir)
        print(f"report: {html} (and {md.name}; every number in results.csv)")
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
