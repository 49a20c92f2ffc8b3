"""K-FAC and EK-FAC factors of the empirical Fisher of chosen ``nn.Linear`` / ``nn.Conv2d`` layers.

Curvature: the empirical Fisher of the mean loss over the fitting data, F = (1/N) sum_n g_n g_nᵀ,
block-diagonal over the tracked layers.  With G_n = sum_t s_nt a_ntᵀ a layer's per-example gradient
(``xairepro.explain.layer_capture``):

- K-FAC:   F_l ≈ A ⊗ S,  A = (1/N) sum_n (1/T) sum_t a_nt a_ntᵀ,  S = (1/N) sum_n sum_t s_nt s_ntᵀ
  (Martens & Grosse 2015; the 1/T on A alone is KFC's normalisation for convolutions, Grosse & Martens 2016).
  Eigenvalues of A ⊗ S: Λ_kl = σ_k μ_l (σ of S, μ of A).
- EK-FAC:  F_l ≈ (Q_S ⊗ Q_A) diag(Λ) (Q_S ⊗ Q_A)ᵀ in the eigenbases Q_S, Q_A of S and A, with Λ the exact
  diagonal of F_l in that basis (George et al. 2018):  Λ_kl = (1/N) sum_n (Q_Sᵀ G_n Q_A)_kl².

K-FAC needs one pass over the data (A and S); EK-FAC a second one (Λ needs the eigenbases first).
Factors are kept in float64 on the CPU, saved with an atomic ``torch.save`` and loaded with
``weights_only=True`` (tensors and plain values only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.examples import Examples, check_examples, count, fingerprint, take, to_device
from xairepro.explain.layer_capture import TrackedLayer, capture_terms, layer_gradients
from xairepro.explain.per_example_grads import LossFn
from xairepro.utils import atomic_torch_save, model_device, progress

KroneckerMethod = Literal["kfac", "ekfac"]

FORMAT = "xairepro-kronecker-factors"

__all__ = ["LayerFactors", "KroneckerFactors", "fit_kronecker_factors", "weights_fingerprint"]


@dataclass
class LayerFactors:
    """Eigendecompositions of one layer's A (in' x in') and S (out x out); ``corrected``: EK-FAC's Λ (out, in')."""

    a_vecs: Tensor
    a_vals: Tensor
    s_vecs: Tensor
    s_vals: Tensor
    corrected: Tensor | None = None

    def eigenvalues(self, method: KroneckerMethod) -> Tensor:
        """Λ (out, in'): EK-FAC's corrected eigenvalues, or K-FAC's σ_k μ_l."""
        if method == "ekfac":
            if self.corrected is None:
                raise UsageError("these are K-FAC factors; EK-FAC needs its corrected eigenvalues: fit again "
                                 "with method='ekfac'")
            return self.corrected
        return self.s_vals[:, None] * self.a_vals[None, :]


@dataclass
class KroneckerFactors:
    """Fitted factors of every tracked layer (by module name) and what they were fitted on."""

    method: KroneckerMethod
    layers: dict[str, LayerFactors]
    n_examples: int
    weights: str           # fingerprint of the tracked parameters' values
    param_names: list[str]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the factors atomically (tensors and plain values: loadable with ``weights_only``)."""
        obj = {"format": FORMAT, "version": 1, "method": self.method, "n_examples": self.n_examples,
               "weights": self.weights, "param_names": list(self.param_names),
               "layers": {name: {k: v for k, v in vars(f).items() if v is not None}
                          for name, f in self.layers.items()}}
        return atomic_torch_save(obj, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KroneckerFactors:
        """Factors saved by :meth:`save` (``weights_only`` loading; a bad file is a ``CheckpointError``)."""
        from xairepro.train.checkpoint import load_checkpoint

        obj = load_checkpoint(path, expect=FORMAT)
        layers = {name: LayerFactors(**dict(d)) for name, d in obj["layers"].items()}
        return cls(obj["method"], layers, int(obj["n_examples"]), str(obj["weights"]), list(obj["param_names"]))

    def check_matches(self, layers: list[TrackedLayer], weights: str, method: str) -> None:
        """One clear error when these factors were fitted for other layers, weights or method."""
        names = [p for layer in layers for p in layer.param_names]
        if names != self.param_names:
            raise UsageError(f"the factors were fitted for parameters {self.param_names[:4]}..., not the tracked "
                             f"{names[:4]}...; fit them again")
        for layer in layers:
            f = self.layers[layer.name]
            if tuple(f.corrected.shape if f.corrected is not None else (f.s_vals.numel(), f.a_vals.numel())) != (
                    layer.out_dim, layer.in_dim):
                raise UsageError(f"the factors of layer {layer.name!r} do not match its shape; fit them again")
        if weights != self.weights:
            raise UsageError("the factors were fitted for other weights of the model (it changed since); "
                             "fit them again (fit_factors) or load the model they belong to")
        if method != self.method and not (method == "kfac" and self.method == "ekfac"):
            raise UsageError(f"these are {self.method} factors; method={method!r} needs EK-FAC's corrected "
                             "eigenvalues: fit them again with method='ekfac'")


def weights_fingerprint(layers: list[TrackedLayer]) -> str:
    """Fingerprint of the tracked parameters' current values."""
    tensors = [layer.module.weight for layer in layers] + [layer.module.bias for layer in layers if layer.bias]
    return fingerprint(*tensors)


def _batches(data: Examples, batch_size: int, device: torch.device, what: str, show: bool):
    n = count(data)
    starts = range(0, n, batch_size)
    for start in progress(starts, enabled=show, total=len(starts), desc=what):
        yield to_device(take(data, slice(start, start + batch_size)), device)


def fit_kronecker_factors(model: nn.Module, loss_fn: LossFn, layers: list[TrackedLayer], data: Examples, *,
                          method: KroneckerMethod = "ekfac", batch_size: int = 128,
                          show_progress: bool = False) -> KroneckerFactors:
    """Fit the factors on ``data`` (the caller sets eval mode); see the module docstring for the formulas."""
    if method not in ("kfac", "ekfac"):
        raise UsageError(f"method must be 'kfac' or 'ekfac', got {method!r}")
    n = check_examples(data, "hessian_data")
    device = model_device(model)
    a_sum = {layer.name: torch.zeros(layer.in_dim, layer.in_dim, dtype=torch.float64) for layer in layers}
    s_sum = {layer.name: torch.zeros(layer.out_dim, layer.out_dim, dtype=torch.float64) for layer in layers}
    for batch in _batches(data, batch_size, device, "K-FAC factors", show_progress):
        for name, (a, s) in capture_terms(model, loss_fn, layers, batch).items():
            a64, s64 = a.double(), s.double()
            a_sum[name] += torch.einsum("bti,btj->ij", a64, a64).cpu() / a.shape[1]
            s_sum[name] += torch.einsum("bto,btp->op", s64, s64).cpu()
    factors = {}
    for layer in layers:
        a_vals, a_vecs = torch.linalg.eigh(a_sum[layer.name] / n)
        s_vals, s_vecs = torch.linalg.eigh(s_sum[layer.name] / n)
        factors[layer.name] = LayerFactors(a_vecs, a_vals.clamp_min(0), s_vecs, s_vals.clamp_min(0))
    if method == "ekfac":
        corrected = {layer.name: torch.zeros(layer.out_dim, layer.in_dim, dtype=torch.float64) for layer in layers}
        dtype = next(iter(layer.module.weight.dtype for layer in layers))
        bases = {name: (f.a_vecs.to(device, dtype), f.s_vecs.to(device, dtype)) for name, f in factors.items()}
        for batch in _batches(data, batch_size, device, "EK-FAC eigenvalues", show_progress):
            for name, (a, s) in capture_terms(model, loss_fn, layers, batch).items():
                qa, qs = bases[name]
                g = layer_gradients(a @ qa, s @ qs)
                corrected[name] += g.double().square().sum(0).cpu()
        for name, f in factors.items():
            f.corrected = corrected[name] / n
    names = [p for layer in layers for p in layer.param_names]
    return KroneckerFactors(method, factors, n, weights_fingerprint(layers), names)
