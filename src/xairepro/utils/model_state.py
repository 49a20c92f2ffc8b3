"""Leave the caller's model as it was: train/eval flags, ``.grad`` and ``requires_grad``.

    with preserved_state(model, eval_mode=True):
        ...  # explain in eval mode; flags, grads and requires_grad restored, also after an exception
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Snapshot per-module ``training`` flags and per-parameter ``grad``/``requires_grad``; restore on exit.

    With ``eval_mode=True`` the model is put in eval mode inside the block (BatchNorm statistics and
    dropout are not touched by explanations).  Hooks are the caller's own business: register them
    with ``torch.utils.hooks.RemovableHandle`` inside a ``try/finally``.
    """
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    grads = [p.grad for p in params]
    flags = [p.requires_grad for p in params]
    try:
        if eval_mode:
            model.eval()
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
        with torch.no_grad():
            for p, g, f in zip(params, grads, flags):
                p.grad = g
                p.requires_grad_(f)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
