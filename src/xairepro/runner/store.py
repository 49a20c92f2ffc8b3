"""The output folder: its manifest (``run.json``) and the cache of finished cells.

Layout of an output folder::

    run.json                      which experiments and preset the folder holds (checked on every run)
    .xairepro.lock                held (flock) by the run writing the folder: one run at a time
    cells/<experiment>/<key>.json finished cell: its records, wall time (key = the cell's config hash)
    cells/<experiment>/<key>/     the cell's own working folder (``ctx.cache_dir``)
    cells/<experiment>/<key>.failed.json   the last failure of a cell (removed when it succeeds)
    models/                       trained-model cache shared by the experiments (``ModelCache``)

Every file is written atomically, so a killed run leaves finished cells intact and nothing half-written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xairepro.errors import UsageError
from xairepro.experiments.base import Cell
from xairepro.runner.lock import LOCK_NAME
from xairepro.utils import atomic_write_text, check_output_folder_path

__all__ = ["CellOutcome", "CellStore", "MANIFEST", "check_output_folder", "read_manifest", "write_json"]

MANIFEST = "run.json"


def write_json(path: Path, obj: Any, *, strict: bool = True) -> Path:
    """Write ``obj`` as indented JSON, atomically.

    ``strict``: standard JSON, NaN and infinities written as null; otherwise Python's ``NaN``/``Infinity``
    tokens keep every float exact (the cell files, read back only by xairepro).
    """
    if strict:
        text = json.dumps(_nan_to_none(obj), indent=2, default=str, allow_nan=False)
    else:
        text = json.dumps(obj, indent=2, default=str, allow_nan=True)
    return atomic_write_text(path, text + "\n")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


@dataclass
class CellOutcome:
    """What running (or loading) one cell gave: records as dicts, or an error."""

    key: str
    label: str
    records: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    started: str = ""
    error: str | None = None
    traceback: str | None = None
    status: str = "computed"  # computed | cached | failed

    @property
    def ok(self) -> bool:
        return self.error is None


class CellStore:
    """Finished cells of one output folder, keyed by ``Cell.key``."""

    def __init__(self, out_dir: Path) -> None:
        self.root = Path(out_dir) / "cells"

    def result_path(self, cell: Cell) -> Path:
        return self.root / cell.experiment / f"{cell.key}.json"

    def work_dir(self, cell: Cell) -> Path:
        return self.root / cell.experiment / cell.key

    def failure_path(self, cell: Cell) -> Path:
        return self.root / cell.experiment / f"{cell.key}.failed.json"

    def load(self, cell: Cell) -> CellOutcome | None:
        """The stored outcome of a finished cell, or None (also for an unreadable file: recompute)."""
        path = self.result_path(cell)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != cell.key or not isinstance(data.get("records"), list):
            return None
        try:
            records = [{**r, "value": float(r["value"])} for r in data["records"]]
        except (TypeError, KeyError, ValueError):
            return None
        return CellOutcome(cell.key, cell.label, records, float(data.get("wall_time_s", 0.0)),
                           str(data.get("started", "")), status="cached")

    def save(self, cell: Cell, outcome: CellOutcome) -> None:
        """Store a successful outcome (atomically) and forget an earlier failure of the cell."""
        write_json(self.result_path(cell), {
            "key": cell.key, "label": cell.label,
            "cell": {"experiment": cell.experiment, "dataset": cell.dataset, "variant": cell.variant,
                     "seed": cell.seed, "version": cell.version, "params": dict(cell.params)},
            "records": outcome.records, "wall_time_s": outcome.wall_time_s, "started": outcome.started,
        }, strict=False)
        self.failure_path(cell).unlink(missing_ok=True)

    def save_failure(self, cell: Cell, outcome: CellOutcome) -> None:
        write_json(self.failure_path(cell), {"key": cell.key, "label": cell.label, "error": outcome.error,
                                             "traceback": outcome.traceback, "started": outcome.started})

    def clean_temporaries(self) -> None:
        """Remove ``.*.tmp`` files a killed atomic write may have left behind."""
        if self.root.is_dir():
            for tmp in self.root.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The folder's ``run.json`` as a dict, None when absent; ``UsageError`` when unreadable."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable xairepro manifest ({exc})") from None
    if isinstance(data, dict) and "config_hash" in data and "config" in data:
        raise UsageError(f"{path} records an `xairepro train` run, not the results of `xairepro reproduce`")
    if not isinstance(data, dict) or not isinstance(data.get("experiments"), (list, dict)):
        raise UsageError(f"{path} is not an xairepro manifest")
    return data


def check_output_folder(out_dir: Path, experiments: Sequence[str], preset: str) -> None:
    """Refuse a folder that holds something else: another study's results, another preset, other files."""
    out_dir = check_output_folder_path(out_dir)
    if not out_dir.exists():
        return
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {str(out_dir)!r} is not writable")
    manifest = read_manifest(out_dir)
    if manifest is None:
        if any(p.name != LOCK_NAME for p in out_dir.iterdir()):
            raise UsageError(f"output folder {str(out_dir)!r} is not empty and holds no xairepro run; "
                             "choose a new or empty folder")
        return
    held = list(manifest["experiments"])
    others = [name for name in held if name not in experiments]
    if others:
        raise UsageError(f"output folder {str(out_dir)!r} holds results of {', '.join(others)}, which this "
                         "run does not include; choose another --out or name those studies too")
    if manifest.get("preset") != preset:
        raise UsageError(f"output folder {str(out_dir)!r} holds preset {manifest.get('preset')!r} results, "
                         f"not {preset!r}; choose another --out")
