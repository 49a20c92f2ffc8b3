"""The tables and files a run leaves in its output folder, computed from the finished cells.

- ``results.csv``: one row per record (``RECORD_FIELDS``), in grid order (never completion order);
- ``summary.csv``: per (experiment, dataset, variant, metric) the mean, sample std (ddof=1) and count
  over seeds, beside the published value, its std, the difference (ours - published) and the source;
- ``claims.json``: per experiment the verdict of each claim and the numbers that decided it;
- ``figures.json`` and ``figures/<experiment>/``: the experiments' figures with captions.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from xairepro.config import config_hash
from xairepro.experiments.base import RECORD_FIELDS, Experiment, Figure, Reference, Results, Verdict, agreement
from xairepro.utils import atomic_path

__all__ = ["SUMMARY_FIELDS", "results_frame", "write_csv", "summarise", "evaluate_claims", "figures_key", "make_figures"]

SUMMARY_FIELDS: tuple[str, ...] = ("experiment", "dataset", "variant", "metric", "n", "mean", "std",
                                   "reference", "reference_std", "difference", "source", "note")


def results_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Tidy records as a DataFrame with the ``results.csv`` columns and dtypes."""
    frame = pd.DataFrame(list(records), columns=list(RECORD_FIELDS))
    frame["seed"] = frame["seed"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    for col in ("experiment", "dataset", "variant", "metric", "config_hash"):
        frame[col] = frame[col].astype(str)
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as CSV atomically (floats at full precision, NaN as an empty field)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")
    return Path(path)


def _stats(values: pd.Series) -> tuple[int, float, float]:
    v = values.to_numpy(dtype="float64")
    v = v[~pd.isna(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    return n, mean, std


def summarise(frame: pd.DataFrame, references: dict[str, list[Reference]]) -> pd.DataFrame:
    """Mean ± std per table cell, beside the published numbers (rows in grid order, then unmatched ones)."""
    rows: list[dict[str, Any]] = []
    experiments = list(dict.fromkeys(list(frame["experiment"]) + list(references)))
    for exp in experiments:
        refs = {(r.dataset, r.variant, r.metric): r for r in references.get(exp, [])}
        sub = frame[frame["experiment"] == exp]
        for (dataset, variant, metric), group in sub.groupby(["dataset", "variant", "metric"], sort=False):
            n, mean, std = _stats(group["value"])
            ref = refs.pop((dataset, variant, metric), None)
            rows.append(_row(exp, dataset, variant, metric, n, mean, std, ref))
        for (dataset, variant, metric), ref in refs.items():  # published, not run in this preset
            rows.append(_row(exp, dataset, variant, metric, 0, math.nan, math.nan, ref))
    return pd.DataFrame(rows, columns=list(SUMMARY_FIELDS))


def _row(exp: str, dataset: str, variant: str, metric: str, n: int, mean: float, std: float,
         ref: Reference | None) -> dict[str, Any]:
    value = math.nan if ref is None else float(ref.value)
    return {"experiment": exp, "dataset": dataset, "variant": variant, "metric": metric, "n": n,
            "mean": mean, "std": std, "reference": value,
            "reference_std": math.nan if ref is None or ref.std is None else float(ref.std),
            "difference": mean - value, "source": "" if ref is None else ref.source,
            "note": "" if ref is None else ref.note}


def evaluate_claims(experiment: Experiment, cfg: Any, results: Results, *, failed_cells: int = 0,
                    total_cells: int = 0) -> list[dict[str, Any]]:
    """Run each claim's check; a check that raises or returns no Verdict is ``inconclusive (not-run)``.

    With ``failed_cells`` > 0 the results are partial: a claim is then ``inconclusive (not-run)`` whatever
    its check says on the finished cells (the reason gives that verdict and the count of failed cells).
    Each entry carries our verdict (``status``, ``cause``), the study's own (``study``, ``study_quote``),
    ``agreement`` between them and ``kind`` (``test``, or ``sanity`` for a check that cannot fail at
    plausible values).
    """
    out = []
    for claim in experiment.claims(cfg):
        try:
            verdict = claim.check(results)
            if not isinstance(verdict, Verdict):
                verdict = Verdict.inconclusive("not-run", f"the check returned {type(verdict).__name__}, "
                                               "not a Verdict")
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            line = (str(exc).strip().splitlines() or [""])[0]
            verdict = Verdict.inconclusive("not-run", f"the check could not run: {type(exc).__name__}: {line}")
        if failed_cells and verdict.status != "inconclusive":
            reason = (f"{failed_cells} of {total_cells} cells failed; on the finished cells the claim "
                      f"{verdict.status}: {verdict.reason}")
            verdict = Verdict.inconclusive("not-run", reason, verdict.numbers)
        out.append({"id": claim.id, "text": claim.text, "source": claim.source, "status": verdict.status,
                    "cause": verdict.cause, "verdict": verdict.label, "reason": verdict.reason,
                    "study": claim.study, "study_quote": claim.study_quote,
                    "agreement": agreement(verdict.status, claim.study),
                    "kind": "sanity" if claim.sanity else "test",
                    "numbers": {str(k): float(v) for k, v in dict(verdict.numbers).items()}})
    return out


def figures_key(experiment: Experiment, cfg: Any, results: Results) -> str:
    """Hash of what an experiment's figures depend on: its version, config and results."""
    blob = results.frame.to_csv(index=False, lineterminator="\n")
    return config_hash({"experiment": experiment.name, "version": experiment.version,
                        "config": experiment.config_dict(cfg), "results": blob})


def make_figures(experiment: Experiment, cfg: Any, results: Results, out_dir: Path,
                 previous: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Call ``experiment.figures`` and keep its files in ``out_dir/figures/<experiment>``; paths relative
    to ``out_dir``.

    ``previous`` entries (the last ``figures.json``) are reused when their key matches and their files
    exist: figures are redrawn only when the results, the config or the experiment's version changed.
    The experiment draws into a fresh staging folder; each file is then moved into place with an atomic
    rename, so a run killed while drawing never leaves a half-written figure where an old one was.
    """
    key = figures_key(experiment, cfg, results)
    old = [f for f in previous if f.get("experiment") == experiment.name]
    if old and all(f.get("key") == key and f.get("path") and (out_dir / f["path"]).is_file() for f in old):
        return old
    root = out_dir.resolve()
    fig_dir = root / "figures" / experiment.name
    stage = root / "figures" / f".{experiment.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    fig_dir.mkdir(parents=True, exist_ok=True)

    def entry(path: str | None, caption: str, error: str | None) -> dict[str, Any]:
        return {"experiment": experiment.name, "path": path, "caption": caption, "error": error, "key": key}

    try:
        try:
            figures = experiment.figures(results, stage)
        except Exception as exc:  # noqa: BLE001 - a broken figure is reported in the report, not fatal
            line = (str(exc).strip().splitlines() or [""])[0]
            return [entry(None, "", f"figures failed: {type(exc).__name__}: {line}")]
        out = []
        for fig in figures:
            if not isinstance(fig, Figure):
                out.append(entry(None, "", f"figures() returned {type(fig).__name__}, not a Figure"))
                continue
            path = Path(fig.path)
            path = (path if path.is_absolute() else stage / path).resolve()
            if not path.is_file() or not path.is_relative_to(root):
                out.append(entry(None, fig.caption,
                                 f"figure file {path.name!r} is missing or outside the output folder"))
                continue
            if path.is_relative_to(stage):  # drawn now: move into place (a file drawn elsewhere stays)
                final = fig_dir / path.relative_to(stage)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, final)
                path = final
            out.append(entry(path.relative_to(root).as_posix(), fig.caption, None))
        return out
    finally:
        shutil.rmtree(stage, ignore_errors=True)
