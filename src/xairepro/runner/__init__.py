"""Reproduction runner: grid of cells, config-hash cache, resume, local and Ray executors.

    from xairepro.runner import reproduce
    summary = reproduce(["smoke"], preset="quick", out_dir="results/quick")

then ``xairepro.report.render_report(out_dir)`` writes ``report.md`` and ``index.html``.
"""

from xairepro.runner.executors import EXECUTORS, Job, LocalExecutor, RayExecutor, execute_cell, make_executor
from xairepro.runner.model_cache import ModelCache
from xairepro.runner.run import RunSummary, auto_workers, check_data_dir, reproduce, split_overrides
from xairepro.runner.store import MANIFEST, CellOutcome, CellStore, check_output_folder, read_manifest

__all__ = [
    "EXECUTORS", "Job", "LocalExecutor", "RayExecutor", "execute_cell", "make_executor", "ModelCache",
    "RunSummary", "auto_workers", "check_data_dir", "reproduce", "split_overrides", "MANIFEST", "CellOutcome", "CellStore",
    "check_output_folder", "read_manifest",
]
