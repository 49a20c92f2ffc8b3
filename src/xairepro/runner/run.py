"""``reproduce``: expand experiments into cells, compute the missing ones, write the run's tables.

Every input is checked before anything is written (unknown study or preset, bad ``--set``, an output
folder holding something else, an unreadable data dir: ``UsageError``).  Finished cells are cached by
their config hash (``Cell.key``) and never recomputed unless ``force``; a killed run resumes from the
cells already on disk.  The Markdown/HTML report is rendered from the files written here by
:func:`xairepro.report.render_report` (the layer above).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from xairepro.config import config_has_key, parse_overrides
from xairepro.errors import ConfigError, UsageError
from xairepro.experiments.base import Cell, Experiment, Results
from xairepro.experiments.registry import list_experiments, select_experiments
from xairepro.experiments.verdict_rules import RULE as VERDICT_RULE
from xairepro.runner.executors import Job, LocalExecutor, RayExecutor, make_executor
from xairepro.runner.outputs import evaluate_claims, make_figures, results_frame, summarise, write_csv
from xairepro.runner.lock import folder_lock
from xairepro.runner.progress import CellProgress
from xairepro.runner.provenance import build_provenance
from xairepro.runner.store import MANIFEST, CellOutcome, CellStore, check_output_folder, write_json

__all__ = ["RunSummary", "reproduce", "auto_workers", "split_overrides", "check_data_dir"]


@dataclass
class RunSummary:
    """How a run went: counts of cells and the failures (with their errors)."""

    out_dir: Path
    total: int
    computed: int
    cached: int
    failures: list[CellOutcome] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def ok(self) -> bool:
        return not self.failures


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def split_overrides(overrides: Sequence[str], experiments: Sequence[Experiment]) -> dict[str, list[str]]:
    """Route ``--set`` items: ``EXP.key=v`` goes to experiment EXP only, ``key=v`` to every experiment whose
    config has ``key`` (``--set cpus=2`` skips one without a ``cpus``); a key no experiment has is an error."""
    parse_overrides(overrides)
    selected = {e.name for e in experiments}
    known = {e.name for e in list_experiments()}
    routed: dict[str, list[str]] = {e.name: [] for e in experiments}
    for item in overrides:
        key = item.partition("=")[0].strip()
        head = key.split(".")[0]
        if head in selected and "." in key:
            routed[head].append(item[len(head) + 1:])
        elif head in known and head not in selected:
            raise ConfigError(f"--set {item}: experiment {head!r} is not part of this run")
        else:
            having = [e.name for e in experiments if config_has_key(e.config_class, key)]
            if not having:
                names = ", ".join(e.name for e in experiments)
                raise ConfigError(f"--set {item}: no experiment of this run has a setting {key!r} ({names})")
            for name in having:
                routed[name].append(item)
    return routed


def check_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The data dir as a Path; ``UsageError`` unless it is a readable folder."""
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise UsageError(f"data dir {str(path)!r} does not exist or is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"data dir {str(path)!r} is not readable")
    try:
        next(iter(path.iterdir()), None)
    except OSError as exc:
        raise UsageError(f"data dir {str(path)!r} is not readable ({exc.strerror})") from None
    return path.resolve()


def _read_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _plan(experiments: Sequence[Experiment], preset: str,
          overrides: Sequence[str]) -> tuple[dict[str, Any], dict[str, list[Cell]]]:
    routed = split_overrides(overrides, experiments)
    configs: dict[str, Any] = {}
    cells: dict[str, list[Cell]] = {}
    for exp in experiments:
        try:
            configs[exp.name] = exp.make_config(preset, routed[exp.name])
        except ConfigError as exc:
            raise ConfigError(f"experiment {exp.name!r}: {exc}") from None
        grid = list(exp.cells(configs[exp.name]))
        if not grid:
            raise UsageError(f"experiment {exp.name!r} has no cells with this configuration")
        seen: set[str] = set()
        for cell in grid:
            if not isinstance(cell, Cell) or cell.experiment != exp.name:
                raise TypeError(f"experiment {exp.name!r}: cells() must return Cells of this experiment")
            if isinstance(cell.seed, bool) or not isinstance(cell.seed, int) or cell.seed < 0:
                raise ConfigError(f"experiment {exp.name!r}: seeds must be non-negative integers, got "
                                  f"{cell.seed!r} ({cell.label})")
            if cell.key in seen:
                raise ValueError(f"experiment {exp.name!r}: two cells have the same config ({cell.label})")
            seen.add(cell.key)
        cells[exp.name] = grid
    return configs, cells


def auto_workers(cells: Sequence[Cell]) -> int:
    """Worker processes for the local executor: as many cells at once as this machine's CPU cores hold
    (each cell takes ``num_cpus`` threads); 1 when cells want a GPU and there is one (they would share it)."""
    if not cells:
        return 1
    if any(c.num_gpus > 0 for c in cells):
        import torch  # lazy: only GPU cells need the question asked

        if torch.cuda.is_available():
            return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, max(int(c.num_cpus) for c in cells)))


def _missing_data(cells: dict[str, list[Cell]], data_path: Path | None, download: bool,
                  console: Console | None) -> tuple[dict[str, str], set[str]]:
    """The real sets the data folder lacks (name -> how to get it) and the keys of the cells needing them;
    with ``download`` nothing counts as missing (the cells fetch).  Says so on the console."""
    if download:
        return {}, set()
    from xairepro.runner.data_check import cell_data_sets, missing_data  # lazy: the data registry imports torch

    grid = [c for g in cells.values() for c in g]
    absent = missing_data(grid, data_path)
    lacking = {c.key for c in grid if any(n in absent for n in cell_data_sets(c))}
    if absent:
        where = "the default data folder" if data_path is None else str(data_path)
        (console or Console(stderr=True)).print(
            f"missing data in {where}: " + "; ".join(f"{n} ({how})" for n, how in absent.items())
            + f" -- {len(lacking)} of {len(grid)} cells not run; the others run", markup=False, highlight=False)
    return absent, lacking


def reproduce(
    studies: Sequence[str] = (),
    *,
    preset: str = "quick",
    out_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    executor: str | LocalExecutor | RayExecutor = "local",
    address: str | None = None,
    workers: int | None = 1,
    overrides: Sequence[str] = (),
    force: bool = False,
    download: bool = False,
    show_progress: bool = True,
    console: Console | None = None,
    finish: Callable[[Path], Any] | None = None,
) -> RunSummary:
    """Run (or resume) the named studies (all offering ``preset`` when none is named) into ``out_dir``.

    ``download=True`` lets experiments fetch missing real data sets (never implied; the data are the same
    either way, so it is not part of any cell's key).  Writes ``run.json``, ``cells/``, ``results.csv``, ``summary.csv``, ``claims.json``, ``figures.json``,
    ``figures/`` and ``provenance.json``.  Returns a :class:`RunSummary`; failing cells do not stop the run.
    ``workers``: cells the local executor computes at once, each in its own process (``None``: as many as
    the CPU cores hold, :func:`auto_workers`; the CLI's default).  The numbers do not depend on it.
    The folder is locked for the run (:func:`~xairepro.runner.lock.folder_lock`): a second run into it is
    refused at once.  ``finish(out_dir)`` runs before the lock is released (the CLI renders the report).
    """
    t0 = time.perf_counter()
    started = _now()
    # 1. check every input before writing anything
    experiments = select_experiments(list(studies), preset)
    configs, cells = _plan(experiments, preset, overrides)
    data_path = check_data_dir(data_dir)
    out = Path(out_dir).expanduser()
    check_output_folder(out, [e.name for e in experiments], preset)
    if isinstance(executor, str):
        if workers is None:
            workers = auto_workers([c for grid in cells.values() for c in grid]) if executor == "local" else 1
        runner = make_executor(executor, address, workers=workers)
    else:
        runner = executor
    runner.preflight()  # e.g. an unreachable Ray head: one error now, nothing written
    # 2. one run per folder: a second run into it is refused (its PID named) until this one is done
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    with folder_lock(out):
        check_output_folder(out, [e.name for e in experiments], preset)  # again: it may have changed meanwhile
        # the manifest marks the folder as this run's
        store = CellStore(out)
        store.clean_temporaries()
        write_json(out / MANIFEST, {
            "preset": preset, "experiments": [e.name for e in experiments], "overrides": list(overrides),
            "data_dir": None if data_path is None else str(data_path), "updated": started,
            "info": {e.name: {"title": e.title, "study": e.study or e.name, "reproduces": e.reproduces,
                              "metrics": {k: {"label": m.label, "higher_is_better": m.higher_is_better}
                                          for k, m in e.metrics.items()},
                              "tables": [{"title": t.title, "metrics": list(t.metrics), "source": t.source}
                                         for t in e.tables]}
                     for e in experiments},
        })
        # 3. cached cells are loaded, the others computed
        by_name = {e.name: e for e in experiments}
        outcomes: dict[str, CellOutcome] = {}
        jobs: list[Job] = []
        # cells whose real data the folder lacks are not run; the sets are named (data_check)
        absent, lacking = _missing_data(cells, data_path, download, console)
        for name, grid in cells.items():
            for cell in grid:
                cached = None if force else store.load(cell)
                if cached is not None:
                    outcomes[cell.key] = cached
                elif cell.key in lacking:
                    continue
                else:
                    jobs.append(Job(by_name[name], cell, store.work_dir(cell), data_path, out / "models",
                                    download))
        cell_of = {job.cell.key: job.cell for job in jobs}
        n_cached = len(outcomes)
        failures: list[CellOutcome] = []
        with CellProgress(len(jobs), n_cached, enabled=show_progress, console=console) as bar:
            for outcome in runner.run(jobs):
                cell = cell_of[outcome.key]
                if outcome.ok:
                    store.save(cell, outcome)
                else:
                    store.save_failure(cell, outcome)
                    failures.append(outcome)
                outcomes[outcome.key] = outcome
                bar.advance(outcome)
        order = {job.cell.key: i for i, job in enumerate(jobs)}
        failures.sort(key=lambda f: order[f.key])  # grid order, whichever worker finished first
        # 4. the run's tables, claims, figures, provenance
        finished = [r for grid in cells.values() for c in grid
                    if c.key in outcomes and outcomes[c.key].ok for r in outcomes[c.key].records]
        frame = results_frame(finished)
        write_csv(frame, out / "results.csv")
        references = {e.name: list(e.references(configs[e.name])) for e in experiments}
        write_csv(summarise(frame, references), out / "summary.csv")
        claims: dict[str, Any] = {}
        figures: list[dict[str, Any]] = []
        previous = _read_list(out / "figures.json")
        for exp in experiments:
            results = Results(frame[frame["experiment"] == exp.name].reset_index(drop=True))
            failed = sum(1 for c in cells[exp.name] if c.key not in outcomes or not outcomes[c.key].ok)
            claims[exp.name] = evaluate_claims(exp, configs[exp.name], results, failed_cells=failed,
                                               total_cells=len(cells[exp.name]))
            if len(results):
                figures.extend(make_figures(exp, configs[exp.name], results, out, previous))
        write_json(out / "claims.json", claims)
        write_json(out / "figures.json", figures)
        wall = time.perf_counter() - t0
        run_info = {"preset": preset, "executor": runner.name, "address": address,
                    "workers": getattr(runner, "workers", None), "force": force,
                    "download": download,
                    "overrides": list(overrides), "data_dir": None if data_path is None else str(data_path),
                    "started": started, "finished": _now(), "wall_time_s": round(wall, 3),
                    "cells_wall_time_s": round(sum(o.wall_time_s for o in outcomes.values()), 3),
                    "cells": {"total": sum(len(g) for g in cells.values()), "computed": len(jobs) - len(failures),
                              "cached": n_cached, "failed": len(failures),
                              "missing_data": sum(1 for k in lacking if k not in outcomes)},
                    "missing_data": absent, "verdict_rule": VERDICT_RULE}
        write_json(out / "provenance.json", build_provenance(
            experiments=experiments, configs=configs, cells=cells, outcomes=outcomes, run=run_info,
            data_dir=data_path))
        summary = RunSummary(out, sum(len(g) for g in cells.values()), len(jobs) - len(failures), n_cached,
                             failures, time.perf_counter() - t0)
        if finish is not None:
            finish(out)
    return summary
