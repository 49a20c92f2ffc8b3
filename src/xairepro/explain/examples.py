"""Sets of examples for example importance: a tensor of inputs, or a tuple of tensors (inputs, targets, ...).

Label-free losses see inputs only, ``loss_fn(model, x)``; supervised ones get the tuple as it was given,
``loss_fn(model, (x, y))``.  Every tensor of a tuple holds one row per example (same first dimension);
the helpers here slice, index and move such sets without caring which form they have.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from xairepro.errors import UsageError

Examples = Tensor | tuple[Tensor, ...]

__all__ = ["Examples", "check_examples", "count", "take", "to_device", "device_of", "inputs_of", "fingerprint"]


def check_examples(x: object, what: str) -> int:
    """The number of examples in ``x``; one clear error for anything that is not a usable set."""
    if isinstance(x, Tensor):
        if x.dim() < 1 or x.shape[0] == 0:
            raise UsageError(f"{what} has no examples (shape {tuple(x.shape)}); n must be >= 1")
        return int(x.shape[0])
    if isinstance(x, (tuple, list)) and x and all(isinstance(t, Tensor) for t in x):
        sizes = {int(t.shape[0]) if t.dim() else -1 for t in x}
        if len(sizes) != 1 or -1 in sizes:
            shapes = ", ".join(str(tuple(t.shape)) for t in x)
            raise UsageError(f"{what}: every tensor of (inputs, targets, ...) needs one row per example; "
                             f"got shapes {shapes}")
        n = sizes.pop()
        if n == 0:
            raise UsageError(f"{what} has no examples; n must be >= 1")
        return n
    raise UsageError(f"{what} must be a tensor of examples (N, ...) or a tuple of such tensors "
                     f"(inputs, targets), got {type(x).__name__}")


def count(x: Examples) -> int:
    return int(x.shape[0]) if isinstance(x, Tensor) else int(x[0].shape[0])


def take(x: Examples, index: slice | Tensor) -> Examples:
    """Rows ``index`` (a slice or an index tensor) of every tensor of ``x``."""
    if isinstance(x, Tensor):
        return x[index if isinstance(index, slice) else index.to(x.device)]
    return tuple(t[index if isinstance(index, slice) else index.to(t.device)] for t in x)


def to_device(x: Examples, device: torch.device | str) -> Examples:
    if isinstance(x, Tensor):
        return x.to(device)
    return tuple(t.to(device) for t in x)


def device_of(x: Examples) -> torch.device:
    """The device of the inputs (the first tensor of a tuple)."""
    return inputs_of(x).device


def inputs_of(x: Examples) -> Tensor:
    """The inputs (the first tensor of a tuple): what an encoder sees."""
    return x[0] if isinstance(x, (tuple, list)) and x else x


def fingerprint(*items: Examples | Tensor) -> str:
    """SHA-256 (hex, 16 characters) of the shapes, dtypes and bytes of tensors or example sets."""
    digest = hashlib.sha256()
    for item in items:
        for t in ((item,) if isinstance(item, Tensor) else item):
            t = t.detach().cpu().contiguous()
            digest.update(repr((tuple(t.shape), str(t.dtype))).encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]
