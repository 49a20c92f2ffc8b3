"""Label-free influence functions: score[i, j] = g_test_i · (H + damping·I)^-1 · g_train_j.

g = per-example gradient of the label-free loss w.r.t. the chosen (encoder) parameters, H = Hessian of
the mean loss over ``hessian_data``.  Higher = training example j is a stronger proponent of test i.

Methods
- ``exact``: builds H (P x P, small models only) and solves through its eigendecomposition.
- ``lissa``: the stochastic Neumann recursion, all training vectors iterated together, one sampled
  batch per iteration shared by all:  v <- g + v - (H_t + damping·I) v / scale,  result v / scale.
  Its fixed point is (H + damping·I)^-1 g when 0 < eig(H) + damping < 2·scale.  The original code's
  v <- g + (1 - d) v - H v / s is the same recursion with damping = d·s: its (1e-3, 1000) is damping 1.0.
- ``arnoldi``: top-``arnoldi_rank`` eigenpairs (U, λ) of H from an Arnoldi (Lanczos) run of
  ``arnoldi_iters`` Hessian-vector products on all of ``hessian_data`` (Schioppa et al. 2022):
  (H + damping·I)^-1 ≈ U diag(1/(λ + damping)) Uᵀ + (I - U Uᵀ) / damping.  The second term (on by
  default, ``arnoldi_remainder``) treats the rest of the spectrum as 0 instead of dropping it; for a
  trained network, whose Hessian is a few outliers over a bulk near 0, it is much closer to exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.per_example_grads import (
    DEFAULT_BATCH_SIZE,
    LabelFreeLoss,
    LossFn,
    ParamsArg,
    compute_gradients,
)
from xairepro.utils import make_generator, preserved_state, progress

Method = Literal["exact", "lissa", "arnoldi"]

DEFAULT_METHOD: Method = "lissa"
DEFAULT_DAMPING = 1e-3
DEFAULT_SCALE = 1000.0
DEFAULT_DEPTH = 100
#: Examples per sampled Hessian batch (the original MNIST example-consistency run used 200).
DEFAULT_HESSIAN_BATCH_SIZE = 200
DEFAULT_ARNOLDI_ITERS = 100
DEFAULT_ARNOLDI_RANK = 50
#: Vectors per batched Hessian-vector product (memory only: results do not depend on it).
DEFAULT_CHUNK_SIZE = 32
#: ``exact`` stores a P x P Hessian; above this many parameters use ``lissa`` or ``arnoldi``.
MAX_EXACT_PARAMS = 8192

__all__ = ["InfluenceFunctions", "InfluenceConfig", "SEED003_LISSA", "HessianOperator"]


@dataclasses.dataclass
class InfluenceConfig:
    """Settings of ``InfluenceFunctions`` (the single source of its defaults)."""

    method: str = DEFAULT_METHOD
    damping: float = DEFAULT_DAMPING
    scale: float = DEFAULT_SCALE
    depth: int = DEFAULT_DEPTH
    hessian_batch_size: int | None = DEFAULT_HESSIAN_BATCH_SIZE
    arnoldi_iters: int = DEFAULT_ARNOLDI_ITERS
    arnoldi_rank: int = DEFAULT_ARNOLDI_RANK
    arnoldi_remainder: bool = True
    seed: int | None = 0

    def kwargs(self) -> dict[str, object]:
        return dataclasses.asdict(self)


#: The seed-003 (Label-Free XAI) setting: the original's damp 1e-3 with scale 1000 is damping 1.0 here.
SEED003_LISSA = InfluenceConfig(method="lissa", damping=1.0, scale=1000.0, depth=100, hessian_batch_size=200)


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

    def apply(self, vectors: Tensor, x: Tensor) -> Tensor:
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

    def apply_full(self, vectors: Tensor, data: Tensor, batch_size: int) -> Tensor:
        """V H for H the Hessian of the mean loss over all of ``data`` (summed over data chunks)."""
        total = torch.zeros_like(vectors)
        n = data.shape[0]
        for start in range(0, n, batch_size):
            chunk = data[start:start + batch_size]
            total += self.apply(vectors, chunk) * (chunk.shape[0] / n)
        return total


class InfluenceFunctions:
    """Influence of every training example on every test example's label-free loss.

    ``attribute(x_test, x_train) -> (n_test, n_train)``, score = g_test · (H + damping·I)^-1 · g_train.
    ``hessian_data``: examples H is averaged over (default: ``x_train``).  ``hessian_batch_size``: LiSSA's
    sampled batch (with replacement, seeded); ``None`` uses all of ``hessian_data`` every iteration.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, params: ParamsArg = None, method: Method = DEFAULT_METHOD,
                 damping: float = DEFAULT_DAMPING, scale: float = DEFAULT_SCALE, depth: int = DEFAULT_DEPTH,
                 hessian_data: Tensor | None = None, *,
                 hessian_batch_size: int | None = DEFAULT_HESSIAN_BATCH_SIZE,
                 arnoldi_iters: int = DEFAULT_ARNOLDI_ITERS, arnoldi_rank: int = DEFAULT_ARNOLDI_RANK,
                 arnoldi_remainder: bool = True, seed: int | None = 0, batch_size: int = DEFAULT_BATCH_SIZE, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 show_progress: bool = False) -> None:
        if method not in ("exact", "lissa", "arnoldi"):
            raise UsageError(f"method must be 'exact', 'lissa' or 'arnoldi', got {method!r}")
        if damping < 0:
            raise UsageError(f"damping must be >= 0, got {damping}")
        if scale <= 0:
            raise UsageError(f"scale must be > 0, got {scale}")
        if depth < 1:
            raise UsageError(f"depth must be >= 1, got {depth}")
        if hessian_batch_size is not None and hessian_batch_size < 1:
            raise UsageError(f"hessian_batch_size must be >= 1 or None, got {hessian_batch_size}")
        if arnoldi_iters < 1 or arnoldi_rank < 1:
            raise UsageError(f"arnoldi_iters and arnoldi_rank must be >= 1, got {arnoldi_iters}, {arnoldi_rank}")
        if batch_size < 1 or chunk_size < 1:
            raise UsageError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")
        self.model = model
        self.loss_fn = loss_fn
        self.method = method
        self.damping = float(damping)
        self.scale = float(scale)
        self.depth = int(depth)
        self.hessian_data = hessian_data
        self.hessian_batch_size = hessian_batch_size
        self.arnoldi_iters = int(arnoldi_iters)
        self.arnoldi_rank = int(arnoldi_rank)
        self.arnoldi_remainder = bool(arnoldi_remainder)
        self.seed = seed
        self.batch_size = int(batch_size)
        self.chunk_size = int(chunk_size)
        self.show_progress = show_progress
        self._loss = LabelFreeLoss(model, loss_fn, params)  # validates params now, not at attribute time
        if method == "exact" and self._loss.n_params > MAX_EXACT_PARAMS:
            raise UsageError(f"method='exact' builds a {self._loss.n_params} x {self._loss.n_params} Hessian; "
                             f"that is above {MAX_EXACT_PARAMS} parameters: use method='lissa' or 'arnoldi'")

    @classmethod
    def from_config(cls, model: nn.Module, loss_fn: LossFn, params: ParamsArg, config: InfluenceConfig,
                    hessian_data: Tensor | None = None, **kwargs: object) -> InfluenceFunctions:
        return cls(model, loss_fn, params, hessian_data=hessian_data, **config.kwargs(), **kwargs)  # type: ignore[arg-type]

    # -- public ---------------------------------------------------------------------------------------
    def attribute(self, x_test: Tensor, x_train: Tensor) -> Tensor:
        """Scores (n_test, n_train), on ``x_test``'s device."""
        _check_examples(x_test, "x_test")
        _check_examples(x_train, "x_train")
        loss = LabelFreeLoss(self.model, self.loss_fn, self._loss.names)  # current weights
        with preserved_state(self.model, eval_mode=True):
            hdata = self._hessian_data(x_train, loss)
            g_train = self._grads(loss, x_train)
            g_test = self._grads(loss, x_test)
            if self.method == "exact":
                scores = self._exact(loss, g_test, g_train, hdata)
            elif self.method == "lissa":
                scores = g_test @ self._lissa(loss, g_train, hdata).T
            else:
                scores = self._arnoldi(loss, g_test, g_train, hdata)
        return scores.to(device=x_test.device, dtype=g_test.dtype)

    def inverse_hvp(self, vectors: Tensor, hessian_data: Tensor | None = None) -> Tensor:
        """LiSSA estimate of (H + damping·I)^-1 v for each row of ``vectors`` (n, P)."""
        loss = LabelFreeLoss(self.model, self.loss_fn, self._loss.names)
        if vectors.dim() != 2 or vectors.shape[1] != loss.n_params:
            raise UsageError(f"vectors must have shape (n, {loss.n_params}), got {tuple(vectors.shape)}")
        data = hessian_data if hessian_data is not None else self.hessian_data
        if data is None:
            raise UsageError("inverse_hvp needs hessian_data (here or in the constructor)")
        with preserved_state(self.model, eval_mode=True):
            return self._lissa(loss, vectors.to(loss.device), self._hessian_data(data, loss)).to(vectors.device)

    # -- pieces ---------------------------------------------------------------------------------------
    def _hessian_data(self, x_train: Tensor, loss: LabelFreeLoss) -> Tensor:
        data = self.hessian_data if self.hessian_data is not None else x_train
        _check_examples(data, "hessian_data")
        return data.to(loss.device)

    def _grads(self, loss: LabelFreeLoss, x: Tensor) -> Tensor:
        return compute_gradients(loss, x, batch_size=self.batch_size, show_progress=self.show_progress)

    def _exact(self, loss: LabelFreeLoss, g_test: Tensor, g_train: Tensor, data: Tensor) -> Tensor:
        op = HessianOperator(loss, self.chunk_size)
        eye = torch.eye(loss.n_params, dtype=g_train.dtype, device=g_train.device)
        hessian = op.apply_full(eye, data, self.batch_size).double()
        hessian = (hessian + hessian.T) / 2
        eigvals, eigvecs = torch.linalg.eigh(hessian)
        return _eigen_scores(g_test, g_train, eigvals, eigvecs, self.damping)

    def _lissa(self, loss: LabelFreeLoss, g: Tensor, data: Tensor) -> Tensor:
        op = HessianOperator(loss, self.chunk_size)
        v = g.clone()
        for batch in progress(self._sampled_batches(data), enabled=self.show_progress, total=self.depth,
                              desc="LiSSA"):
            hv = op.apply(v, batch)
            v = g + v - (hv + self.damping * v) / self.scale
        return v / self.scale

    def _sampled_batches(self, data: Tensor) -> Iterator[Tensor]:
        """``depth`` batches drawn with replacement (seeded), or all of ``data`` when batch size is None."""
        gen = make_generator(self.seed, "cpu")
        n = data.shape[0]
        for _ in range(self.depth):
            if self.hessian_batch_size is None:
                yield data
            else:
                idx = torch.randint(n, (self.hessian_batch_size,), generator=gen)
                yield data[idx.to(data.device)]

    def _arnoldi(self, loss: LabelFreeLoss, g_test: Tensor, g_train: Tensor, data: Tensor) -> Tensor:
        eigvals, eigvecs = arnoldi_eigenpairs(
            lambda v: HessianOperator(loss, self.chunk_size).apply_full(v[None], data, self.batch_size)[0],
            loss.n_params, self.arnoldi_iters, self.arnoldi_rank, seed=self.seed,
            device=g_train.device, dtype=g_train.dtype)
        scores = _eigen_scores(g_test, g_train, eigvals, eigvecs, self.damping)
        if self.arnoldi_remainder and self.damping > 0:
            a, b = g_test.double() @ eigvecs, g_train.double() @ eigvecs
            scores += (g_test.double() @ g_train.double().T - a @ b.T) / self.damping
        return scores


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


def _eigen_scores(g_test: Tensor, g_train: Tensor, eigvals: Tensor, eigvecs: Tensor, damping: float) -> Tensor:
    """g_test U diag(1 / (λ + damping)) Uᵀ g_trainᵀ in float64."""
    shifted = eigvals + damping
    tol = eigvecs.shape[0] * torch.finfo(g_train.dtype).eps * eigvals.abs().max().clamp_min(1e-30)
    if (shifted.abs() <= tol).any():
        raise UsageError(f"H + damping I is singular (damping = {damping}); use a larger damping")
    a = g_test.double() @ eigvecs
    b = g_train.double() @ eigvecs
    return (a / shifted) @ b.T


def _check_examples(x: Tensor, what: str) -> None:
    if not isinstance(x, Tensor):
        raise UsageError(f"{what} must be a tensor of examples (N, ...), got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise UsageError(f"{what} has no examples (shape {tuple(x.shape)}); n must be >= 1")
