"""The computation of one feature-consistency cell (heavy imports: torch, captum through explain)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xairepro.config import resolve_config
from xairepro.experiments.base import Cell, Context, Record
from xairepro.experiments.labelfree_study.common import frac_metric
from xairepro.experiments.labelfree_study.sets import MASKED_EXAMPLES, N_SHOWN, PREFIX, FeatureSet, variant_name
from xairepro.experiments.labelfree_study.trained_models import load_tensors, pick_indices, trained_model
from xairepro.explain import LabelFreeAttribution
from xairepro.metrics import feature_consistency
from xairepro.metrics.consistency import random_attributions
from xairepro.metrics.roar import removed_inputs
from xairepro.utils import atomic_torch_save, derive_seed

__all__ = ["feature_consistency_records", "attribution_kwargs", "resolve_baseline", "masked_examples",
           "as_pixels"]


def resolve_baseline(kind: str, ctx: Context, fs: FeatureSet) -> Any:
    """zeros -> None (the methods' default, zeros); mean -> the mean training example; blur -> "blur"."""
    if kind == "zeros":
        return None
    if kind == "blur":
        return "blur"
    x_train, _ = load_tensors(fs.model, "train", ctx)
    return x_train.mean(0)


def attribution_kwargs(method: str, ig_steps: int, gs_samples: int) -> dict[str, Any]:
    if method == "integrated_gradients":
        return {"n_steps": int(ig_steps)}
    if method == "gradient_shap":
        return {"n_samples": int(gs_samples)}
    return {}


def attributions(encoder: torch.nn.Module, x: Tensor, method: str, baseline: Any, *, seed: int,
                 ig_steps: int, gs_samples: int, batch_size: int) -> Tensor | str:
    """Label-free attributions of ``x`` by ``method`` ("random": the control, drawn later by the metric)."""
    if method == "random":
        return "random"
    lf = LabelFreeAttribution(encoder, method)
    base = None if method == "saliency" else baseline
    return lf.attribute(x, baselines=base, seed=derive_seed(seed, method), batch_size=batch_size,
                        **attribution_kwargs(method, ig_steps, gs_samples))


def as_pixels(images: Tensor) -> Tensor:
    """Images in [0, 1] as uint8 on the CPU: what a figure needs, a quarter of the bytes."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def masked_examples(x: Tensor, attr: Tensor | str, fractions: list[float], replacement: Any, *, seed: int,
                    n: int = N_SHOWN) -> Tensor:
    """The first ``n`` examples of ``x`` with their top-p% features replaced, for every fraction:
    (F, n, ...), exactly the inputs :func:`~xairepro.metrics.feature_consistency` scores ("random":
    the same draw over the whole of ``x``, then its first rows)."""
    ranking = random_attributions(x, seed)[:n] if isinstance(attr, str) else attr[:n]
    return torch.stack([removed_inputs(x[:n], ranking, f, replacement) for f in fractions])


def feature_consistency_records(cell: Cell, ctx: Context) -> list[Record]:
    """Train-or-fetch the set's encoder, attribute its test examples, mask, record the latent shifts; keep
    the first test images masked at every fraction (images; not road) for the masked-image figures."""
    p = cell.params
    fs = resolve_config(FeatureSet, values=dict(p["feature_set"]))
    trained = trained_model(ctx, fs.model, cell.seed)
    encoder = trained.model.encoder
    x, y = load_tensors(fs.model, "test", ctx)
    x = x[pick_indices(y, fs.n_test, cell.seed, balanced=False, key="feature-test").to(x.device)]
    baseline = resolve_baseline(fs.baseline, ctx, fs)
    replacements = {r: resolve_baseline(r, ctx, fs) if r == "mean" else r for r in fs.replacements}
    fractions = [float(f) for f in p["fractions"]]
    primary = str(p.get("primary", fs.replacements[0]))
    records, shown = [], {}
    for method in p["methods"]:
        attr = attributions(encoder, x, method, baseline, seed=cell.seed, ig_steps=p["ig_steps"],
                            gs_samples=p["gradient_shap_samples"], batch_size=p["batch_size"])
        for replacement, value in replacements.items():
            # ROAD imputes from the kept features: undefined when all are removed (100%)
            kept = [f for f in fractions if f < 1.0] if replacement == "road" else fractions
            shifts = feature_consistency(encoder, x, attr, kept, replacement=value,
                                         seed=derive_seed(cell.seed, "random"), batch_size=p["batch_size"])
            variant = variant_name(method, replacement, primary)
            records += [cell.record(frac_metric(PREFIX, f), float(s), variant=variant)
                        for f, s in zip(kept, shifts.tolist())]
            if x.ndim == 4 and replacement != "road":
                shown[variant] = as_pixels(masked_examples(x, attr, fractions, value,
                                                           seed=derive_seed(cell.seed, "random")))
    if shown:
        atomic_torch_save({"images": as_pixels(x[:N_SHOWN]), "fractions": fractions, "masked": shown,
                           "primary": primary}, Path(ctx.cache_dir) / MASKED_EXAMPLES)
    return records
