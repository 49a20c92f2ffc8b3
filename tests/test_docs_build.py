"""The documentation site builds offline in strict mode, renders every public name, and a docstring
mkdocstrings cannot render fails the build (slow: about 20 s)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1"})


def test_site_builds_strict_with_every_public_name(tmp_path: Path) -> None:
    done = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    for short in ("data", "models", "train", "lico", "explain", "metrics", "experiments", "runner"):
        html = (tmp_path / "site" / "reference" / f"{short}.html").read_text(encoding="utf-8")
        for name in importlib.import_module(f"xairepro.{short}").__all__:
            assert f'.{name}"' in html, f"{short}.{name} not rendered"
    assert (tmp_path / "site" / "gallery" / "01_gradcam_insertion_deletion.png").is_file()


@pytest.mark.parametrize("param, fails", [("x", False), ("y", True)])
def test_a_broken_docstring_fails_the_build(tmp_path: Path, param: str, fails: bool) -> None:
    """Same handler options as the site; a docstring naming a parameter the function lacks is an error."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)  # !!python/name tags, if any
    site = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    options = site["plugins"][1]["mkdocstrings"]["handlers"]["python"]["options"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "mod.py").write_text(f'def f(x):\n    """Add one.\n\n    :param {param}: a number\n    """\n    return x + 1\n')
    (tmp_path / "docs" / "index.md").write_text("# t\n\n::: mod.f\n")
    config = {"site_name": "t", "docs_dir": "docs", "plugins": [{"mkdocstrings": {"handlers": {"python": {
        "paths": [str(tmp_path)], "options": options}}}}]}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert (done.returncode != 0) == fails, done.stderr[-2000:]
    if fails:
        assert "does not appear in the function signature" in done.stderr
