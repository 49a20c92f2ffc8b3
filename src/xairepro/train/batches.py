"""Mini-batches for the engine: a fast path for in-memory tensors, a DataLoader for file-based sets.

Tensor-backed data (an object with ``tensors()``, a ``TensorDataset``, or a tuple ``(x, y)`` of
tensors) is moved to the device once and batches are gathered with one ``index_select`` each: no
DataLoader, no per-sample Python.  Any other ``Dataset`` goes through a ``DataLoader`` with
``num_workers`` workers.  The order of an epoch is a permutation drawn from a seed the engine
derives from (seed, epoch); under DDP each rank takes every ``world_size``-th index of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from xairepro.utils import derive_seed, make_generator

__all__ = ["BatchSource", "as_tensors"]


def as_tensors(data: Any) -> tuple[Tensor, ...] | None:
    """The full tensors ``(x, y, ...)`` of tensor-backed data, or ``None`` for other data sets."""
    if isinstance(data, TensorDataset):
        return tuple(data.tensors)
    method = getattr(data, "tensors", None)
    if callable(method):
        out = method()
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, Tensor) for t in data):
        return tuple(data)
    if isinstance(data, Tensor):
        return (data,)
    return None


class BatchSource:
    """One data set cut into mini-batches on ``device``; ``epoch(seed)`` yields tuples of tensors."""

    def __init__(self, data: Any, batch_size: int, device: torch.device | str = "cpu", *,
                 num_workers: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 what: str = "data") -> None:
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.rank, self.world_size = int(rank), int(world_size)
        self.drop_last = drop_last
        self.num_workers = int(num_workers)
        self.tensors = as_tensors(data)
        if self.tensors is not None:
            n = int(self.tensors[0].shape[0])
            if any(int(t.shape[0]) != n for t in self.tensors):
                shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
                raise ValueError(f"{what} tensors disagree on the number of examples: {shapes}")
            self.tensors = tuple(t.to(self.device) for t in self.tensors)
            self.dataset: Dataset | None = None
        else:
            if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
                raise TypeError(f"{what} must be a Dataset, a tensor-backed data set or a tuple of tensors; "
                                f"got {type(data).__name__}")
            n = len(data)
            self.dataset = data
        if n == 0:
            raise ValueError(f"{what} is empty")
        info = getattr(data, "info", None)
        if self.tensors is not None:
            self.example_shape: tuple[int, ...] | None = tuple(self.tensors[0].shape[1:])
        elif getattr(info, "input_shape", None) is not None:
            self.example_shape = tuple(info.input_shape)
        else:
            first = data[0]
            first = first[0] if isinstance(first, (tuple, list)) else first
            self.example_shape = tuple(first.shape) if isinstance(first, Tensor) else None
        self.n = n
        self.n_local = n // self.world_size if self.world_size > 1 else n
        steps = self.n_local // self.batch_size if drop_last else math.ceil(self.n_local / self.batch_size)
        if steps == 0:
            raise ValueError(f"{what} has {self.n_local} examples per process, fewer than one batch of "
                             f"{self.batch_size} with drop_last=True")
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def _order(self, seed: int | None) -> Tensor:
        if seed is None:
            return torch.arange(self.n)
        perm = torch.randperm(self.n, generator=make_generator(seed))
        if self.world_size > 1:
            perm = perm[: self.n_local * self.world_size][self.rank:: self.world_size]
        return perm

    def epoch(self, seed: int | None = None) -> Iterator[tuple[Tensor, ...]]:
        """Batches of one pass: shuffled by a permutation drawn from ``seed`` (sharded by rank), or in
        order when ``seed`` is ``None``."""
        order = self._order(seed)
        bs = self.batch_size
        if self.tensors is not None:
            order = order.to(self.device)
            for b in range(self.steps):
                idx = order[b * bs:(b + 1) * bs]
                yield tuple(t.index_select(0, idx) for t in self.tensors)
            return
        loader = DataLoader(self.dataset, batch_size=bs, sampler=order.tolist(), num_workers=self.num_workers,
                            drop_last=self.drop_last, pin_memory=self.device.type == "cuda",
                            generator=make_generator(derive_seed(seed or 0, "workers")))
        for batch in loader:
            batch = batch if isinstance(batch, (tuple, list)) else (batch,)
            yield tuple(t.to(self.device, non_blocking=True) if isinstance(t, Tensor) else t for t in batch)


def batch_size_of(batch: Sequence[Tensor]) -> int:
    return int(batch[0].shape[0])
