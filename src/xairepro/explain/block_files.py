"""Matrices too large for memory, written block by block to a memory-mapped ``.npy`` file.

    out = BlockFile(path, (n_rows, n_cols), key=job_fingerprint)
    for b, cols in blocks:
        if not out.done(b):
            out.write(b, values, cols=cols)      # flushed, then recorded as done
    out.finish()                                 # renamed to ``path``: complete or absent, never half

While it is being written the matrix lives in ``<path>.partial.npy`` beside a ``<path>.progress.json``
naming the finished blocks and the ``key`` of the job.  A crashed or killed job resumes where it stopped
when it is started again with the same key and shape; another key starts afresh.  ``path`` itself only
ever appears complete (rename).  Read with ``numpy.load(path, mmap_mode="r")`` or :func:`read_rows`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from xairepro.errors import UsageError
from xairepro.utils import atomic_write_text

__all__ = ["BlockFile", "read_rows", "load_matrix"]


class BlockFile:
    """A float32 (rows, cols) matrix written in blocks; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, int], *, key: str,
                 resume: bool = True) -> None:
        self.path = Path(path)
        if self.path.suffix != ".npy":
            raise UsageError(f"score and gradient files are .npy files; got {str(self.path)!r}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.key = str(key)
        self.partial = self.path.with_name(self.path.stem + ".partial.npy")
        self.progress = self.path.with_name(self.path.stem + ".progress.json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done: set[int] = set()
        state = self._read_progress() if resume else None
        if state is not None and self.partial.is_file():
            self.array = np.lib.format.open_memmap(self.partial, mode="r+")
            if tuple(self.array.shape) == self.shape and self.array.dtype == np.float32:
                self._done = {int(b) for b in state["done"]}
                return
            del self.array
        self.progress.unlink(missing_ok=True)
        self.array = np.lib.format.open_memmap(self.partial, mode="w+", dtype=np.float32, shape=self.shape)
        self._save_progress()

    def _read_progress(self) -> dict | None:
        try:
            state = json.loads(self.progress.read_text())
        except (OSError, ValueError):
            return None
        if state.get("key") != self.key or list(state.get("shape", [])) != list(self.shape):
            return None
        return state

    def _save_progress(self) -> None:
        atomic_write_text(self.progress, json.dumps({"key": self.key, "shape": list(self.shape),
                                                     "done": sorted(self._done)}) + "\n")

    @property
    def n_done(self) -> int:
        return len(self._done)

    def done(self, block: int) -> bool:
        return int(block) in self._done

    def write(self, block: int, values: Tensor, *, rows: slice = slice(None), cols: slice = slice(None),
              accumulate: bool = False) -> None:
        """Store ``values`` at [rows, cols] (added to what is there with ``accumulate``), flush, mark done."""
        data = values.detach().to("cpu", torch.float32).numpy()
        if accumulate:
            self.array[rows, cols] += data
        else:
            self.array[rows, cols] = data
        self.array.flush()
        self._done.add(int(block))
        self._save_progress()

    def read(self, rows: slice = slice(None), cols: slice = slice(None)) -> Tensor:
        return torch.from_numpy(np.array(self.array[rows, cols]))

    def finish(self) -> Path:
        """Flush, fsync and rename the finished matrix to ``path``; returns ``path``."""
        self.array.flush()
        del self.array
        with open(self.partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.partial, self.path)
        self.progress.unlink(missing_ok=True)
        return self.path


def read_rows(path: str | os.PathLike[str], start: int, stop: int) -> Tensor:
    """Rows [start, stop) of a finished ``.npy`` matrix as a float32 tensor (only those rows are read)."""
    array = np.load(path, mmap_mode="r")
    return torch.from_numpy(np.array(array[start:stop], dtype=np.float32))


def load_matrix(path: str | os.PathLike[str]) -> Tensor:
    """A whole finished ``.npy`` matrix as a tensor (it must fit in memory)."""
    return torch.from_numpy(np.array(np.load(path, mmap_mode="r"), dtype=np.float32))
