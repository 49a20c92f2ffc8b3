"""index.html in headless Chromium (Debian's `chromium`; `make test` installs it when missing):
the page renders, tables and images are present, no console errors, a screenshot is written."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from test_runner_experiment import ToyExperiment, toy  # noqa: F401 - `toy` is a fixture
from xairepro.cli import main
from xairepro.report import check_page, find_chromium, render_report
from xairepro.runner import reproduce

pytestmark = pytest.mark.browser


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_chromium_is_installed() -> None:
    # A missing browser is a failing test, not a skip: `make browser` (run by `make test`) installs it.
    assert Path(find_chromium()).exists()


def test_report_renders_in_headless_chromium_without_console_errors(toy: ToyExperiment, tmp_path: Path) -> None:
    toy.failing = {"times"}  # the failed-cells section is rendered too
    reproduce(["toy"], out_dir=tmp_path, show_progress=False)
    _, html_path = render_report(tmp_path)
    shot = tmp_path / "screenshot.png"
    check = check_page(html_path, screenshot=shot, width=1200)
    assert check.console_errors == []
    assert check.title.startswith("xairepro report")
    assert check.tables >= 4 and check.rows >= 6  # claims, two result tables, claim table, provenance
    assert check.images == check.images_loaded == 1
    assert check.scripts == 0 and check.text_length > 500
    assert check.screenshot == shot
    width, height = _png_size(shot)
    assert width == 1200 and height > 900  # the whole page, longer than one viewport


def test_the_check_sees_console_errors_and_broken_images(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><title>bad</title></head><body><table><tr><td>x</td></tr>"
                    "</table><img src='missing.png'><script>console.error('deliberate failure')</script>"
                    "</body></html>")
    check = check_page(page)
    assert check.tables == 1 and check.images == 1 and check.images_loaded == 0
    assert any("deliberate failure" in e for e in check.console_errors)
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in check.console_errors)


def test_cli_report_check_browser_writes_a_screenshot(toy: ToyExperiment, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    reproduce(["toy"], out_dir=tmp_path, show_progress=False)
    assert main(["report", str(tmp_path), "--check-browser"]) == 0
    out = capsys.readouterr().out
    assert "1/1 images" in out
    assert _png_size(tmp_path / "screenshot.png")[0] == 1280
