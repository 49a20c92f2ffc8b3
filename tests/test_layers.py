"""The import graph follows the layers of docs/design.md: nothing imports upward, no two modules import each other.

Every ``import`` of every module under ``src/xairepro`` is read with ``ast`` (module level, inside functions,
under ``TYPE_CHECKING``), and so are the names imported by string (a literal ``"xairepro.a.b"`` or
``"xairepro.a.b:Name"``, as lazy exports and registries write them).  Each module belongs to the layer of
its longest listed prefix in the "Layers" block of docs/design.md; it may import its own layer and lower
ranks only (layers of equal rank, such as explain and metrics, do not import each other).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DESIGN = ROOT / "docs" / "design.md"


def read_layers(text: str) -> dict[str, tuple[int, str]]:
    """{module prefix: (rank, layer name)} from the first fenced block after the "## Layers" heading.

    Block lines read ``RANK  NAME: prefix, prefix, ...``.
    """
    section = text.split("\n## Layers", 1)[1]
    block = section.split("```", 2)[1]
    out: dict[str, tuple[int, str]] = {}
    for line in block.splitlines():
        m = re.match(r"^\s*(\d+)\s+([\w-]+):\s*(.+)$", line)
        if m:
            for prefix in m.group(3).split(","):
                out[prefix.strip()] = (int(m.group(1)), m.group(2))
    return out


def module_names(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for path in sorted((src / "xairepro").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: set[str]) -> set[tuple[str, int]]:
    """(imported module, line) of every import of ``xairepro`` in the file, resolved to a module that exists."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, int]] = set()

    def add(target: str, line: int) -> None:
        while target and target not in modules:   # a name imported from a module: the module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add((target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "xairepro":
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] == "xairepro":
                for alias in node.names:
                    add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            target = node.value.partition(":")[0]
            if target in modules:              # importlib.import_module("xairepro.x.y"), "module:Class"
                add(target, node.lineno)
    return found


def layer_of(module: str, layers: dict[str, tuple[int, str]]) -> tuple[int, str] | None:
    best = None
    for prefix, layer in layers.items():
        hit = module == prefix if prefix == "xairepro" else module == prefix or module.startswith(prefix + ".")
        if hit and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else layers[best]


def check(src: Path, layers: dict[str, tuple[int, str]]) -> list[str]:
    """Every problem of the import graph under ``src``, one line each."""
    modules = module_names(src)
    problems = [f"{m} belongs to no layer of docs/design.md" for m in modules if layer_of(m, layers) is None]
    problems += [f"layer prefix {p} names no module" for p in layers if p not in modules]
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = imports_of(name, path, set(modules))
        graph[name] = {t for t, _ in edges}
        mine = layer_of(name, layers)
        for target, line in sorted(edges):
            theirs = layer_of(target, layers)
            if mine is None or theirs is None or theirs[1] == mine[1]:
                continue
            if theirs[0] >= mine[0]:
                problems.append(f"{path.relative_to(src)}:{line}: {name} ({mine[1]}) imports {target} ({theirs[1]}): "
                                "upward or sideways across layers")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for comp in components:   # a readable cycle through the component's first module
        members, path, seen = set(comp), [comp[0]], {comp[0]}
        while True:
            nxt = sorted(w for w in graph[path[-1]] if w in members)
            back = [w for w in nxt if w == comp[0]]
            if back and len(path) > 1:
                out.append(path + [comp[0]])
                break
            step = next((w for w in nxt if w not in seen), None)
            if step is None:
                out.append(comp + [comp[0]])
                break
            path.append(step)
            seen.add(step)
    return out


def test_no_import_runs_upward_and_no_cycle() -> None:
    problems = check(SRC, read_layers(DESIGN.read_text(encoding="utf-8")))
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------- the check can fail
LAYERS_TEXT = """
## Layers

```
0  ground: xairepro, xairepro.errors
1  low: xairepro.low
2  a: xairepro.a
2  b: xairepro.b
3  top: xairepro.top
```
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src"
    for rel, text in {"xairepro/__init__.py": "", "xairepro/errors.py": "", **files}.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


BASE = {
    "xairepro/low.py": "from xairepro.errors import x\n",
    "xairepro/a/__init__.py": "",
    "xairepro/a/one.py": "from xairepro.low import y\nfrom . import two\n",
    "xairepro/a/two.py": "import xairepro.errors\n",
    "xairepro/b.py": "def f():\n    from xairepro.low import y\n",
    "xairepro/top.py": "from xairepro.a.one import z\nfrom xairepro import b\n",
}


@pytest.mark.parametrize("planted, needle", [
    ({"xairepro/low.py": "def f():\n    from xairepro.top import t\n"}, "xairepro.low (low) imports xairepro.top (top)"),
    ({"xairepro/b.py": "from xairepro.a import one\n"}, "xairepro.b (b) imports xairepro.a.one (a)"),
    ({"xairepro/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import xairepro.a.two\n"},
     "xairepro.b (b) imports xairepro.a.two (a)"),
    ({"xairepro/low.py": "EXPORTS = {'T': 'xairepro.top:T'}\n"}, "xairepro.low (low) imports xairepro.top (top)"),
    ({"xairepro/a/two.py": "def g():\n    from xairepro.a.one import z\n"}, "import cycle: xairepro.a.one -> "
                                                                              "xairepro.a.two -> xairepro.a.one"),
    ({"xairepro/stray.py": ""}, "xairepro.stray belongs to no layer"),
])
def test_a_planted_upward_import_or_cycle_is_caught(tmp_path: Path, planted: dict[str, str], needle: str) -> None:
    layers = read_layers(LAYERS_TEXT)
    assert check(_tree(tmp_path, BASE), layers) == []
    problems = check(_tree(tmp_path, {**BASE, **planted}), layers)
    assert any(needle in p for p in problems), problems


def test_the_design_page_lists_every_layer_in_rank_order() -> None:
    layers = read_layers(DESIGN.read_text(encoding="utf-8"))
    ranks = {name: rank for rank, name in layers.values()}
    assert ranks["ground"] == 0 and ranks["cli"] == max(ranks.values())
    assert ranks["explain"] == ranks["lico"] == ranks["metrics"] < ranks["experiments"] < ranks["runner"] < ranks["report"]
