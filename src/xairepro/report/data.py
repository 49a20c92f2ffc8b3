"""Read a run's output folder into the plain structures the Markdown and HTML renderers share.

Only files are read (``run.json``, ``summary.csv``, ``claims.json``, ``figures.json``,
``provenance.json``): ``xairepro report DIR`` re-renders without the experiments being importable.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xairepro.data.subsets import flag_dataset
from xairepro.errors import UsageError
from xairepro.runner.store import read_manifest

__all__ = ["Row", "Table", "StudySection", "ReportData", "load_report_data", "fmt", "fmt_pm", "fmt_diff"]


def fmt(x: float | None) -> str:
    """A number with 4 significant digits; an em dash for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def fmt_pm(mean: float | None, std: float | None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(std)}"


def fmt_diff(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.3g}"


@dataclass
class Row:
    dataset: str
    variant: str
    metric: str
    ours: str
    n: int
    published: str
    difference: str
    source: str
    note: str


@dataclass
class Table:
    title: str
    source: str
    rows: list[Row]


@dataclass
class StudySection:
    name: str
    title: str
    reproduces: str
    tables: list[Table]
    claims: list[dict[str, Any]]
    figures: list[dict[str, Any]]          # {"path", "caption", "error"}
    failures: list[dict[str, Any]]         # failed cells {"label", "error"}
    cells: dict[str, int] = field(default_factory=dict)


@dataclass
class ReportData:
    out_dir: Path
    preset: str
    sections: list[StudySection]
    provenance: dict[str, Any]


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not readable JSON ({exc})") from None


def _metric_label(info: dict[str, Any], metric: str) -> str:
    spec = info.get("metrics", {}).get(metric)
    if not spec:
        return metric
    arrow = {True: " ↑", False: " ↓"}.get(spec.get("higher_is_better"), "")
    return f"{spec.get('label') or metric}{arrow}"


def _tables(name: str, info: dict[str, Any], summary: pd.DataFrame) -> list[Table]:
    sub = summary[summary["experiment"] == name]
    specs = info.get("tables") or []
    if not specs:
        specs = [{"title": "Results", "metrics": list(dict.fromkeys(sub["metric"])), "source": ""}]
    tables = []
    for spec in specs:
        rows = []
        for metric in spec["metrics"]:
            for rec in sub[sub["metric"] == metric].itertuples(index=False):
                rows.append(Row(
                    dataset=flag_dataset(str(rec.dataset)), variant=str(rec.variant), metric=_metric_label(info, metric),
                    ours=fmt_pm(rec.mean, rec.std) if rec.n else "not run", n=int(rec.n),
                    published=fmt_pm(rec.reference, rec.reference_std), difference=fmt_diff(rec.difference),
                    source=str(rec.source), note=str(rec.note)))
        tables.append(Table(str(spec["title"]), str(spec.get("source", "")), rows))
    return tables


def load_report_data(out_dir: str | Path) -> ReportData:
    """Everything the report shows, read from ``out_dir``; ``UsageError`` if it holds no finished run."""
    out = Path(out_dir)
    if not out.is_dir():
        raise UsageError(f"{str(out)!r} is not a folder")
    manifest = read_manifest(out)
    if manifest is None or not (out / "summary.csv").is_file():
        raise UsageError(f"{str(out)!r} holds no finished xairepro run (run.json or summary.csv missing)")
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False,
                          na_values={c: [""] for c in ("n", "mean", "std", "reference", "reference_std",
                                                       "difference")},
                          dtype={"experiment": str, "dataset": str, "variant": str, "metric": str,
                                 "source": str, "note": str})
    claims = _read_json(out / "claims.json", {})
    figures = _read_json(out / "figures.json", [])
    provenance = _read_json(out / "provenance.json", {})
    cells = provenance.get("cells", [])
    sections = []
    for name in manifest["experiments"]:
        info = manifest.get("info", {}).get(name, {})
        mine = [c for c in cells if c.get("experiment") == name]
        counts: dict[str, int] = {}
        for c in mine:
            counts[c.get("status", "?")] = counts.get(c.get("status", "?"), 0) + 1
        sections.append(StudySection(
            name=name, title=info.get("title") or name, reproduces=info.get("reproduces", ""),
            tables=_tables(name, info, summary), claims=list(claims.get(name, [])),
            figures=[f for f in figures if f.get("experiment") == name],
            failures=[{"label": f"{c['dataset']}/{c['variant']}/seed={c['seed']}", "error": c.get("error") or ""}
                      for c in mine if c.get("status") == "failed"],
            cells=counts))
    return ReportData(out, str(manifest.get("preset", "")), sections, provenance)
