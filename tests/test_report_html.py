"""The Markdown/HTML report: tables beside the published numbers, claims, figures, provenance;
one self-contained page; every string from configs or data escaped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from test_runner_experiment import ToyExperiment, toy  # noqa: F401 - `toy` is a fixture
from xairepro.errors import UsageError
from xairepro.experiments import (
    Cell, Claim, Context, Experiment, Figure, MetricSpec, Record, Reference, Results, TableSpec, Verdict,
    register_experiment, unregister_experiment,
)
from xairepro.report import load_report_data, md_code, md_escape, render_report
from xairepro.report.data import fmt, fmt_diff, fmt_pm
from xairepro.runner import reproduce

EVIL = '<script>alert("x")</script>"><img src=x onerror=alert(1)>&amp;|*_'


@dataclass
class EvilConfig:
    tag: str = EVIL
    variants: list[str] = field(default_factory=lambda: [EVIL, "plain"])


def _evil_claim(results: Results) -> Verdict:
    return Verdict("holds", f"because {EVIL}", {EVIL: 1.0})


class EvilExperiment(Experiment):
    """Every string a report shows comes from here and holds markup."""

    name = "evil_case"  # '_' must survive the Markdown code span it appears in
    title = f"Title {EVIL}"
    reproduces = f"Table {EVIL}"
    config_class = EvilConfig
    presets = {"quick": {}}
    metrics = {EVIL: MetricSpec(f"label {EVIL}", higher_is_better=False)}
    tables = (TableSpec(f"table {EVIL}", (EVIL,), f"src {EVIL}"),)

    def cells(self, cfg: EvilConfig) -> list[Cell]:
        return [self.cell(f"data {cfg.tag}", v, 0) for v in cfg.variants]

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        return [cell.record(EVIL, 0.25)]

    def references(self, cfg: EvilConfig) -> list[Reference]:
        return [Reference(f"data {cfg.tag}", "plain", EVIL, 0.5, None, f"ref {EVIL}", f"note {EVIL}")]

    def claims(self, cfg: EvilConfig) -> list[Claim]:
        return [Claim("c", f"claim {EVIL}", _evil_claim, f"source {EVIL}")]

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        path = out_dir / "tiny.png"
        path.write_bytes(_tiny_png())
        return [Figure(path, f"caption {EVIL}")]

    def describe(self, cfg: EvilConfig) -> dict[str, str]:
        return {"protocol": cfg.tag}


def _tiny_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x00\xff\x00\x00"  # one red pixel
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class _Tags(HTMLParser):
    """Start tags with their attributes, and the text a browser would show (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    return _parse(page).tags


@pytest.fixture
def evil() -> EvilExperiment:
    exp = register_experiment(EvilExperiment, replace=True)
    yield exp
    unregister_experiment("evil_case")


def test_html_escapes_every_string_from_configs_and_data(evil: EvilExperiment, tmp_path: Path) -> None:
    reproduce(["evil_case"], out_dir=tmp_path, show_progress=False)
    md_path, html_path = render_report(tmp_path)
    page = html_path.read_text()
    assert "<script" not in page.lower() and "<img src=x" not in page
    parsed = _parse(page)
    assert not any(t == "script" for t, _ in parsed.tags)
    assert not any(k.startswith("on") for _, attrs in parsed.tags for k in attrs)
    # the only img is the figure, inlined; the evil "<img src=x ...>" stayed text
    imgs = [attrs for t, attrs in parsed.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,")
    assert imgs[0]["alt"] == f"caption {EVIL}"
    # every string shows as the original text (escaped in the source, decoded by the parser)
    shown = "".join(parsed.text)
    for text in (f"Title {EVIL}", f"Table {EVIL}", f"claim {EVIL}", f"because {EVIL}", f"caption {EVIL}",
                 f"data {EVIL}", f"label {EVIL}", f"table {EVIL}", f"ref {EVIL}", f"note {EVIL}",
                 f"source {EVIL}", f"protocol: {EVIL}", EVIL + " = 1"):
        assert text in shown, text
    md = md_path.read_text()
    assert md_escape(f"claim {EVIL}") in md
    assert "&lt;" not in md and "&gt;" not in md  # Markdown escapes, not HTML entities
    # rendered by a CommonMark + GFM-tables parser, every string shows as written and no markup survives
    rendered = _parse(_markdown_to_html(md))
    assert not any(t == "script" for t, _ in rendered.tags)
    assert not any(k.startswith("on") for _, attrs in rendered.tags for k in attrs)
    assert [a["src"] for t, a in rendered.tags if t == "img"] == ["figures/evil_case/tiny.png"]
    shown = "".join(rendered.text)
    for text in (f"Title {EVIL}", f"Table {EVIL}", f"claim {EVIL}", f"because {EVIL}", f"caption {EVIL}",
                 f"data {EVIL}", f"label {EVIL}", f"table {EVIL}", f"ref {EVIL}", f"note {EVIL}",
                 f"protocol: {EVIL}", "Experiment evil_case"):
        assert text in shown, text


def _markdown_to_html(text: str) -> str:
    from markdown_it import MarkdownIt  # a dependency of rich: an independent CommonMark parser

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)


@pytest.mark.parametrize("text", [
    "a|b <i>x</i> *y* [l](u) `c` ~~d~~", "training loss 0.5 -> 0.1 & done", "> quoted", "&amp; &#60; &x",
    "back\\slash\\", "x86_64 __init__ **bold**", "<http://example.com> <!-- c -->", "![i](u) | 1 | 2",
])
def test_markdown_escape_shows_the_text_as_written(text: str) -> None:
    s = md_escape(text)
    assert "&lt;" not in s and "&gt;" not in s and "&amp;" not in s.replace("\\&amp;", "")
    assert md_escape("loss 0.5 -> 0.1") == "loss 0.5 -> 0.1"
    para = _parse(_markdown_to_html(s))
    assert not para.tags[1:] and "".join(para.text).strip() == text  # one <p>, nothing else
    cell = _parse(_markdown_to_html(f"| h |\n|---|\n| {s} |\n"))
    assert [t for t, _ in cell.tags] == ["table", "thead", "tr", "th", "tbody", "tr", "td"]
    assert "".join(cell.text).replace("\n", "") == "h" + text.strip()
    assert md_escape("two\nlines") == "two lines"


@pytest.mark.parametrize("text", ["evil_case", "a`b", "``x``", "`", " lead", "trail ", "<b>&amp;\\_"])
def test_markdown_code_span_shows_the_text_verbatim(text: str) -> None:
    para = _parse(_markdown_to_html(f"see {md_code(text)} here"))
    assert [t for t, _ in para.tags] == ["p", "code"]
    assert "".join(para.text).strip() == f"see {text} here".strip()


def test_page_is_self_contained_and_shows_ours_beside_published(toy: ToyExperiment, tmp_path: Path) -> None:
    reproduce(["toy"], out_dir=tmp_path, overrides=["offset_b=0.75"], show_progress=False)
    _, html_path = render_report(tmp_path)
    page = html_path.read_text()
    tags = _tags(page)
    refs = [v for _, attrs in tags for k, v in attrs.items() if k in ("src", "href") and v]
    assert refs and all(v.startswith("data:image/png;base64,") for v in refs)
    assert not any(t in ("link", "script", "iframe", "object", "embed") for t, _ in tags)
    csp = [a for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    # the row of (a, plus, score): ours = mean ± std over seeds, published 0.5 ± 0.1, difference
    frame = pd.read_csv(tmp_path / "results.csv")
    v = frame[(frame.dataset == "a") & (frame.variant == "plus") & (frame.metric == "score")]["value"]
    row = (f"<td>a</td><td>plus</td><td>Score ↑</td><td class=\"num\">{fmt_pm(v.mean(), v.std(ddof=1))}</td>"
           f"<td class=\"num\">2</td><td class=\"num\">0.5 ± 0.1</td><td class=\"num\">{fmt_diff(v.mean() - 0.5)}</td>")
    assert row in page
    assert "not run" in page  # the published row the quick grid does not cover
    # claim verdict with its deciding numbers
    claim = json.loads((tmp_path / "claims.json").read_text())["toy"][0]
    assert claim["status"] in ("holds", "fails")
    assert f'<span class="verdict {claim["status"]}">{claim["status"]}</span>' in page
    assert f"plus = {fmt(claim['numbers']['plus'])}" in page
    # provenance: versions and config hash
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["experiments"]["toy"]["config_hash"] in page
    assert f"torch {prov['packages']['torch']}" in page


def test_report_data_tables_follow_table_specs(toy: ToyExperiment, tmp_path: Path) -> None:
    reproduce(["toy"], out_dir=tmp_path, show_progress=False)
    data = load_report_data(tmp_path)
    (section,) = data.sections
    assert [t.title for t in section.tables] == ["Table 1", "Counts"]
    assert {r.metric for r in section.tables[0].rows} == {"Score ↑"}
    assert [(r.dataset, r.variant) for r in section.tables[1].rows] == [
        ("a", "plus"), ("a", "times"), ("b", "plus"), ("b", "times")]
    assert section.cells == {"computed": 8}


def test_rerender_is_deterministic_and_touches_no_result(toy: ToyExperiment, tmp_path: Path) -> None:
    reproduce(["toy"], out_dir=tmp_path, show_progress=False)
    _, html_path = render_report(tmp_path)
    first = html_path.read_bytes()
    results = (tmp_path / "results.csv").read_bytes()
    unregister_experiment("toy")  # re-rendering needs only the files
    render_report(tmp_path)
    assert html_path.read_bytes() == first
    assert (tmp_path / "results.csv").read_bytes() == results


def test_missing_figure_is_reported_not_fatal(toy: ToyExperiment, tmp_path: Path) -> None:
    reproduce(["toy"], out_dir=tmp_path, show_progress=False)
    (tmp_path / "figures" / "toy" / "scores.png").unlink()
    _, html_path = render_report(tmp_path)
    page = html_path.read_text()
    assert "Figure not available" in page and "<img" not in page


def test_report_of_a_folder_without_a_run_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="holds no finished xairepro run"):
        render_report(tmp_path)
