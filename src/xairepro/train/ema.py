"""Exponential moving average of a model's floating-point state (parameters and float buffers).

    s_0 = theta_0,    s_t = d * s_{t-1} + (1 - d) * theta_t     (after optimiser step t)

Integer buffers (BatchNorm's ``num_batches_tracked``) are copied.  ``applied(model)`` swaps the
averaged values in for evaluation and restores the live weights afterwards, also after an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """EMA of ``module.state_dict()`` with decay ``decay`` in (0, 1)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        live = module.state_dict(keep_vars=True)
        self.names = list(live)
        self._live = [t.detach() if isinstance(t, torch.Tensor) else t for t in live.values()]
        self.shadow = [t.detach().clone() for t in self._live]
        self._float = [i for i, t in enumerate(self._live) if t.is_floating_point()]
        self._other = [i for i, t in enumerate(self._live) if not t.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the recursion on every float tensor; copy the others."""
        if self._float:
            shadow = [self.shadow[i] for i in self._float]
            live = [self._live[i] for i in self._float]
            torch._foreach_mul_(shadow, self.decay)
            torch._foreach_add_(shadow, live, alpha=1.0 - self.decay)
        for i in self._other:
            self.shadow[i].copy_(self._live[i])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged values by state-dict key (a copy)."""
        return {name: t.clone() for name, t in zip(self.names, self.shadow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {missing[0]!r}")
        with torch.no_grad():
            for name, t in zip(self.names, self.shadow):
                t.copy_(state[name])

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the module holds the averaged values; its own values come back afterwards."""
        backup = [t.clone() for t in self._live]
        try:
            with torch.no_grad():
                for live, avg in zip(self._live, self.shadow):
                    live.copy_(avg)
            yield
        finally:
            with torch.no_grad():
                for live, old in zip(self._live, backup):
                    live.copy_(old)

    @torch.no_grad()
    def copy_to(self) -> None:
        """Write the averaged values into the module for good."""
        for live, avg in zip(self._live, self.shadow):
            live.copy_(avg)
