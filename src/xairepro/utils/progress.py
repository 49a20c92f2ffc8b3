"""Progress: tqdm bars inside library loops (off by default), and reports to whoever shows a run's progress.

``report_task(label)`` (a unit of work starts: a cell of ``xairepro reproduce``) and
``report_progress(what, done, total)`` (how far its current step is: training batches of an epoch,
images explained) go to the listeners installed with :func:`progress_listener`; with none installed
they cost one function call.  The runner's display listens and shows the running cell and its progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")

__all__ = ["progress", "ProgressListener", "progress_listener", "report_task", "report_progress", "report_idle"]


def progress(iterable: Iterable[T], *, enabled: bool = False, total: int | None = None,
             desc: str | None = None, leave: bool = False) -> Iterator[T] | Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled``; otherwise return it unchanged."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm  # lazy: start-up time (only when a bar is shown)

    return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)


class ProgressListener(Protocol):
    def task(self, label: str) -> None:
        """A unit of work named ``label`` starts."""

    def step(self, what: str, done: int, total: int) -> None:
        """``done`` of ``total`` parts of ``what`` (e.g. "training epoch 2/3, batches") are finished."""


_LISTENERS: list[ProgressListener] = []


@contextlib.contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[ProgressListener]:
    """Send this process's progress reports to ``listener`` inside the ``with`` block."""
    _LISTENERS.append(listener)
    try:
        yield listener
    finally:
        _LISTENERS.remove(listener)


def _send(method: str, *args: object, worker: int | None) -> None:
    # ``worker``: which worker process a relayed report comes from; only listeners that show several
    # units of work at once (they take ``worker=``) receive relayed reports.
    for listener in tuple(_LISTENERS):
        if worker is None:
            getattr(listener, method)(*args)
        elif hasattr(listener, "idle"):
            getattr(listener, method)(*args, worker=worker)


def report_task(label: str, *, worker: int | None = None) -> None:
    """Announce that the unit of work ``label`` starts (in worker process ``worker``, when relayed)."""
    _send("task", label, worker=worker)


def report_progress(what: str, done: int, total: int, *, worker: int | None = None) -> None:
    """Report that ``done`` of ``total`` parts of ``what`` are finished."""
    _send("step", what, done, total, worker=worker)


def report_idle(worker: int) -> None:
    """Worker process ``worker`` finished its unit of work (relayed reports only)."""
    for listener in tuple(_LISTENERS):
        if hasattr(listener, "idle"):
            listener.idle(worker)
