"""One run at a time per output folder: an exclusive ``flock`` on ``<out>/.xairepro.lock``.

    with folder_lock(out):      # a second ``reproduce`` into ``out`` is refused at once, naming our PID
        ...write the run...

The lock is the kernel's (``flock``): it goes away with the process that held it, so a killed run never
leaves the folder locked; the small lock file stays (removing it would let two processes lock two
different files of the same name).  Where ``fcntl`` is missing (not POSIX) the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from xairepro.errors import UsageError

__all__ = ["LOCK_NAME", "folder_lock"]

LOCK_NAME = ".xairepro.lock"


def _holder(fd: int) -> str:
    """The PID the holder wrote into the lock file ("unknown" if it has not written it yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block; ``UsageError`` at once when another process holds it."""
    path = Path(folder) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield path
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"output folder {str(folder)!r} is in use by another xairepro run (PID "
                             f"{_holder(fd)}); wait for it to finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
