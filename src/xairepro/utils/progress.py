"""Progress bars: tqdm inside library loops (off by default, ``show_progress=True`` to see them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], *, enabled: bool = False, total: int | None = None,
             desc: str | None = None, leave: bool = False) -> Iterator[T] | Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled``; otherwise return it unchanged."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm  # lazy: start-up time (only when a bar is shown)

    return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)
