"""Where data files live, how they are found, and the error when they are not.

The data folder is ``data_dir``, else ``$XAIREPRO_DATA_DIR``, else ``~/.cache/xairepro/data``.
Each loader lists candidate folders (torchvision's layout first, then plain files in the data
folder); :func:`locate` returns the first folder that holds every required file (a ``.gz``
twin counts) or raises one :class:`DataNotFoundError` naming the files and where to get them.
"""

from __future__ import annotations

import gzip
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xairepro.errors import DataNotFoundError

__all__ = ["DATA_DIR_ENV", "data_root", "locate", "find_file", "missing_error", "open_maybe_gz", "cached", "memo",
           "clear_cache"]

DATA_DIR_ENV = "XAIREPRO_DATA_DIR"


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$XAIREPRO_DATA_DIR``, else ``~/.cache/xairepro/data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "xairepro" / "data"


def find_file(folder: Path, name: str, *, allow_gz: bool = False) -> Path | None:
    """``folder/name`` (or ``folder/name.gz`` when ``allow_gz``) if it is a file."""
    path = folder / name
    if path.is_file():
        return path
    if allow_gz and (gz := folder / f"{name}.gz").is_file():
        return gz
    return None


def locate(candidates: Sequence[Path], names: Sequence[str], *, allow_gz: bool = False) -> dict[str, Path] | None:
    """``{name: path}`` from the first candidate folder that holds all ``names``; ``None`` if none does."""
    for folder in candidates:
        found = {n: find_file(folder, n, allow_gz=allow_gz) for n in names}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def missing_error(display: str, names: Sequence[str], candidates: Sequence[Path], where: str,
                  *, downloadable: bool) -> DataNotFoundError:
    """One-line error: the files expected, the folders searched, and where to get them."""
    shown = ", ".join(str(c) for c in candidates[:4]) + (" ..." if len(candidates) > 4 else "")
    how = ("pass download=True (CLI: --download on xairepro train or reproduce) or get them from"
           if downloadable else "get them from")
    return DataNotFoundError(
        f"{display} not found: expected {', '.join(names)} in one of: {shown}; {how} {where} "
        f"(or point data_dir / --data-dir / ${DATA_DIR_ENV} at the folder that holds them)")


def open_maybe_gz(path: Path) -> Any:
    """Open a file for binary reading, decompressing it when its name ends in ``.gz``."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_SIZE = 2


def cached(key: str, paths: Sequence[Path], read: Callable[[], Any]) -> Any:
    """``read()`` once per (key, files' size and mtime); keeps the last two results (train/val/test
    of one set are then read from disk once). Callers must not mutate what they get."""
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    return memo((key, stamp), read)


def memo(key: Any, make: Callable[[], Any]) -> Any:
    """``make()`` once per hashable ``key`` (generated sets: name, options, seed); same two-entry cache."""
    full = ("memo", key)
    if full in _CACHE:
        _CACHE.move_to_end(full)
        return _CACHE[full]
    value = make()
    _CACHE[full] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def clear_cache() -> None:
    """Forget every cached file read."""
    _CACHE.clear()
