"""``TrainConfig``: the one source of every training default (omegaconf structured dataclass).

    cfg = resolve_config(TrainConfig, overrides=["epochs=5", "optimizer.lr=0.1", "schedule.name=cosine"])

``validate()`` raises :class:`~xairepro.errors.ConfigError` naming the bad field and the valid values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xairepro.errors import ConfigError
from xairepro.train.augment import check_augmentation

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "SCHEDULE_UNITS", "PRECISIONS", "ACCELERATORS", "STRATEGIES", "MODES",
    "OptimizerConfig", "ScheduleConfig", "EarlyStoppingConfig", "TrainConfig",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "lico-cosine", "step")
SCHEDULE_UNITS = ("step", "epoch")
PRECISIONS = ("32-true", "bf16-mixed")
ACCELERATORS = ("auto", "cpu", "cuda")
STRATEGIES = ("auto", "ddp", "ddp_spawn")
MODES = ("min", "max")


def _choice(value: object, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


def _positive(value: float | int, key: str, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} must be {bound}; got {value!r}")


@dataclass
class OptimizerConfig:
    """Optimiser: ``sgd`` (momentum, nesterov), ``adam`` or ``adamw`` (betas); ``lr`` is eta_0."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])

    def validate(self, prefix: str = "optimizer") -> None:
        _choice(self.name, OPTIMIZERS, f"{prefix}.name")
        _positive(self.lr, f"{prefix}.lr")
        _positive(self.weight_decay, f"{prefix}.weight_decay", allow_zero=True)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"{prefix}.momentum must be in [0, 1); got {self.momentum!r}")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ConfigError(f"{prefix}.nesterov needs {prefix}.name=sgd with momentum > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{prefix}.betas must be two numbers in [0, 1); got {list(self.betas)!r}")


@dataclass
class ScheduleConfig:
    """Learning-rate factor f(t) applied to eta_0, with t counted in ``per`` units (steps or epochs).

    ``none``: 1; ``cosine``: (1 + cos(pi t / T)) / 2; ``lico-cosine``: cos(7 pi t / (16 T)) (LICO, SGD
    per step); ``step``: gamma ** (number of milestones <= t).  ``warmup`` units of linear warm-up
    (t + 1) / warmup come first; the schedule then runs over the remaining T - warmup units.
    """

    name: str = "none"
    per: str = "step"
    warmup: int = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1

    def validate(self, prefix: str = "schedule") -> None:
        _choice(self.name, SCHEDULES, f"{prefix}.name")
        _choice(self.per, SCHEDULE_UNITS, f"{prefix}.per")
        _positive(self.warmup, f"{prefix}.warmup", allow_zero=True)
        _positive(self.gamma, f"{prefix}.gamma")
        if any(m < 0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"{prefix}.milestones must be increasing non-negative integers; "
                              f"got {list(self.milestones)!r}")
        if self.name == "step" and not self.milestones:
            raise ConfigError(f"{prefix}.name=step needs {prefix}.milestones, e.g. [30, 60]")


@dataclass
class EarlyStoppingConfig:
    """Stop when ``monitor`` (e.g. ``val/loss``) has not improved by ``min_delta`` for ``patience`` checks.

    ``monitor=None`` switches early stopping off.  ``restore_best`` leaves the best weights in the model.
    """

    monitor: str | None = None
    patience: int = 10
    mode: str = "min"
    min_delta: float = 0.0
    restore_best: bool = True

    def validate(self, prefix: str = "early_stopping") -> None:
        _choice(self.mode, MODES, f"{prefix}.mode")
        _positive(self.patience, f"{prefix}.patience")
        _positive(self.min_delta, f"{prefix}.min_delta", allow_zero=True)
        if self.monitor is not None and not self.monitor.strip():
            raise ConfigError(f"{prefix}.monitor must name a metric such as 'val/loss', or be null")


@dataclass
class TrainConfig:
    """Everything the engine needs besides the model, objective and data.

    ``checkpoint_every``: keep ``checkpoints/epoch_XXXX.pt`` every k epochs (0: none).  ``ema``: decay of
    the weights' exponential moving average used for evaluation (``None``: off).  ``augment``: name of a
    batched augmentation applied to training batches (``none``: off).  ``val_every``: validate every k
    epochs.  ``grad_clip``: max global gradient norm (``None``: off).
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    ema: float | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint_every: int = 0
    seed: int = 0
    augment: str = "none"
    grad_clip: float | None = None
    num_workers: int = 0
    progress: bool = False
    val_every: int = 1
    drop_last: bool = False

    def validate(self, prefix: str = "") -> TrainConfig:
        """Raise :class:`ConfigError` for the first invalid value; return ``self`` when all are valid.

        ``prefix`` names this section in messages (``"train."`` inside a run config).
        """
        p = prefix
        for key in ("epochs", "batch_size", "devices", "val_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{p}{key} must be a positive integer; got {value!r}")
        for key in ("checkpoint_every", "num_workers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{p}{key} must be an integer >= 0; got {value!r}")
        self.optimizer.validate(f"{p}optimizer")
        self.schedule.validate(f"{p}schedule")
        self.early_stopping.validate(f"{p}early_stopping")
        _choice(self.precision, PRECISIONS, f"{p}precision")
        _choice(self.accelerator, ACCELERATORS, f"{p}accelerator")
        _choice(self.strategy, STRATEGIES, f"{p}strategy")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"{p}ema must be a decay in (0, 1) such as 0.999, or null; got {self.ema!r}")
        if self.grad_clip is not None:
            _positive(self.grad_clip, f"{p}grad_clip")
        if self.devices > 1 and self.strategy == "auto":
            raise ConfigError(f"{p}devices > 1 needs {p}strategy=ddp or {p}strategy=ddp_spawn")
        if self.seed < 0:
            raise ConfigError(f"{p}seed must be >= 0; got {self.seed!r}")
        if not isinstance(self.augment, str) or not self.augment.strip():
            raise ConfigError(f"{p}augment must name a batched augmentation, or be 'none'")
        try:
            check_augmentation(self.augment)
        except ConfigError as exc:
            raise ConfigError(f"{p}augment: {exc}") from None
        return self
