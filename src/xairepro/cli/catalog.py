"""What ``xairepro list`` shows, kept in ``catalog.json`` so that listing imports nothing heavy.

The registries (data sets, models, training methods, augmentations, saliency methods and protocols,
experiments) live in modules that
import torch and the studies' code: reading them takes seconds.  :func:`build_catalog` reads them (the
slow way); ``python -m xairepro.cli.catalog`` writes ``catalog.json`` from it, and a test checks that the
file matches the registries (it fails, naming this command, after a registry changes).

Each section is ``{"title", "columns", "rows", "long_only"}``: ``long_only`` names the columns only
``xairepro list --long`` shows.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

__all__ = ["SECTIONS", "CATALOG_PATH", "build_catalog", "load_catalog", "write_catalog"]

SECTIONS = ("datasets", "models", "methods", "augmentations", "saliency", "experiments", "presets")
CATALOG_PATH = Path(__file__).with_name("catalog.json")

Section = dict[str, Any]


def _shape(shape: object) -> str:
    return "x".join(str(s) for s in shape) if shape else "any"


def _section(title: str, columns: list[str], rows: list[list[str]], long_only: tuple[str, ...] = ()) -> Section:
    return {"title": title, "columns": columns, "rows": rows, "long_only": list(long_only)}


def _datasets() -> Section:
    # lazy: the registries are read only to rebuild the file
    from xairepro.data import data_terms, list_datasets

    rows = []
    for d in list_datasets():
        terms = data_terms(d.name)
        rows.append([d.name, d.task, _shape(d.input_shape), str(d.num_classes or "-"),
                     "bundled" if d.bundled else "files", d.description,
                     terms.licence if terms else "not recorded", terms.citation if terms else "not recorded"])
    return _section("Data sets (xairepro train --set data.name=...)",
                    ["name", "task", "input", "classes", "source", "description", "licence", "cite"], rows,
                    ("licence", "cite"))


def _models() -> Section:
    # lazy: the registries are read only to rebuild the file
    from xairepro.models import list_models

    # a family such as wrn-D-K shows its pattern and one member (any depth and width is accepted)
    rows = [[m.name if m.name == m.example else f"{m.name} (e.g. {m.example})", m.kind, _shape(m.input_shape),
             ", ".join(m.options), m.description] for m in list_models()]
    return _section("Models (--set model.name=...)", ["name", "kind", "input", "options", "description"], rows,
                    ("options",))


def _methods() -> Section:
    # lazy: the registries are read only to rebuild the file
    from xairepro.training import list_methods

    rows = []
    for spec in list_methods():
        options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(spec.options)) if spec.options else ""
        rows.append([spec.name, " | ".join(spec.model_kinds or ("any",)), options, spec.description])
    return _section("Training methods (--set method=...)", ["method", "models", "method_options", "description"],
                    rows, ("method_options",))


def _augmentations() -> Section:
    # lazy: the registries are read only to rebuild the file
    from xairepro.train import augmentation_names

    return _section("Batched augmentations (--set train.augment=...)", ["augment"],
                    [[name] for name in augmentation_names()])


def _saliency() -> Section:
    # lazy: the registries are read only to rebuild the file
    from xairepro.explain import SALIENCY_CLASSES
    from xairepro.metrics import FAITHFULNESS_METRICS, PROTOCOL_PRESETS

    def first_line(obj: object) -> str:
        return " ".join((obj.__doc__ or "").split("\n\n")[0].split())

    rows = [[name, "method", first_line(cls)] for name, cls in SALIENCY_CLASSES.items()]
    rows += [[name, "protocol", first_line(preset)] for name, preset in PROTOCOL_PRESETS.items()]
    rows += [["insdel", "metric", "insertion / deletion / overall under --protocol"]]
    rows += [[name, "metric", text] for name, text in FAITHFULNESS_METRICS.items()]
    return _section("Saliency methods, insertion/deletion protocols and faithfulness metrics "
                    "(xairepro saliency --methods / --protocol / --metrics)",
                    ["name", "kind", "description"], rows)


def _experiments() -> Section:
    # lazy: the registries are read only to rebuild the file
    from xairepro.experiments import list_experiments

    rows = [[e.name, e.study, ", ".join(sorted(e.presets)) + ("" if e.run_by_default else " (only when named)"),
             e.reproduces or "", e.title] for e in list_experiments()]
    return _section("Experiments and presets (xairepro reproduce NAME --preset ...)",
                    ["experiment", "study", "presets", "reproduces", "title"], rows, ("reproduces",))


def _presets() -> Section:
    # lazy: the registries are read only to rebuild the file
    from xairepro.experiments import PRESET_DESCRIPTIONS, list_experiments

    experiments = list_experiments()
    names = sorted({p for e in experiments for p in e.presets})
    rows = [[name, PRESET_DESCRIPTIONS.get(name, ""), ", ".join(e.name for e in experiments if name in e.presets)]
            for name in names]
    return _section("Presets (xairepro reproduce --preset NAME)", ["preset", "description", "experiments"], rows)


_BUILDERS = {"datasets": _datasets, "models": _models, "methods": _methods, "augmentations": _augmentations,
             "saliency": _saliency, "experiments": _experiments, "presets": _presets}


def build_catalog() -> dict[str, Section]:
    """Every section, read from the live registries (imports torch and every experiment)."""
    return {name: _BUILDERS[name]() for name in SECTIONS}


def load_catalog(path: Path = CATALOG_PATH) -> dict[str, Section]:
    """The stored catalog (plain JSON: fast)."""
    return json.loads(path.read_text(encoding="utf-8"))


def _dumps(catalog: dict[str, Section]) -> str:
    """JSON with one line per row (readable diffs when a registry changes)."""
    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    sections = []
    for name, section in catalog.items():
        rows = ",\n".join(f"   {one(row)}" for row in section["rows"])
        sections.append(f' {one(name)}: {{\n  "title": {one(section["title"])},\n'
                        f'  "columns": {one(section["columns"])},\n  "long_only": {one(section["long_only"])},\n'
                        f'  "rows": [\n{rows}\n  ]\n }}')
    return "{\n" + ",\n".join(sections) + "\n}\n"


def write_catalog(path: Path = CATALOG_PATH) -> Path:
    """Rebuild ``catalog.json`` from the registries."""
    # lazy: listing reads the file without this helper
    from xairepro.utils import atomic_write_text

    return atomic_write_text(path, _dumps(build_catalog()))


if __name__ == "__main__":  # pragma: no cover - maintenance command
    print(f"wrote {write_catalog()}")
