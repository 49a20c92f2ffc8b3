"""Atomic writes: write to a temporary file in the same folder, fsync, then rename.

A crash leaves either the old file or the new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _default_mode() -> int:
    """The mode a plainly created file gets (0o666 minus the umask); mkstemp would give 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Use for writers that want a file name (``savefig``, ``to_csv``)::

        with atomic_path("out/fig.png") as tmp:
            fig.savefig(tmp, format="png")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
    """Write ``data`` (any bytes-like object, e.g. ``BytesIO.getbuffer()``) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` atomically, byte-reproducibly.

    ``torch.save`` names the records of its zip archive after the file it writes to; saving to the
    temporary file directly would put its random name into the archive, so two identical runs would
    differ in bytes.  The archive is built in memory (records named ``archive/``, as for any buffer)
    and then written atomically: the same object gives the same bytes.
    """
    import io

    import torch  # lazy: the file helpers import without torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getbuffer())


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110, tight: bool = True) -> Path:
    """Write a matplotlib figure to ``path`` atomically (format from the suffix, PNG without one)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight" if tight else None)
    return path


def check_output_folder_path(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Raise a one-line ``UsageError`` unless ``folder`` is a folder or can be created as one: neither it
    nor a parent may be an existing file.  Meant to run before any work, so that the error comes first."""
    from xairepro.errors import UsageError

    path = Path(folder)
    for part in (path, *path.parents):
        if part.exists():
            if part == path and not part.is_dir():
                raise UsageError(f"{what} {str(path)!r} exists and is not a folder")
            if not part.is_dir():
                raise UsageError(f"{what} {str(path)!r} cannot be made: {str(part)!r} exists and is not a folder")
            break
    return path
