"""How many rows an attribution may push through a model at once, from a memory budget.

Methods that integrate or sample (Integrated Gradients: ``n_steps`` rows per example; GradientShap:
``n_samples``) expand a batch of B examples to B x steps rows; at the label-free study's settings
(IG 50 steps, 500 ECG5000 series, LSTM autoencoder) that is 25,000 rows of 140 time steps, about
27 GB of autograd memory at once.  Attributions therefore run in passes of at most
``rows = budget / (SAFETY x bytes_per_row)`` rows, where ``bytes_per_row`` is measured on the model
itself: the bytes of the tensors autograd saves for a forward pass of 6 rows minus those of 2 rows,
divided by 4 (the weights, saved once, cancel).  Measured peaks (docs/benchmarks.md) stay at
0.3 to 1.0 x ``SAFETY x saved bytes`` per row for the LSTM and convolutional autoencoders.

``budget``: ``memory_budget=`` where the caller gives one, else a quarter of the memory available
now (free GPU memory on CUDA, ``MemAvailable`` on the CPU), at most :data:`BUDGET_CAP`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
from torch import Tensor

from xairepro.errors import UsageError

__all__ = ["BUDGET_CAP", "SAFETY", "available_memory", "default_budget", "bytes_per_row", "rows_within"]

#: The most a default budget allows (bytes), however much memory is free.
BUDGET_CAP = 2 * 2**30
#: Peak memory of a forward + backward pass per row, as a multiple of the bytes autograd saves per row.
SAFETY = 2.0
#: Rows of the two probe passes whose difference gives the bytes per row.
PROBE_ROWS = (2, 6)


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes free for new tensors on ``device`` now: CUDA's free memory, else the system's ``MemAvailable``
    (``None`` where neither can be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def default_budget(device: torch.device | str = "cpu") -> int:
    """A quarter of :func:`available_memory`, at most :data:`BUDGET_CAP` (the cap where it cannot be read)."""
    free = available_memory(device)
    return BUDGET_CAP if free is None else max(1, min(BUDGET_CAP, free // 4))


def _saved_bytes(forward: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """Bytes of the distinct storages autograd saves while ``forward(x)`` runs with gradients on."""
    sizes: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        sizes[storage.data_ptr()] = max(sizes.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    x = x.detach().requires_grad_(x.is_floating_point())
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward(x)
    return sum(sizes.values())


def bytes_per_row(forward: Callable[[Tensor], Tensor], x: Tensor) -> float:
    """Autograd bytes one more row of ``x`` costs in ``forward`` (rows of ``x`` are repeated for the probe)."""
    small, large = PROBE_ROWS

    def rows(n: int) -> Tensor:  # its own storage: a slice of a larger batch would count the whole batch
        return x[:1].expand(n, *x.shape[1:]).clone()

    return max(0.0, (_saved_bytes(forward, rows(large)) - _saved_bytes(forward, rows(small))) / (large - small))


def rows_within(budget: int, per_row: float) -> int:
    """Rows per pass that keep ``SAFETY x per_row x rows`` within ``budget`` (at least 1; unbounded when a row
    saves nothing, e.g. a model without gradients)."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UsageError(f"memory_budget must be a positive number of bytes, got {budget!r}")
    if per_row <= 0:
        return 2**62
    return max(1, math.floor(budget / (SAFETY * per_row)))
