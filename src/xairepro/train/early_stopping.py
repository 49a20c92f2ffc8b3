"""Early stopping on a monitored metric.

A value improves on the best so far when it is lower by more than ``min_delta`` (mode ``min``) or
higher by more than ``min_delta`` (mode ``max``); NaN never improves.  Training stops after
``patience`` checks in a row without improvement.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Track the best value of a metric and say when to stop."""

    def __init__(self, monitor: str, patience: int = 10, mode: str = "min", min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.monitor = monitor
        self.patience = int(patience)
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_checks = 0

    def improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` seen after ``epoch``; return True when it is a new best."""
        value = float(value)
        if self.improves(value):
            self.best, self.best_epoch, self.bad_checks = value, epoch, 0
            return True
        self.bad_checks += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_checks >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_checks": self.bad_checks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_checks = int(state["bad_checks"])
