"""The computation of one ``tda-benchmark`` cell: a retrained subset model, or one method of one task."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from xairepro.config import resolve_config
from xairepro.errors import UsageError
from xairepro.experiments.base import Cell, Context, Record
from xairepro.experiments.tda_benchmark.config import GRADIENT_METHODS, TaskSetup
from xairepro.experiments.tda_benchmark.tasks import (
    TaskData, Trained, corrupt_data, representation_module, task_data, task_loss, tracked_names, trained,
)
from xairepro.utils import atomic_torch_save, derive_seed

__all__ = ["subset_records", "method_records", "make_explainer"]


def _setup(cell: Cell) -> TaskSetup:
    return resolve_config(TaskSetup, values=dict(cell.params["setup"]))


def _subsets(cell: Cell, n_train: int) -> Tensor:
    from xairepro.metrics import datamodel_subsets

    lds = cell.params["lds"]
    return datamodel_subsets(n_train, int(lds["subsets"]), float(lds["alpha"]), seed=derive_seed(cell.seed, "tda-lds"))


def _subset_model(ctx: Context, task: TaskSetup, cell: Cell, data: TaskData, masks: Tensor, m: int) -> Trained:
    lds = cell.params["lds"]
    which = {"subset": m, "of": int(lds["subsets"]), "alpha": float(lds["alpha"])}
    return trained(ctx, task, cell.seed, data, which=which, mask=masks[m])


def subset_records(cell: Cell, ctx: Context) -> list[Record]:
    """Train (or fetch) the model of one α-subset; record its mean test loss."""
    task = _setup(cell)
    data = task_data(task, ctx)
    masks = _subsets(cell, data.x_train.shape[0])
    model = _subset_model(ctx, task, cell, data, masks, int(cell.params["subset"])).model
    with torch.no_grad():
        loss = task_loss(task)(model, data.test(task.kind)).mean()
    return [cell.record("subset_test_loss", float(loss))]


def make_explainer(name: str, settings: dict[str, Any], task: TaskSetup, model: Trained, seed: int) -> Any:
    """An object with ``attribute(x_test, x_train)`` (and ``self_influence(x)`` for gradient methods)."""
    from xairepro.explain import DKNN, InfluenceFunctions, SimplEx, TracIn

    loss_fn, net = task_loss(task), model.model
    if name == "dknn":
        return DKNN(representation_module(task, net))
    if name == "simplex":
        return SimplEx(representation_module(task, net), steps=int(settings["steps"]))
    names = tracked_names(task, net)
    if name == "tracin":
        from xairepro.train import load_checkpoint

        objs = [load_checkpoint(p, map_location=str(next(net.parameters()).device)) for p in model.checkpoints()]
        return TracIn(net, loss_fn, names, checkpoints=[o["model"] for o in objs],
                      learning_rates=[float(o["lr"]) for o in objs])
    kw: dict[str, Any] = {"damping": task.damping, "seed": derive_seed(seed, name)}
    if name in ("exact", "exact-fisher"):
        kw.update(method="exact", curvature="hessian" if name == "exact" else "fisher")
    elif name == "lissa":
        kw.update(method="lissa", depth=int(settings["depth"]), scale=float(settings["scale"]),
                  hessian_batch_size=int(settings["batch"]))
    elif name == "arnoldi":
        kw.update(method="arnoldi", arnoldi_iters=int(settings["iters"]), arnoldi_rank=int(settings["rank"]))
    elif name in ("ekfac", "kfac"):
        kw.update(method=name, query_rank=settings.get("query_rank"))
    elif name == "projected":
        kw.update(method="projected", projection_dim=int(settings["dim"]), projection=settings["projection"])
    else:
        raise ValueError(f"unknown attribution method {name!r}")
    return InfluenceFunctions(net, loss_fn, names, **kw)


def _reference(ctx: Context, task: TaskSetup, cell: Cell, data: TaskData, full: Trained) -> dict[str, Tensor]:
    """Exact influence (Hessian where P x P fits, empirical Fisher), computed once per task and seed."""
    from xairepro.explain.influence import MAX_EXACT_PARAMS

    key = {"tda-reference": dict(cell.params["setup"]), "seed": cell.seed, "model": str(full.folder.name)}

    def build(folder) -> None:
        out = {}
        n_params = sum(full.model.get_parameter(n).numel() for n in tracked_names(task, full.model))
        for name in ("exact", "exact-fisher"):
            if name == "exact" and n_params > MAX_EXACT_PARAMS:
                continue
            explainer = make_explainer(name, {}, task, full, cell.seed)
            try:
                out[name] = explainer.attribute(data.test(task.kind), data.train(task.kind)).cpu()
            except UsageError:  # H + λI singular (indefinite Hessian): no Hessian reference at this damping
                if name == "exact-fisher":
                    raise
        atomic_torch_save(out, folder / "scores.pt")

    folder = ctx.models.get_or_create(key, build, name=f"tda-reference-{cell.params['task']}")
    return torch.load(folder / "scores.pt", map_location="cpu", weights_only=True)


def _lds_outputs(ctx: Context, task: TaskSetup, cell: Cell, data: TaskData, full: Trained, masks: Tensor
                 ) -> dict[str, Tensor]:
    """Actual outputs (M, n_test) of the subset models: minus the test loss; label-free also minus the
    representation's shift from the full model's (aligned on the training examples)."""
    from xairepro.explain.dknn import latent_representations
    from xairepro.metrics import representation_shift

    loss_fn, test = task_loss(task), data.test(task.kind)
    outputs: dict[str, list[Tensor]] = {"lds": [], "lds_representation": []}
    if task.kind == "labelfree":
        ref_test = latent_representations(representation_module(task, full.model), data.x_test)
        ref_train = latent_representations(representation_module(task, full.model), data.x_train)
    for m in range(masks.shape[0]):
        model = _subset_model(ctx, task, cell, data, masks, m).model
        with torch.no_grad():
            outputs["lds"].append(-loss_fn(model, test).double().cpu())
        if task.kind == "labelfree":
            enc = representation_module(task, model)
            shift = representation_shift(latent_representations(enc, data.x_test), ref_test,
                                         latent_representations(enc, data.x_train), ref_train)
            outputs["lds_representation"].append(-shift.cpu())
    return {k: torch.stack(v) for k, v in outputs.items() if v}


def method_records(cell: Cell, ctx: Context) -> list[Record]:
    """Scores of one method (timed), their agreement with exact influence, LDS and corrupted-example AUC."""
    from scipy.stats import spearmanr

    from xairepro.metrics import detection_auc, linear_datamodeling_score
    from xairepro.utils.resources import PeakMemory

    task, settings = _setup(cell), dict(cell.params["method"])
    name = settings["name"]
    data = task_data(task, ctx)
    full = trained(ctx, task, cell.seed, data, checkpoints=True)
    explainer = make_explainer(name, settings, task, full, cell.seed)
    try:
        with PeakMemory(ctx.device) as peak:
            scores = explainer.attribute(data.test(task.kind), data.train(task.kind)).detach().cpu()
    except UsageError as exc:
        if name != "exact" or "singular" not in str(exc):
            raise
        # H + λI of a trained network can be singular (H is indefinite): exact Hessian influence is undefined
        return [cell.record(metric, float("nan")) for metric in ("wall_time_s", "spearman_exact_hessian", "lds")]
    records = [cell.record("wall_time_s", peak.seconds), cell.record("peak_memory_mb", peak.peak_bytes / 2**20)]
    reference = _reference(ctx, task, cell, data, full)
    for ref_name, metric in (("exact", "spearman_exact_hessian"), ("exact-fisher", "spearman_exact_fisher")):
        if ref_name in reference:
            rho = spearmanr(reference[ref_name].flatten().numpy(), scores.flatten().double().numpy())[0]
            records.append(cell.record(metric, float(rho)))
    masks = _subsets(cell, data.x_train.shape[0])
    for metric, outputs in _lds_outputs(ctx, task, cell, data, full, masks).items():
        records.append(cell.record(metric, float(linear_datamodeling_score(scores, masks, outputs))))
    if name in GRADIENT_METHODS:
        bad = corrupt_data(data, task, float(cell.params["corrupt_fraction"]), cell.seed)
        model = trained(ctx, task, cell.seed, bad, which={"corrupt": float(cell.params["corrupt_fraction"])},
                        checkpoints=True)
        own = make_explainer(name, settings, task, model, cell.seed).self_influence(bad.train(task.kind))
        records.append(cell.record("corrupted_auc", detection_auc(own.cpu(), bad.corrupted.cpu())))
    return records
