"""A rich progress display over cells: done / cached / failed counts and an ETA over computed cells."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from xairepro.runner.store import CellOutcome

__all__ = ["CellProgress"]


class CellProgress:
    """Context manager: ``advance(outcome)`` after each computed cell; failures printed as they happen.

    The bar counts the cells to compute (cached ones are shown apart so they do not skew the ETA).
    """

    def __init__(self, to_compute: int, cached: int, *, enabled: bool = True,
                 console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.done = 0
        self.cached = cached
        self.failed = 0
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("done {task.fields[done]} · cached {task.fields[cached]} · failed {task.fields[failed]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task("cells", total=to_compute, done=0, cached=cached, failed=0)

    def __enter__(self) -> CellProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def advance(self, outcome: CellOutcome) -> None:
        if outcome.ok:
            self.done += 1
        else:
            self.failed += 1
            if self.enabled:
                self._progress.console.print(f"[red]failed[/red] {escape(outcome.label)}: {escape(outcome.error or '')}")
        self._progress.update(self._task, advance=1, done=self.done, cached=self.cached, failed=self.failed)
