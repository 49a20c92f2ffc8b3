"""``xairepro report DIR``: re-render report.md and index.html from a run's files (no computation)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        out: Path = typer.Argument(..., metavar="DIR", help="An output folder of `xairepro reproduce`."),
        check_browser: bool = typer.Option(False, "--check-browser",
                                           help="Open index.html in headless Chromium, save DIR/screenshot.png "
                                                "and fail on console errors."),
    ) -> int:
        """Re-render report.md and index.html from DIR's results (nothing is recomputed)."""
        # lazy: start-up time of `xairepro --help`
        from xairepro.report import check_page, render_report

        md, html = render_report(out)
        print(f"wrote {md} and {html}")
        if check_browser:
            check = check_page(html, screenshot=Path(out) / "screenshot.png")
            print(f"chromium: {check.tables} tables, {check.images_loaded}/{check.images} images, "
                  f"screenshot {check.screenshot}")
            if check.console_errors:
                for err in check.console_errors:
                    print(f"xairepro: browser console error: {err}", file=sys.stderr)
                return 1
        return 0
