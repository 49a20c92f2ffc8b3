"""Settings of ``tda-benchmark``: the tasks (model + examples + training), the methods, ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xairepro.errors import ConfigError

__all__ = ["TaskSetup", "TdaBenchmarkConfig", "METHODS", "GRADIENT_METHODS", "KINDS"]

METHODS = ("exact", "exact-fisher", "lissa", "arnoldi", "ekfac", "kfac", "projected", "tracin", "simplex", "dknn")
#: Methods with a self-influence (loss gradients); SimplEx and DkNN have none.
GRADIENT_METHODS = METHODS[:8]
KINDS = ("labelfree", "supervised")


@dataclass
class TaskSetup:
    """One model of the benchmark, how it is trained, and the examples it is explained on.

    ``kind``: ``labelfree`` (an autoencoder, per-example reconstruction MSE, gradients w.r.t. the
    encoder) or ``supervised`` (a classifier, cross-entropy, gradients w.r.t. the whole model); the
    gradient methods all use the ``nn.Linear`` / ``nn.Conv2d`` weights and biases of that part (what
    EK-FAC can track).  ``damping``: λ of every influence method (the Hessian of a trained network is
    indefinite: exact Hessian influence needs λ above its most negative eigenvalue).
    """

    kind: str = "labelfree"
    data: str = "digits"
    data_options: dict[str, Any] = field(default_factory=dict)
    model: str = "mnist-ae"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=lambda: [m for m in METHODS if m != "exact"])
    n_train: int = 1000
    n_test: int = 1000
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    damping: float = 1e-3

    def validate(self, key: str = "task") -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"{key}.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if not self.methods or bad or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"{key}.methods must be distinct values of {', '.join(METHODS)}; got {self.methods}")
        if min(self.n_train, self.n_test, self.epochs, self.batch_size) < 1:
            raise ConfigError(f"{key}: n_train, n_test, epochs and batch_size must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.damping <= 0:
            raise ConfigError(f"{key}: lr and damping must be > 0, weight_decay >= 0")


@dataclass
class TdaBenchmarkConfig:
    """Tasks, methods' settings, ground truth (LDS subsets, corrupted share), seeds."""

    tasks: list[str] = field(default_factory=lambda: ["autoencoder", "classifier"])
    autoencoder: TaskSetup = field(default_factory=lambda: TaskSetup(data_options={"size": 28},
                                                                     model_kwargs={"latent_dim": 4}))
    classifier: TaskSetup = field(default_factory=lambda: TaskSetup(
        kind="supervised", data_options={"size": 8}, model="small-cnn",
        model_kwargs={"num_classes": 10, "in_channels": 1, "width": 4}, methods=list(METHODS), lr=1e-2,
        damping=0.1))
    seeds: list[int] = field(default_factory=lambda: [0])
    lds_subsets: int = 50
    lds_alpha: float = 0.5
    corrupt_fraction: float = 0.1
    lissa_depth: int = 100
    lissa_scale: float = 1000.0
    lissa_batch_size: int = 200
    arnoldi_iters: int = 100
    arnoldi_rank: int = 50
    projection_dim: int = 1024
    projection: str = "rademacher"
    query_rank: int | None = None
    simplex_steps: int = 1000
    use_gpu: bool = False

    def validate(self) -> None:
        if not self.tasks or any(t not in ("autoencoder", "classifier") for t in self.tasks) or \
                len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"tasks must be distinct values of autoencoder, classifier; got {self.tasks}")
        for key in self.tasks:
            getattr(self, key).validate(key)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"seeds must be distinct non-negative integers, got {self.seeds}")
        if self.lds_subsets < 3 or not 0 < self.lds_alpha < 1:
            raise ConfigError("lds_subsets must be >= 3 and lds_alpha in (0, 1)")
        if not 0 < self.corrupt_fraction < 1:
            raise ConfigError(f"corrupt_fraction must be in (0, 1), got {self.corrupt_fraction}")
        if min(self.lissa_depth, self.lissa_batch_size, self.arnoldi_iters, self.arnoldi_rank, self.projection_dim,
               self.simplex_steps) < 1 or self.lissa_scale <= 0:
            raise ConfigError("LiSSA, Arnoldi, projection and SimplEx settings must be positive")
        if self.projection not in ("gaussian", "rademacher"):
            raise ConfigError(f"projection must be gaussian or rademacher, got {self.projection!r}")
        if self.query_rank is not None and self.query_rank < 1:
            raise ConfigError(f"query_rank must be >= 1 or null, got {self.query_rank}")
