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

from typing import Any

from xairepro.config import config_to_dict
from xairepro.experiments.base import Cell, Claim, Context, Experiment, MetricSpec, Record, Results, TableSpec, Verdict
from xairepro.experiments.tda_benchmark.config import TaskSetup, TdaBenchmarkConfig

__all__ = ["TdaBenchmarkExperiment", "QUICK", "PAPER"]

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
