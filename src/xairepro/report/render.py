"""Render ``report.md`` and ``index.html`` from a run's output folder.

The HTML is one self-contained page: CSS inline, figures inlined as base64 data URIs, no JavaScript,
a Content-Security-Policy that forbids loading anything else; every string that comes from configs or
data goes through jinja2's autoescaping.  The Markdown escapes the characters Markdown and inline HTML
give meaning to.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote
from pathlib import Path
from typing import Any

import jinja2

from xairepro.report.claims import tally, verdict_label
from xairepro.report.data import ReportData, fmt, load_report_data
from xairepro.utils import atomic_write_text

__all__ = ["render_report", "render_html", "render_markdown", "md_escape", "md_code"]

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
         ".gif": "image/gif", ".webp": "image/webp"}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~<])")
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")  # "&amp;", "&#60;": an entity reference would be decoded
_MD_BACKTICKS = re.compile(r"`+")


def md_escape(text: Any) -> str:
    """Text safe inside Markdown and its table cells, shown as written: one line, backslash escapes only.

    ``\\ ` * _ [ ] | ~ <`` are backslash-escaped (``<`` so no HTML tag or autolink can start), ``&`` only
    where it would begin an entity reference, ``>`` only at the start (a block quote); no HTML entities,
    so ``a -> b`` stays ``a -> b`` in the file.
    """
    s = " ".join(str(text).splitlines())
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _MD_ENTITY.sub(r"\\&", s)
    return "\\" + s if s.startswith(">") else s


def md_code(text: Any) -> str:
    """``text`` as a Markdown code span shown verbatim (backslash escapes do not apply inside one).

    The fence is one backtick longer than any run of backticks in the text; a space pads each side when
    the text starts or ends with a backtick or a space.  Not for table cells (a ``|`` would split them).
    """
    s = " ".join(str(text).splitlines())
    fence = "`" * (max((len(m) for m in _MD_BACKTICKS.findall(s)), default=0) + 1)
    if not s or s[0] in "` " or s[-1] in "` ":
        s = f" {s} "
    return f"{fence}{s}{fence}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader(__package__ or "", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals["fmt"] = fmt
    return env


def _data_uri(out_dir: Path, rel: str | None) -> str | None:
    """The figure as a data URI, or None when the file is missing or outside the output folder."""
    if not rel:
        return None
    root = out_dir.resolve()
    path = (root / rel).resolve()
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_relative_to(root) or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _device_line(prov: dict[str, Any]) -> str:
    dev = prov.get("device", {})
    gpus = ", ".join(dev.get("gpus") or []) or "no GPU"
    return f"{dev.get('platform', '?')}; {dev.get('cpu_count', '?')} CPU cores; {gpus}"


def _details(details: dict[str, Any]) -> dict[str, Any]:
    """An experiment's provenance details as shown: lists of lines joined, empty lists left out."""
    return {k: "; ".join(str(x) for x in v) if isinstance(v, list) else v for k, v in details.items()
            if not (isinstance(v, list) and not v)}


def _context(data: ReportData) -> dict[str, Any]:
    for section in data.sections:
        for fig in section.figures:
            fig["uri"] = _data_uri(data.out_dir, fig.get("path"))
            if fig["uri"] is None and not fig.get("error"):
                fig["error"] = f"file {fig.get('path')!r} not found in the output folder"
    prov = data.provenance
    experiments = {name: {"config_hash": e.get("config_hash", ""), "seeds": e.get("seeds", []),
                          "datasets": e.get("datasets", {}), "details": _details(e.get("details", {}))}
                   for name, e in prov.get("experiments", {}).items()}
    run = {"executor": None, "finished": None, "wall_time_s": None, "cells_wall_time_s": None,
           **prov.get("run", {})}
    claims = [c for section in data.sections for c in section.claims]
    return {"data": data, "run": run, "device": _device_line(prov), "packages": prov.get("packages", {}),
            "experiments": experiments, "cells": prov.get("cells", []), "label": verdict_label,
            "claim_tally": tally(claims).sentence(), "verdict_rule": run.get("verdict_rule") or ""}


def render_html(data: ReportData) -> str:
    return _environment().get_template("report.html.j2").render(**_context(data))


def render_markdown(data: ReportData) -> str:
    """The same content as the HTML page, as Markdown (figures linked by relative path)."""
    e, code = md_escape, md_code
    ctx = _context(data)
    run = ctx["run"]
    lines = ["# xairepro reproduction report", "",
             f"Preset {code(data.preset)} · executor {code(run['executor'])} · finished {e(run['finished'])}", ""]
    if run.get("missing_data"):
        lines += ["**Not run, data missing:** " + "; ".join(f"{e(name)} ({code(how)})" for name, how in
                                                           run["missing_data"].items())
                  + f" — {run.get('cells', {}).get('missing_data', '?')} cells not run; the others ran.", ""]
    lines += ["## Claims at a glance", "", f"{e(ctx['claim_tally'])}.", "",
              "| Study | Claim | Ours | The study's | Agreement | Why (numbers that decided) |",
              "|---|---|---|---|---|---|"]
    for s in data.sections:
        for c in s.claims:
            sanity = " (sanity check, not counted)" if c.get("kind") == "sanity" else ""
            lines.append(f"| {e(s.title)} | {e(c['text'] + sanity)} | **{e(verdict_label(c))}** | "
                         f"{e(c.get('study') or '—')} | {e(c.get('agreement') or '—')} | {e(c['reason'])} |")
    if ctx["verdict_rule"]:
        lines += ["", f"How verdicts are decided: {e(ctx['verdict_rule'])}"]
    for s in data.sections:
        lines += ["", f"## {e(s.title)}", "",
                  f"Experiment {code(s.name)}" + (f" · reproduces {e(s.reproduces)}" if s.reproduces else "")
                  + " · cells: " + ", ".join(f"{v} {e(k)}" for k, v in s.cells.items())]
        for t in s.tables:
            lines += ["", f"### {e(t.title)}" + (f" ({e(t.source)})" if t.source else ""), ""]
            if not t.rows:
                lines.append("No results.")
                continue
            lines += ["| Data set | Variant | Metric | Ours (mean ± std) | n | Published | Difference | Source |",
                      "|---|---|---|---:|---:|---:|---:|---|"]
            for r in t.rows:
                src = e(r.source) + (f" — {e(r.note)}" if r.note else "")
                lines.append(f"| {e(r.dataset)} | {e(r.variant)} | {e(r.metric)} | {e(r.ours)} | {r.n} | "
                             f"{e(r.published)} | {e(r.difference)} | {src} |")
        lines += ["", "### Claims", ""]
        if not s.claims:
            lines.append("This experiment states no claim.")
        for c in s.claims:
            numbers = ", ".join(f"{e(k)} = {fmt(v)}" for k, v in c["numbers"].items())
            study = (f" · the study's: {e(c['study'])} ({e(c.get('agreement') or '')}): “{e(c.get('study_quote') or '')}”"
                     if c.get("study") else "")
            lines.append(f"- **{e(verdict_label(c))}**: {e(c['text'])}{study} — {e(c['reason'])}"
                         + (f" ({numbers})" if numbers else ""))
        if s.figures:
            lines += ["", "### Figures", ""]
            for f in s.figures:
                if f.get("uri"):
                    lines.append(f"![{e(f['caption'])}]({quote(f['path'])})  ")
                    lines.append(f"*{e(f['caption'])}*")
                else:
                    lines.append(f"- figure not available: {e(f.get('error'))}")
        if s.failures:
            lines += ["", "### Failed cells", ""]
            lines += [f"- {code(f['label'])}: {e(f['error'])}" for f in s.failures]
    lines += ["", "## Provenance", "", f"- Device: {e(ctx['device'])}",
              "- Packages: " + ", ".join(f"{e(k)} {e(v or '—')}" for k, v in ctx["packages"].items())]
    for name, x in ctx["experiments"].items():
        sets = ", ".join(f"{e(d)} ({'bundled stand-in' if i.get('bundled') is True else 'real files' if i.get('bundled') is False else 'unknown'})"
                         for d, i in x["datasets"].items())
        lines.append(f"- {e(name)}: config hash {code(x['config_hash'])}; seeds "
                     f"{', '.join(str(s) for s in x['seeds'])}; data sets: {sets}"
                     + "".join(f"; {e(k)}: {e(v)}" for k, v in x["details"].items()))
    lines += ["", "Full details in `provenance.json`; tidy results in `results.csv`.", ""]
    return "\n".join(lines)


def render_report(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``index.html`` into ``out_dir`` (atomically); return their paths."""
    data = load_report_data(out_dir)
    out = Path(out_dir)
    md = atomic_write_text(out / "report.md", render_markdown(data))
    html = atomic_write_text(out / "index.html", render_html(data))
    return md, html
