"""``tda-benchmark``: exact / LiSSA / Arnoldi / EK-FAC / K-FAC / projected / TracIn / SimplEx / DkNN influence
on a label-free autoencoder and a supervised classifier, judged against ground truth.

Per task (model + examples) and seed, one cell per method records: wall time and peak memory of the
scores (n_test x n_train), Spearman correlation with exact influence (Hessian where P x P fits, and the
empirical Fisher), the linear datamodeling score (LDS) against models retrained on seeded α-subsets of
the training set (label-free: the output is minus the test example's reconstruction loss, ``lds``, and
minus its representation's shift, ``lds_representation``), and the AUC of self-influence at detecting
corrupted training examples (flipped labels; label-free: pixel-shuffled images) in a model trained
with them.  The retrained models are cells of their own (``subset-NN``), cached in the model cache, so
Ray runs them in parallel; method cells fetch them (or train the missing ones themselves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xairepro.config import config_to_dict
from xairepro.errors import ConfigError
from xairepro.experiments.base import Cell, Claim, Context, Experiment, MetricSpec, Record, Results, TableSpec, Verdict

__all__ = ["TaskSetup", "TdaBenchmarkConfig", "TdaBenchmarkExperiment", "METHODS", "GRADIENT_METHODS"]

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


QUICK = {
    "lds_subsets": 10, "lissa_depth": 10, "lissa_scale": 100.0, "lissa_batch_size": 32, "arnoldi_iters": 30,
    "arnoldi_rank": 20, "projection_dim": 256, "simplex_steps": 300,
    "autoencoder": {"n_train": 240, "n_test": 30, "epochs": 8, "batch_size": 32},
    "classifier": {"n_train": 300, "n_test": 30, "epochs": 25, "batch_size": 32},
}
PAPER = {
    "use_gpu": True, "lds_subsets": 50,
    "autoencoder": {"data": "mnist", "n_train": 1000, "n_test": 1000, "epochs": 20,
                    "batch_size": 200},
    "classifier": {"n_train": 1000, "n_test": 200, "epochs": 40},
}

METRICS = {
    "wall_time_s": MetricSpec("wall time of the scores (s)", higher_is_better=False),
    "peak_memory_mb": MetricSpec("peak memory of the scores (MiB)", higher_is_better=False),
    "spearman_exact_hessian": MetricSpec("Spearman with exact influence (Hessian)", higher_is_better=True),
    "spearman_exact_fisher": MetricSpec("Spearman with exact influence (empirical Fisher)", higher_is_better=True),
    "lds": MetricSpec("LDS, output = -test loss", higher_is_better=True),
    "lds_representation": MetricSpec("LDS, output = -representation shift", higher_is_better=True),
    "corrupted_auc": MetricSpec("corrupted-example detection AUC (self-influence)", higher_is_better=True),
    "subset_test_loss": MetricSpec("test loss of a model retrained on a subset", higher_is_better=False),
}


class TdaBenchmarkExperiment(Experiment):
    name = "tda-benchmark"
    title = "Training-data attribution: cost and accuracy of example-importance methods against ground truth"
    study = "tda"
    reproduces = "no published table (benchmark: LDS, corrupted-example detection, agreement with exact influence)"
    version = "1"
    run_by_default = False
    config_class = TdaBenchmarkConfig
    presets = {"quick": QUICK, "paper": PAPER}
    metrics = METRICS
    tables = (
        TableSpec("Cost", ("wall_time_s", "peak_memory_mb")),
        TableSpec("Agreement with exact influence", ("spearman_exact_hessian", "spearman_exact_fisher")),
        TableSpec("Ground truth", ("lds", "lds_representation", "corrupted_auc")),
    )

    def cells(self, cfg: TdaBenchmarkConfig) -> list[Cell]:
        out = []
        gpus = 1.0 if cfg.use_gpu else 0.0
        for key in cfg.tasks:
            task: TaskSetup = getattr(cfg, key)
            base = {"task": key, "setup": config_to_dict(task), "lds": {"subsets": cfg.lds_subsets,
                                                                        "alpha": cfg.lds_alpha},
                    "corrupt_fraction": cfg.corrupt_fraction}
            dataset = f"{key}/{task.data}"
            for seed in cfg.seeds:
                out += [self.cell(dataset, f"subset-{m:02d}", seed, {**base, "subset": m}, num_gpus=gpus)
                        for m in range(cfg.lds_subsets)]
                out += [self.cell(dataset, method, seed, {**base, "method": _method_settings(cfg, method)},
                                  num_gpus=gpus) for method in task.methods]
        return out

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        from xairepro.experiments.tda_benchmark.runs import method_records, subset_records

        if cell.variant.startswith("subset-"):
            return subset_records(cell, ctx)
        return method_records(cell, ctx)

    def datasets(self, cfg: TdaBenchmarkConfig) -> list[str]:
        return sorted({getattr(cfg, key).data for key in cfg.tasks})

    def claims(self, cfg: TdaBenchmarkConfig) -> list[Claim]:
        out = []
        for key in cfg.tasks:
            task: TaskSetup = getattr(cfg, key)
            if "ekfac" in task.methods and "exact-fisher" in task.methods:
                out.append(Claim(f"ekfac-agrees-{key}", f"EK-FAC ranks like exact (empirical-Fisher) influence on the "
                                 f"{key} (Spearman >= 0.9)", _agreement(f"{key}/{task.data}")))
        return out

    def describe(self, cfg: TdaBenchmarkConfig) -> dict[str, Any]:
        tasks = {key: f"{getattr(cfg, key).model} on {getattr(cfg, key).data} ({getattr(cfg, key).kind}), "
                      f"{getattr(cfg, key).n_train} train x {getattr(cfg, key).n_test} test, damping "
                      f"{getattr(cfg, key).damping:g}" for key in cfg.tasks}
        return {"tasks": tasks,
                "lds": f"{cfg.lds_subsets} subsets of {cfg.lds_alpha:.0%} of the training set, one model each "
                       "(same initialisation and seed as the full model)",
                "corruption": f"{cfg.corrupt_fraction:.0%} of the training set (labels flipped; label-free: "
                              "pixels shuffled)",
                "lissa": f"depth {cfg.lissa_depth}, scale {cfg.lissa_scale:g}, batch {cfg.lissa_batch_size}",
                "projection": f"{cfg.projection}, k = {cfg.projection_dim}",
                "peak_memory": "peak resident memory above the start of the scoring, sampled every 5 ms "
                               "(CUDA: peak allocated)"}


def _method_settings(cfg: TdaBenchmarkConfig, method: str) -> dict[str, Any]:
    """The settings a method cell depends on (its cache key)."""
    settings: dict[str, Any] = {"name": method}
    if method == "lissa":
        settings.update(depth=cfg.lissa_depth, scale=cfg.lissa_scale, batch=cfg.lissa_batch_size)
    elif method == "arnoldi":
        settings.update(iters=cfg.arnoldi_iters, rank=cfg.arnoldi_rank)
    elif method in ("ekfac", "kfac"):
        settings.update(query_rank=cfg.query_rank)
    elif method == "projected":
        settings.update(dim=cfg.projection_dim, projection=cfg.projection)
    elif method == "simplex":
        settings.update(steps=cfg.simplex_steps)
    return settings


def _agreement(dataset: str):
    def check(results: Results) -> Verdict:
        rho = results.mean("spearman_exact_fisher", dataset, "ekfac")
        return Verdict.decide(rho >= 0.9, f"Spearman of EK-FAC with exact influence {rho:.3f} (goal 0.9)", spearman=rho)

    return check
