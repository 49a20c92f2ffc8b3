"""A rich progress display over cells: done / cached / failed counts and an ETA over computed cells, and
below it the running cell(s) with their own progress (training batches of each epoch, images explained):
one line for an in-process run, one per worker process when the local executor runs cells in parallel."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from xairepro.runner.store import CellOutcome
from xairepro.utils.progress import progress_listener

__all__ = ["CellProgress"]


class CellProgress:
    """Context manager: ``advance(outcome)`` after each computed cell; failures printed as they happen.

    The bar counts the cells to compute (cached ones are shown apart so they do not skew the ETA).  While
    it is open it listens to :func:`xairepro.utils.report_task` / ``report_progress`` of this process
    (cells run in-process by the local executor, or reports relayed from its worker processes): a line per
    running cell names it and shows how far its current step is.
    """

    def __init__(self, to_compute: int, cached: int, *, enabled: bool = True,
                 console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.done = 0
        self.cached = cached
        self.failed = 0
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task("cells", total=to_compute, info=self._counts())
        self._cells: dict[int | None, int] = {}   # worker (None: this process) -> its line
        self._listening = progress_listener(self)

    def _counts(self) -> str:
        return f"done {self.done} · cached {self.cached} · failed {self.failed}"

    def __enter__(self) -> CellProgress:
        self._progress.start()
        self._listening.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._listening.__exit__(exc_type, exc, tb)
        for line in self._cells.values():
            self._progress.update(line, visible=False)
        self._progress.stop()

    def _line(self, worker: int | None) -> int:
        if worker not in self._cells:
            self._cells[worker] = self._progress.add_task("", total=None, info="", visible=False)
        return self._cells[worker]

    def task(self, label: str, *, worker: int | None = None) -> None:
        """A cell starts: name it on its line (its progress comes with ``step``)."""
        self._progress.reset(self._line(worker), total=None, description=f"  {escape(label)}", info="starting",
                             visible=True)

    def step(self, what: str, done: int, total: int, *, worker: int | None = None) -> None:
        self._progress.update(self._line(worker), completed=done, total=total, info=escape(what))

    def idle(self, worker: int) -> None:
        """Worker ``worker`` finished its cell: hide its line until it starts the next."""
        self._progress.update(self._line(worker), visible=False)

    def advance(self, outcome: CellOutcome) -> None:
        if outcome.ok:
            self.done += 1
        else:
            self.failed += 1
            if self.enabled:
                self._progress.console.print(f"[red]failed[/red] {escape(outcome.label)}: {escape(outcome.error or '')}")
        self._progress.update(self._task, advance=1, info=self._counts())
        if None in self._cells:
            self._progress.update(self._cells[None], visible=False)
