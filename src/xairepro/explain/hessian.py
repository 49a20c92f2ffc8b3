"""Curvature pieces of influence functions: Hessian-vector products, Arnoldi, and spectral inverses.

- ``HessianOperator``: products V H of many vectors with the Hessian of the mean loss of a batch.
- ``arnoldi_eigenpairs``: top eigenpairs of a symmetric operator from Arnoldi (Lanczos) steps.
- ``Spectrum``: (C + λI)^-1 from eigenpairs (U, μ) of a curvature C, either complete or with the rest of
  the spectrum taken as 0:  (C + λI)^-1 ≈ U diag(1/(μ + λ)) Uᵀ + (I - U Uᵀ) / λ  (``remainder``).
- ``fisher_spectrum``: the exact eigenpairs of the empirical Fisher F = (1/n) Gᵀ G of per-example
  gradients G (n, P), through the smaller of Gᵀ G (P x P) and G Gᵀ (n x n); in the second case F is 0 on
  the rest of the space, so its inverse is exact with the remainder term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.examples import Examples, count, take
from xairepro.explain.per_example_grads import LabelFreeLoss
from xairepro.utils import make_generator

#: Vectors per batched Hessian-vector product (memory only: results do not depend on it).
DEFAULT_CHUNK_SIZE = 32

__all__ = ["HessianOperator", "arnoldi_eigenpairs", "Spectrum", "fisher_spectrum", "DEFAULT_CHUNK_SIZE"]


class HessianOperator:
    """Products of the Hessian of the mean label-free loss with many vectors at once.

    ``apply(V, x)`` returns V H_x for V (n, P), H_x the Hessian of mean_b loss(x_b): the loss and its
    gradient graph are built once per batch ``x`` and shared by all n vectors; each vector then costs one
    double backward.  ``batched``: run the double backwards for ``chunk_size`` vectors at once (vmap);
    default: batched unless the model has convolutions or RNNs, whose double-backward batching rules
    loop internally and are slower than a plain loop (measured on CPU, see docs/benchmarks.md).
    """

    def __init__(self, loss: LabelFreeLoss, chunk_size: int = DEFAULT_CHUNK_SIZE, batched: bool | None = None) -> None:
        self.loss = loss
        self.chunk_size = chunk_size
        if batched is None:
            slow = (nn.modules.conv._ConvNd, nn.RNNBase)
            batched = not any(isinstance(m, slow) for m in loss.model.modules())
        self._batched = batched

    def apply(self, vectors: Tensor, x: Examples) -> Tensor:
        leaves = [t.clone().requires_grad_(True) for t in self.loss.point().values()]
        with torch.enable_grad():
            mean_loss = self.loss.losses(dict(zip(self.loss.names, leaves)), x).mean()
            grads = torch.autograd.grad(mean_loss, leaves, create_graph=True, allow_unused=True,
                                        materialize_grads=True)
            flat_grad = torch.cat([g.reshape(-1) for g in grads])
            if not flat_grad.requires_grad:  # loss linear in the parameters: H = 0
                return torch.zeros_like(vectors)
            out = [self._chunk(flat_grad, leaves, vectors[i:i + self.chunk_size])
                   for i in range(0, vectors.shape[0], self.chunk_size)]
        return torch.cat(out)

    def _chunk(self, flat_grad: Tensor, leaves: list[Tensor], v: Tensor) -> Tensor:
        if self._batched:
            try:
                hv = torch.autograd.grad(flat_grad, leaves, grad_outputs=v, is_grads_batched=True,
                                         retain_graph=True, allow_unused=True, materialize_grads=True)
                return torch.cat([h.reshape(v.shape[0], -1) for h in hv], dim=1).detach()
            except (RuntimeError, NotImplementedError):
                self._batched = False  # no batching rule for a double-backward op: one vector at a time
        rows = []
        for row in v:
            hv = torch.autograd.grad(flat_grad, leaves, grad_outputs=row, retain_graph=True,
                                     allow_unused=True, materialize_grads=True)
            rows.append(torch.cat([h.reshape(-1) for h in hv]).detach())
        return torch.stack(rows)

    def apply_full(self, vectors: Tensor, data: Examples, batch_size: int) -> Tensor:
        """V H for H the Hessian of the mean loss over all of ``data`` (summed over data chunks)."""
        total = torch.zeros_like(vectors)
        n = count(data)
        for start in range(0, n, batch_size):
            chunk = take(data, slice(start, start + batch_size))
            total += self.apply(vectors, chunk) * (count(chunk) / n)
        return total



def arnoldi_eigenpairs(matvec, n_params: int, n_iters: int, rank: int, *, seed: int | None = 0,
                       device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Top-``rank`` (by magnitude) eigenpairs of a symmetric operator from ``n_iters`` Arnoldi steps.

    Full re-orthogonalisation (Gram-Schmidt twice); returns eigenvalues (k,) and eigenvectors (P, k),
    k = min(rank, Krylov dimension reached), in float64.
    """
    gen = make_generator(seed, "cpu")
    n_iters = min(n_iters, n_params)
    basis = torch.zeros(n_iters + 1, n_params, dtype=torch.float64, device=device)
    proj = torch.zeros(n_iters + 1, n_iters, dtype=torch.float64, device=device)
    start = torch.randn(n_params, generator=gen, dtype=torch.float64).to(device)
    basis[0] = start / start.norm()
    steps = n_iters
    for k in range(n_iters):
        w = matvec(basis[k].to(dtype)).double()
        for _ in range(2):
            coeff = basis[:k + 1] @ w
            w = w - coeff @ basis[:k + 1]
            proj[:k + 1, k] += coeff
        norm = w.norm()
        proj[k + 1, k] = norm
        if norm <= 1e-10 * proj[:k + 1, k].abs().max().clamp_min(1e-30):  # invariant subspace found
            steps = k + 1
            break
        basis[k + 1] = w / norm
    small = proj[:steps, :steps]
    small = (small + small.T) / 2
    vals, vecs = torch.linalg.eigh(small)
    order = vals.abs().argsort(descending=True)[:rank]
    return vals[order], basis[:steps].T @ vecs[:, order]



@dataclass
class Spectrum:
    """(C + λI)^-1 from eigenvalues ``vals`` (k,) and orthonormal eigenvectors ``vecs`` (P, k) of C (float64).

    ``remainder``: C is taken as 0 on the complement of the eigenvectors, adding (I - U Uᵀ) / λ.
    """

    vals: Tensor
    vecs: Tensor
    remainder: bool = False

    def _shifted(self, damping: float, dtype: torch.dtype) -> Tensor:
        shifted = self.vals + damping
        tol = self.vecs.shape[0] * torch.finfo(dtype).eps * self.vals.abs().max().clamp_min(1e-30)
        if (shifted.abs() <= tol).any() or (self.remainder and damping <= 0):
            raise UsageError(f"the curvature + damping I is singular (damping = {damping}); use a larger damping")
        return shifted

    def scores(self, g_test: Tensor, g_train: Tensor, damping: float) -> Tensor:
        """g_test (C + λI)^-1 g_trainᵀ (n_test, n_train) in float64."""
        shifted = self._shifted(damping, g_train.dtype)
        a, b = g_test.double() @ self.vecs, g_train.double() @ self.vecs
        out = (a / shifted) @ b.T
        if self.remainder:
            out += (g_test.double() @ g_train.double().T - a @ b.T) / damping
        return out

    def self_scores(self, g: Tensor, damping: float) -> Tensor:
        """g_n (C + λI)^-1 g_nᵀ for every row (n,) in float64."""
        shifted = self._shifted(damping, g.dtype)
        a = g.double() @ self.vecs
        out = (a.square() / shifted).sum(1)
        if self.remainder:
            out += (g.double().square().sum(1) - a.square().sum(1)) / damping
        return out


def fisher_spectrum(g: Tensor) -> Spectrum:
    """Exact eigenpairs of F = (1/n) Gᵀ G for per-example gradients G (n, P) (see the module docstring)."""
    n, p = g.shape
    g = g.double()
    if p <= n:
        vals, vecs = torch.linalg.eigh(g.T @ g / n)
        return Spectrum(vals.clamp_min(0), vecs, remainder=False)
    vals, vecs = torch.linalg.eigh(g @ g.T / n)
    keep = vals > vals.abs().max().clamp_min(1e-300) * n * torch.finfo(torch.float64).eps
    vals, vecs = vals[keep], vecs[:, keep]
    return Spectrum(vals, (g.T @ vecs) / (n * vals).sqrt(), remainder=True)
