"""Report: Markdown and self-contained HTML with tables beside the published numbers.

    from xairepro.report import render_report, check_page
    md, html = render_report("results/quick")           # report.md, index.html from the run's files
    check_page(html, screenshot="results/quick/screenshot.png")   # headless Chromium

The figure modules of the studies (``report/saliency_figures.py`` ...) live here too; names are
exported lazily so importing one of them does not pull in the renderer.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BrowserCheck": "xairepro.report.browser",
    "check_page": "xairepro.report.browser",
    "find_chromium": "xairepro.report.browser",
    "ReportData": "xairepro.report.data",
    "load_report_data": "xairepro.report.data",
    "md_code": "xairepro.report.render",
    "md_escape": "xairepro.report.render",
    "render_html": "xairepro.report.render",
    "render_markdown": "xairepro.report.render",
    "render_report": "xairepro.report.render",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'xairepro.report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
