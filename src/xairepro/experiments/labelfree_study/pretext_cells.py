"""The computation of one pretext-task cell: four encoders of one run, their saliency and DkNN correlations."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from xairepro.config import resolve_config
from xairepro.experiments.base import Cell, Context, Record
from xairepro.experiments.labelfree_study.feature_cells import as_pixels, attributions
from xairepro.experiments.labelfree_study.references import PAIRS, TASKS, pair_metric
from xairepro.experiments.labelfree_study.sets import N_SHOWN, PRETEXT_EXAMPLES, PretextSet, task_setup
from xairepro.experiments.labelfree_study.trained_models import load_tensors, pick_indices, shown_indices, trained_model
from xairepro.explain import DKNN
from xairepro.metrics import pearson_matrix
from xairepro.metrics.correlation import average_ranks
from xairepro.utils import atomic_torch_save, derive_seed

__all__ = ["pretext_records", "task_correlations", "task_seed"]


def task_seed(seed: int, task: str) -> int:
    """The training seed of ``task``'s model in run ``seed``: every task starts from its own initialisation
    (as the original, which built the run's models one after the other from one generator).  The
    denoising autoencoder keeps the run's seed, so it is the very model the consistency checks use."""
    return int(seed) if task == "den" else derive_seed(seed, "pretext", task) % 2**31


def task_correlations(values: Tensor, *, pooled: bool) -> dict[str, Tensor]:
    """Pearson and Spearman matrices (K, K) between the K tasks of ``values`` (N, K, ...).

    ``pooled``: each task's values flattened over all N examples (one matrix, as the original's
    ``np.corrcoef``); otherwise one matrix per example, averaged (NaN entries left out).
    """
    x = values.detach().to(torch.float64).reshape(values.shape[0], values.shape[1], -1)
    if pooled:
        x = x.transpose(0, 1).reshape(1, x.shape[1], -1)
    return {"pearson": pearson_matrix(x), "spearman": pearson_matrix(average_ranks(x))}


def _records(cell: Cell, values: Tensor, kind: str, variant: str, pooled: bool) -> list[Record]:
    out = []
    for statistic, matrix in task_correlations(values, pooled=pooled).items():
        for a, b in PAIRS:
            value = float(matrix[TASKS.index(a), TASKS.index(b)])
            out.append(cell.record(pair_metric(kind, statistic, a, b), value, variant=variant))
    return out


def pretext_records(cell: Cell, ctx: Context) -> list[Record]:
    """Train-or-fetch the four task models of this run; record the correlations between tasks.  The maps and
    the top training example (DkNN) of each task for a few test images are kept for the figures."""
    p = cell.params
    ps = resolve_config(PretextSet, values=dict(p["pretext_set"]))
    encoders = {t: trained_model(ctx, task_setup(ps, t), task_seed(cell.seed, t)).model.encoder for t in TASKS}
    x_test, y_test = load_tensors(ps.autoencoder, "test", ctx)
    i_test = pick_indices(y_test, ps.n_test, cell.seed, balanced=False, key="pretext-test").to(x_test.device)
    x_test, y_test = x_test[i_test], y_test[i_test]
    shown = shown_indices(y_test, N_SHOWN).to(x_test.device)
    x_train, y_train = load_tensors(ps.autoencoder, "train", ctx)
    i_train = pick_indices(y_train, ps.n_train, cell.seed, balanced=ps.balance_train, key="pretext-train")
    x_train = x_train[i_train.to(x_train.device)]
    records: list[Record] = []
    kept = {}
    for method in p["saliency_methods"]:
        maps = torch.stack([attributions(encoders[t], x_test, method, None, seed=cell.seed, ig_steps=p["ig_steps"],
                                         gs_samples=p["gradient_shap_samples"], batch_size=p["batch_size"]).abs()
                            for t in TASKS], dim=1)
        records += _records(cell, maps, "saliency", method, bool(p["pooled"]))
        kept[method] = maps[shown].sum(2).to(torch.float16).cpu()       # (n, tasks, H, W)
    scores = torch.stack([DKNN(encoders[t]).attribute(x_test, x_train) for t in TASKS], dim=1)
    records += _records(cell, scores, "example", "dknn", bool(p["pooled"]))
    top = scores[shown].argmax(-1)                                         # (n, tasks): the top example per task
    atomic_torch_save({"tasks": list(TASKS), "images": as_pixels(x_test[shown]), "labels": y_test[shown].cpu(),
                       "maps": kept, "top": as_pixels(x_train[top.to(x_train.device)])},
                      Path(ctx.cache_dir) / PRETEXT_EXAMPLES)
    return records
