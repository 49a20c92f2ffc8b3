"""The documentation's generated pages: every public name is in the API reference, and the committed pages
(API and CLI reference, gallery) are what ``tools/gen_docs.py`` writes from the code today."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "models", "train", "lico", "explain", "metrics", "experiments", "runner")


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _listed(short: str) -> list[str]:
    """The dotted paths of the ``::: path`` blocks of ``docs/reference/<short>.md``."""
    text = (ROOT / "docs" / "reference" / f"{short}.md").read_text(encoding="utf-8")
    return re.findall(r"^::: (\S+)\s*$", text, flags=re.M)


@pytest.mark.parametrize("short", PACKAGES)
def test_every_public_name_is_in_the_reference(short: str) -> None:
    public = set(importlib.import_module(f"xairepro.{short}").__all__)
    listed = [path.rsplit(".", 1)[1] for path in _listed(short)]
    missing = sorted(public - set(listed))
    assert not missing, f"docs/reference/{short}.md lacks {missing}: run python tools/gen_docs.py"
    assert sorted(listed) == sorted(set(listed)), "a name is documented twice"
    assert set(listed) <= public, f"documented but not public: {sorted(set(listed) - public)}"


@pytest.mark.parametrize("short", PACKAGES)
def test_each_reference_block_points_at_the_public_object(short: str) -> None:
    """mkdocstrings reads each block's source at its path: it must be the very object the package exports."""
    package = importlib.import_module(f"xairepro.{short}")
    for path in _listed(short):
        module, name = path.rsplit(".", 1)
        assert getattr(importlib.import_module(module), name) is getattr(package, name), path


def test_generated_pages_are_up_to_date() -> None:
    gen = _gen_docs()
    stale = [str(p.relative_to(ROOT)) for p, text in gen.pages().items()
             if not p.is_file() or p.read_text(encoding="utf-8") != text]
    assert not stale, f"out of date: {stale}; run python tools/gen_docs.py"


def test_cli_reference_lists_every_command_and_option() -> None:
    from typer.main import get_command

    from xairepro.cli import app
    from xairepro.cli.app import _register_commands

    _register_commands()
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    root = get_command(app)
    for name, command in root.commands.items():
        assert f"## `xairepro {name}`" in page, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("-"):
                    assert f"{opt}" in page, f"xairepro {name} {opt}"


def test_site_navigation_holds_every_page_and_each_example_has_its_figure() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for short in PACKAGES:
        assert f"reference/{short}.md" in config, short
    for page in ("design.md", "decisions.md", "benchmarks.md", "cli.md", "gallery.md", "methods.md"):
        assert page in config, page
    scripts = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))
    assert len(scripts) == 7
    missing = [s.stem for s in scripts if not (ROOT / "docs" / "gallery" / f"{s.stem}.png").is_file()]
    assert not missing, f"no gallery figure for {missing}: run make gallery"


def test_examples_use_only_the_public_api() -> None:
    for script in (ROOT / "examples").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        private = re.findall(r"from xairepro[\w.]* import [^\n]*\b_\w+|import xairepro[\w.]*\._\w+|xairepro\.\w+\._",
                             text)
        assert not private, f"{script.name} uses private names: {private}"


def test_ray_example_without_ray_says_how_to_install_it(tmp_path: Path) -> None:
    import subprocess

    fake = tmp_path / "noray"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = {"PYTHONPATH": f"{fake}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "07_ray_run.py"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0
    assert "pip install 'xairepro[distributed]'" in done.stderr
    assert not (tmp_path / "out" / "07_ray_run.png").exists()
