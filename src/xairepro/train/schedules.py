"""Learning-rate schedules as pure functions of a counter: no hidden state, so resume is exact.

    lr_t = eta_0 * lr_factor(cfg, t, total)

with ``t`` the step (``per="step"``) or epoch (``per="epoch"``) index from 0 and ``total`` the number
of steps or epochs of the whole run.
"""

from __future__ import annotations

import bisect
import math

from torch.optim import Optimizer

from xairepro.train.config import ScheduleConfig

__all__ = ["lr_factor", "set_lr"]


def lr_factor(cfg: ScheduleConfig, t: int, total: int) -> float:
    """Multiplier of eta_0 at counter ``t`` (0-based) of ``total``.

    warm-up (t < W): (t + 1) / W; then with u = t - W, U = max(total - W, 1):
    ``none`` 1, ``cosine`` (1 + cos(pi u / U)) / 2, ``lico-cosine`` cos(7 pi u / (16 U)),
    ``step`` gamma ** #{milestones <= t}.
    """
    if t < cfg.warmup:
        return (t + 1) / cfg.warmup
    u = t - cfg.warmup
    span = max(total - cfg.warmup, 1)
    if cfg.name == "none":
        return 1.0
    if cfg.name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * u / span))
    if cfg.name == "lico-cosine":
        return math.cos(7.0 * math.pi * u / (16.0 * span))
    if cfg.name == "step":
        return cfg.gamma ** bisect.bisect_right(list(cfg.milestones), t)
    raise ValueError(f"unknown schedule {cfg.name!r}")


def set_lr(optimizer: Optimizer, base_lrs: list[float], factor: float) -> float:
    """Set every parameter group's lr to ``base_lr * factor``; return the first group's lr."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
    return base_lrs[0] * factor
