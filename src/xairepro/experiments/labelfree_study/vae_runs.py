"""The computation of one disentangled-VAE cell: one VAE (type, beta, run), its per-unit saliency statistics."""

from __future__ import annotations

from torch import Tensor

from xairepro.config import resolve_config
from xairepro.experiments.base import Cell, Context, Record
from xairepro.experiments.labelfree_study.disentangled_vae import VaeSet, vae_setup
from xairepro.experiments.labelfree_study.models import load_tensors, pick_indices, trained_model
from xairepro.utils import derive_seed

__all__ = ["vae_records", "unit_map_statistics"]


def unit_map_statistics(maps: Tensor) -> dict[str, float]:
    """The statistics of per-unit maps (B, d, ...): Pearson pooled over the set (as the original) and per
    example, Spearman pooled, cosine per example, attribution entropy, active units."""
    from xairepro.metrics import (
        active_units, attribution_entropy, cosine_offdiagonal, pearson_offdiagonal, spearman_offdiagonal,
    )

    return {"pearson": pearson_offdiagonal(maps, pooled=True),
            "pearson_per_example": pearson_offdiagonal(maps, pooled=False),
            "spearman": spearman_offdiagonal(maps, pooled=True),
            "cosine": cosine_offdiagonal(maps),
            "entropy": attribution_entropy(maps),
            "active_units": active_units(maps)}


def vae_records(cell: Cell, ctx: Context) -> list[Record]:
    """Train-or-fetch the cell's VAE, attribute its test images per latent unit (label-free GradientShap,
    zero baseline), record the statistics of the unit maps."""
    from xairepro.explain import LabelFreeAttribution

    p = cell.params
    vs = resolve_config(VaeSet, values=dict(p["vae_set"]))
    setup = vae_setup(vs, str(p["vae_type"]), float(p["beta"]))
    trained = trained_model(ctx, setup, cell.seed)
    x, y = load_tensors(setup, "test", ctx)
    x = x[pick_indices(y, vs.n_test, cell.seed, balanced=False, key="vae-test").to(x.device)]
    explainer = LabelFreeAttribution(trained.model.encoder, "gradient_shap")
    maps = explainer.attribute_per_unit(x, seed=derive_seed(cell.seed, "vae-gradient-shap"),
                                        batch_size=int(p["batch_size"]),
                                        n_samples=int(p["gradient_shap_samples"]))
    return [cell.record(name, value) for name, value in unit_map_statistics(maps).items()]
