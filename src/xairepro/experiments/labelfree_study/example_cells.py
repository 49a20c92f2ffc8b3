"""The computation of one example-consistency cell: one method on one data set and seed."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from xairepro.config import resolve_config
from xairepro.experiments.base import Cell, Context, Record
from xairepro.experiments.labelfree_study.common import frac_metric
from xairepro.experiments.labelfree_study.sets import LEAST, MOST, ExampleSet, LissaSettings
from xairepro.experiments.labelfree_study.trained_models import (
    LoadedModel, load_tensors, pick_indices, reconstruction_loss, trained_model,
)
from xairepro.explain import DKNN, InfluenceFunctions, SimplEx, TracIn
from xairepro.metrics import similarity_rates
from xairepro.metrics.similarity import ks_from_fractions
from xairepro.train.checkpoint import load_checkpoint
from xairepro.utils import derive_seed

__all__ = ["example_consistency_records", "example_scores"]


def example_scores(method: str, trained: LoadedModel, x_test: Tensor, x_train: Tensor, *,
                   hessian_data: Tensor, params: dict[str, Any], seed: int) -> Tensor:
    """Scores (n_test, n_train) of ``method``; higher = more important."""
    model: nn.Module = trained.model
    if method == "dknn":
        return DKNN(model.encoder).attribute(x_test, x_train)
    if method == "simplex":
        s = params["simplex"]
        return SimplEx(model.encoder, steps=int(s["steps"]), lr=float(s["lr"])).attribute(x_test, x_train)
    loss_fn = reconstruction_loss(trained.setup)
    if method == "tracin":
        paths = trained.checkpoints()
        if not paths:
            raise ValueError(f"TracIn needs the epoch checkpoints of {trained.setup.model!r}, but it was trained "
                             "with checkpoint_every=0; set model.checkpoint_every >= 1")
        states, lrs = [], []
        for path in paths:
            obj = load_checkpoint(path, map_location=str(x_test.device))
            states.append(obj["model"])
            lrs.append(float(obj["lr"]))
        return TracIn(model, loss_fn, model.encoder, checkpoints=states, learning_rates=lrs).attribute(x_test, x_train)
    if method == "influence_functions":
        lissa = resolve_config(LissaSettings, values=dict(params["lissa"]))
        explainer = InfluenceFunctions(model, loss_fn, model.encoder, method="lissa", damping=lissa.damping,
                                       scale=lissa.scale, depth=lissa.depth, hessian_data=hessian_data,
                                       hessian_batch_size=lissa.hessian_batch_size,
                                       seed=derive_seed(seed, "lissa"))
        return explainer.attribute(x_test, x_train)
    raise ValueError(f"unknown example importance method {method!r}")


def example_consistency_records(cell: Cell, ctx: Context) -> list[Record]:
    """Train-or-fetch the set's model, score the sampled examples, record Most/Least similarity rates."""
    p = cell.params
    es = resolve_config(ExampleSet, values=dict(p["example_set"]))
    trained = trained_model(ctx, es.model, cell.seed)
    x_train_all, y_train_all = load_tensors(es.model, "train", ctx)
    x_test_all, y_test_all = load_tensors(es.model, "test", ctx)
    i_train = pick_indices(y_train_all, es.n_train, cell.seed, balanced=es.balance_train, key="example-train")
    i_test = pick_indices(y_test_all, es.n_test, cell.seed, balanced=es.balance_test, key="example-test")
    i_train, i_test = i_train.to(x_train_all.device), i_test.to(x_test_all.device)
    x_train, y_train = x_train_all[i_train], y_train_all[i_train]
    x_test, y_test = x_test_all[i_test], y_test_all[i_test]
    scores = example_scores(cell.variant, trained, x_test, x_train, hessian_data=x_train_all, params=p,
                            seed=cell.seed)
    fractions = [float(f) for f in p["fractions"]]
    rates = similarity_rates(scores, y_train, y_test, ks_from_fractions(x_train.shape[0], fractions))
    return ([cell.record(frac_metric(MOST, f), float(v)) for f, v in zip(fractions, rates["most"].tolist())]
            + [cell.record(frac_metric(LEAST, f), float(v)) for f, v in zip(fractions, rates["least"].tolist())])
