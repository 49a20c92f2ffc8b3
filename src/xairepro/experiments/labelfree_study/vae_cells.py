"""The computation of one disentangled-VAE cell: one VAE (type, beta, run), its per-unit saliency statistics."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from xairepro.config import resolve_config
from xairepro.experiments.base import Cell, Context, Record
from xairepro.experiments.labelfree_study.feature_cells import as_pixels
from xairepro.experiments.labelfree_study.sets import N_SHOWN, UNIT_MAPS, VaeSet, vae_setup
from xairepro.experiments.labelfree_study.trained_models import load_tensors, pick_indices, shown_indices, trained_model
from xairepro.explain import LabelFreeAttribution
from xairepro.metrics import (
    active_units, attribution_entropy, cosine_offdiagonal, pearson_offdiagonal, spearman_offdiagonal,
)
from xairepro.utils import atomic_torch_save, derive_seed

__all__ = ["vae_records", "unit_map_statistics", "informative_units", "INFORMATIVE_VARIANCE"]

#: A latent unit is informative when its posterior mean varies over the data: Var_x(mu_j(x)) > 0.01
#: (the "active units" criterion of Burda et al. 2016).  A collapsed unit (mu_j constant, KL ~ 0) encodes
#: nothing, so the correlation between its saliency map and another unit's says nothing about disentanglement.
INFORMATIVE_VARIANCE = 0.01


def informative_units(mu: Tensor, threshold: float = INFORMATIVE_VARIANCE) -> float:
    """Number of latent units whose posterior mean varies over the examples: Var_x(mu_j) > threshold
    (``mu`` (N, d); sample variance, N >= 2)."""
    return float((mu.detach().double().var(0) > threshold).sum())


def unit_map_statistics(maps: Tensor) -> dict[str, float]:
    """The statistics of per-unit maps (B, d, ...): Pearson pooled over the set (as the original) and per
    example, Spearman pooled, cosine per example, attribution entropy, active units."""
    return {"pearson": pearson_offdiagonal(maps, pooled=True),
            "pearson_per_example": pearson_offdiagonal(maps, pooled=False),
            "spearman": spearman_offdiagonal(maps, pooled=True),
            "cosine": cosine_offdiagonal(maps),
            "entropy": attribution_entropy(maps),
            "active_units": active_units(maps)}


def vae_records(cell: Cell, ctx: Context) -> list[Record]:
    """Train-or-fetch the cell's VAE, attribute its test images per latent unit (label-free GradientShap or
    Integrated Gradients, zero baseline), record the statistics of the unit maps; keep the maps of a few
    test images for the figures (the seed's Figures 3 and 17)."""
    p = cell.params
    vs = resolve_config(VaeSet, values=dict(p["vae_set"]))
    setup = vae_setup(vs, str(p["vae_type"]), float(p["beta"]))
    trained = trained_model(ctx, setup, cell.seed)
    x, y = load_tensors(setup, "test", ctx)
    i_test = pick_indices(y, vs.n_test, cell.seed, balanced=False, key="vae-test").to(x.device)
    x, y = x[i_test], y[i_test]
    method = str(p.get("method", "gradient_shap"))    # GradientShap cells keep the parameters they had
    explainer = LabelFreeAttribution(trained.model.encoder, method)
    with torch.no_grad():
        mu = trained.model.encoder(x)
    if method == "gradient_shap":
        maps = explainer.attribute_per_unit(x, seed=derive_seed(cell.seed, "vae-gradient-shap"),
                                            batch_size=int(p["batch_size"]),
                                            n_samples=int(p["gradient_shap_samples"]))
    else:
        maps = explainer.attribute_per_unit(x, seed=derive_seed(cell.seed, f"vae-{method}"),
                                            batch_size=int(p["batch_size"]), n_steps=int(p["ig_steps"]))
    shown = shown_indices(y, N_SHOWN).to(x.device)
    atomic_torch_save({"images": as_pixels(x[shown]), "maps": maps[shown].sum(2).to(torch.float16).cpu()},
                      Path(ctx.cache_dir) / UNIT_MAPS)
    stats = {**unit_map_statistics(maps), "informative_units": informative_units(mu)}
    return [cell.record(name, value) for name, value in stats.items()]
