"""Influence functions: score[i, j] = g_test_i · (C + damping·I)^-1 · g_train_j.

g = per-example gradient of the loss w.r.t. the chosen parameters (the encoder's, label-free), C = the
curvature of the mean loss over ``hessian_data``: its Hessian H, or its empirical Fisher
F = (1/n) sum_n g_n g_nᵀ.  Sign and scale (every method): a positive score means training example j is
a proponent of test example i: leaving j out raises test i's loss, by ≈ score / n for a model trained
to a minimum of (1/n) sum loss + (damping/2)·||θ||² over the n examples C averages (exact in the limit
for a convex model with C = H; docs/decisions.md).  Koh & Liang's I_up,loss is -score.

Methods (curvature)
- ``exact`` (H, or F with ``curvature="fisher"``): eigendecomposition of H (P x P, small models only), or
  the exact eigenpairs of F through the smaller of its P x P and n x n Gram forms (any P, n moderate).
- ``lissa`` (H): the stochastic Neumann recursion, all training vectors iterated together, one sampled
  batch per iteration shared by all:  v <- g + v - (H_t + damping·I) v / scale,  result v / scale.
  Its fixed point is (H + damping·I)^-1 g when 0 < eig(H) + damping < 2·scale.  The original code's
  v <- g + (1 - d) v - H v / s is the same recursion with damping = d·s: its (1e-3, 1000) is damping 1.0.
- ``arnoldi`` (H): top-``arnoldi_rank`` eigenpairs (U, λ) of H from ``arnoldi_iters`` Hessian-vector
  products on all of ``hessian_data`` (Schioppa et al. 2022), with the rest of the spectrum taken as 0
  (``arnoldi_remainder``): (H + damping·I)^-1 ≈ U diag(1/(λ + damping)) Uᵀ + (I - U Uᵀ) / damping.
- ``kfac`` / ``ekfac`` (F): Kronecker-factored F of the ``nn.Linear`` and ``nn.Conv2d`` layers among the
  chosen parameters (a layer is tracked when its weight is chosen; every other chosen parameter,
  e.g. BatchNorm's, is ignored: see ``ignored_params``), block-diagonal over layers; EK-FAC corrects the
  eigenvalues.  Factors are fitted on ``hessian_data`` at the first ``attribute`` (or by
  ``fit_factors``), reused afterwards, and can be saved and loaded.  ``xairepro.explain.ekfac``.
- ``projected`` (F seen through a seeded random projection to ``projection_dim``): TRAK-style
  Gauss-Newton solve in the projected space.  ``xairepro.explain.projected``.

Examples are a tensor (label-free: ``loss_fn(model, x)``) or a tuple ``(x, y)`` (supervised:
``loss_fn(model, (x, y))``).  ``attribute_to_file`` writes the score matrix block by block to a ``.npy``
file (EK-FAC and projected never hold all training gradients nor all scores in memory).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.block_files import BlockFile
from xairepro.explain.examples import Examples, check_examples, count, device_of, fingerprint, take, to_device
from xairepro.explain.hessian import (
    DEFAULT_CHUNK_SIZE, HessianOperator, Spectrum, arnoldi_eigenpairs, fisher_spectrum,
)
from xairepro.explain.per_example_grads import (
    DEFAULT_BATCH_SIZE,
    LabelFreeLoss,
    LossFn,
    ParamsArg,
    compute_gradients,
)
from xairepro.explain.projection import ProjectionKind
from xairepro.utils import make_generator, preserved_state, progress

Method = Literal["exact", "lissa", "arnoldi", "kfac", "ekfac", "projected"]
Curvature = Literal["hessian", "fisher"]

METHODS: tuple[str, ...] = ("exact", "lissa", "arnoldi", "kfac", "ekfac", "projected")
#: The curvatures each method can use (the first is its default).
CURVATURES: dict[str, tuple[str, ...]] = {
    "exact": ("hessian", "fisher"), "lissa": ("hessian",), "arnoldi": ("hessian",),
    "kfac": ("fisher",), "ekfac": ("fisher",), "projected": ("fisher",),
}
DEFAULT_METHOD: Method = "lissa"
DEFAULT_DAMPING = 1e-3
DEFAULT_SCALE = 1000.0
DEFAULT_DEPTH = 100
#: Examples per sampled Hessian batch (the original MNIST example-consistency run used 200).
DEFAULT_HESSIAN_BATCH_SIZE = 200
DEFAULT_ARNOLDI_ITERS = 100
DEFAULT_ARNOLDI_RANK = 50
DEFAULT_PROJECTION_DIM = 1024
#: ``exact`` stores a P x P Hessian; above this many parameters use another method.  The exact Fisher
#: needs min(P, n_hessian) below it instead.
MAX_EXACT_PARAMS = 8192

__all__ = ["InfluenceFunctions", "InfluenceConfig", "SEED003_LISSA", "HessianOperator", "arnoldi_eigenpairs",
           "METHODS", "CURVATURES"]


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
    curvature: str | None = None
    query_rank: int | None = None
    projection_dim: int = DEFAULT_PROJECTION_DIM
    projection: str = "rademacher"
    seed: int | None = 0

    def kwargs(self) -> dict[str, object]:
        return dataclasses.asdict(self)


#: The seed-003 (Label-Free XAI) setting: the original's damp 1e-3 with scale 1000 is damping 1.0 here.
SEED003_LISSA = InfluenceConfig(method="lissa", damping=1.0, scale=1000.0, depth=100, hessian_batch_size=200)


class InfluenceFunctions:
    """Influence of every training example on every test example's loss (see the module docstring).

    ``attribute(x_test, x_train) -> (n_test, n_train)``; ``self_influence(x) -> (n,)`` = score of each
    example on itself; ``attribute_to_file(x_test, x_train, path)`` writes the scores block by block.
    ``hessian_data``: examples C is averaged over (default: ``x_train``).  ``hessian_batch_size``: LiSSA's
    sampled batch (with replacement, seeded); ``None`` uses all of ``hessian_data`` every iteration.
    ``curvature``: ``"hessian"`` or ``"fisher"`` where the method offers both (``exact``); ``None``: the
    method's own.  ``query_rank``: EK-FAC / K-FAC low-rank test gradients (``None``: exact).
    ``projection_dim``, ``projection`` (``gaussian`` / ``rademacher``): the ``projected`` method's sketch.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, params: ParamsArg = None, method: Method = DEFAULT_METHOD,
                 damping: float = DEFAULT_DAMPING, scale: float = DEFAULT_SCALE, depth: int = DEFAULT_DEPTH,
                 hessian_data: Examples | None = None, *,
                 hessian_batch_size: int | None = DEFAULT_HESSIAN_BATCH_SIZE,
                 arnoldi_iters: int = DEFAULT_ARNOLDI_ITERS, arnoldi_rank: int = DEFAULT_ARNOLDI_RANK,
                 arnoldi_remainder: bool = True, curvature: Curvature | None = None, query_rank: int | None = None,
                 projection_dim: int = DEFAULT_PROJECTION_DIM, projection: ProjectionKind = "rademacher",
                 seed: int | None = 0, batch_size: int = DEFAULT_BATCH_SIZE, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 show_progress: bool = False) -> None:
        if method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(repr(m) for m in METHODS)}, got {method!r}")
        if curvature is not None and curvature not in CURVATURES[method]:
            raise UsageError(f"method={method!r} uses curvature {' or '.join(CURVATURES[method])}, not {curvature!r}")
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
        if hessian_data is not None:
            check_examples(hessian_data, "hessian_data")
        self.model = model
        self.loss_fn = loss_fn
        self.method = method
        self.curvature = curvature or CURVATURES[method][0]
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
        if method == "exact" and self.curvature == "hessian" and self._loss.n_params > MAX_EXACT_PARAMS:
            raise UsageError(f"method='exact' builds a {self._loss.n_params} x {self._loss.n_params} Hessian; "
                             f"that is above {MAX_EXACT_PARAMS} parameters: use method='lissa', 'arnoldi' or "
                             "'ekfac', or curvature='fisher'")
        self._backend = None
        if method in ("kfac", "ekfac"):
            from xairepro.explain.ekfac import KroneckerInfluence

            self._backend = KroneckerInfluence(model, loss_fn, self._loss.names, method, damping,
                                               query_rank=query_rank, batch_size=batch_size,
                                               show_progress=show_progress)
        elif method == "projected":
            from xairepro.explain.projected import ProjectedInfluence

            self._backend = ProjectedInfluence(model, loss_fn, self._loss.names, damping, dim=projection_dim,
                                               projection=projection, seed=seed, batch_size=batch_size,
                                               show_progress=show_progress)

    @classmethod
    def from_config(cls, model: nn.Module, loss_fn: LossFn, params: ParamsArg, config: InfluenceConfig,
                    hessian_data: Examples | None = None, **kwargs: object) -> InfluenceFunctions:
        options = {**config.kwargs(), **kwargs}
        return cls(model, loss_fn, params, hessian_data=hessian_data, **options)  # type: ignore[arg-type]

    @property
    def ignored_params(self) -> list[str]:
        """Chosen parameters that ``kfac`` / ``ekfac`` leave out (not the weight or bias of a tracked layer)."""
        return list(self._backend.ignored) if self.method in ("kfac", "ekfac") else []

    @property
    def param_names(self) -> list[str]:
        """The parameters the scores are taken for (for ``kfac`` / ``ekfac``: the tracked layers')."""
        return self._backend.param_names if self.method in ("kfac", "ekfac") else list(self._loss.names)

    # -- public ---------------------------------------------------------------------------------------
    def attribute(self, x_test: Examples, x_train: Examples) -> Tensor:
        """Scores (n_test, n_train), on ``x_test``'s device."""
        check_examples(x_test, "x_test")
        check_examples(x_train, "x_train")
        device = device_of(x_test)
        with preserved_state(self.model, eval_mode=True):
            if self.method in ("kfac", "ekfac"):
                self._ensure_factors(x_train)
                return self._backend.scores(x_test, x_train).to(device)
            if self.method == "projected":
                return self._backend.scores(x_test, x_train, self.hessian_data).to(device)
            loss = LabelFreeLoss(self.model, self.loss_fn, self._loss.names)  # current weights
            hdata = self._hessian_data(x_train, loss)
            g_train = self._grads(loss, x_train)
            g_test = self._grads(loss, x_test)
            if self.method == "lissa":
                scores = g_test @ self._lissa(loss, g_train, hdata).T
            else:
                scores = self._spectrum(loss, hdata).scores(g_test, g_train, self.damping)
        return scores.to(device=device, dtype=g_test.dtype)

    def self_influence(self, x: Examples) -> Tensor:
        """score(x_n, x_n) for every example (n,): how much each example supports its own loss.

        Large self-influence flags examples the model fits only by memorising them (mislabelled or
        corrupted ones).  The curvature is averaged over ``hessian_data`` (default: ``x``).
        """
        check_examples(x, "x")
        device = device_of(x)
        with preserved_state(self.model, eval_mode=True):
            if self.method in ("kfac", "ekfac"):
                self._ensure_factors(x)
                return self._backend.self_scores(x).to(device)
            if self.method == "projected":
                return self._backend.self_scores(x, self.hessian_data).to(device)
            loss = LabelFreeLoss(self.model, self.loss_fn, self._loss.names)
            hdata = self._hessian_data(x, loss)
            g = self._grads(loss, x)
            if self.method == "lissa":
                out = (g * self._lissa(loss, g, hdata)).sum(1)
            else:
                out = self._spectrum(loss, hdata).self_scores(g, self.damping)
        return out.to(device=device, dtype=g.dtype)

    def attribute_to_file(self, x_test: Examples, x_train: Examples, path: str | os.PathLike[str], *,
                          train_block: int = 1024, test_block: int | None = None,
                          store_dir: str | os.PathLike[str] | None = None) -> Path:
        """Scores (n_test, n_train) written to the ``.npy`` file ``path`` (float32), atomically.

        ``kfac`` / ``ekfac``: training examples stream in blocks of ``train_block``, test examples are held
        ``test_block`` at a time (``None``: all); an interrupted run resumes.  ``projected``: projected
        gradients go to stores in ``store_dir`` (``None``: a temporary folder).  Other methods compute the
        scores in memory first.  Read with ``numpy.load(path, mmap_mode="r")``.
        """
        check_examples(x_test, "x_test")
        check_examples(x_train, "x_train")
        with preserved_state(self.model, eval_mode=True):
            if self.method in ("kfac", "ekfac"):
                self._ensure_factors(x_train)
                return self._backend.scores_to_file(x_test, x_train, path, train_block=train_block,
                                                    test_block=test_block)
            if self.method == "projected":
                return self._backend.scores_to_file(x_test, x_train, self.hessian_data, path, store_dir=store_dir,
                                                    train_block=train_block)
        scores = self.attribute(x_test, x_train)
        out = BlockFile(path, tuple(scores.shape), key=fingerprint(scores))
        out.write(0, scores)
        return out.finish()

    # -- K-FAC / EK-FAC factors -----------------------------------------------------------------------
    def fit_factors(self, hessian_data: Examples | None = None):
        """Fit the K-FAC / EK-FAC factors on ``hessian_data`` (or the constructor's); returns them."""
        backend = self._kronecker("fit_factors")
        data = hessian_data if hessian_data is not None else self.hessian_data
        if data is None:
            raise UsageError("fit_factors needs hessian_data (here or in the constructor)")
        with preserved_state(self.model, eval_mode=True):
            return backend.fit(data)

    def save_factors(self, path: str | os.PathLike[str]) -> Path:
        backend = self._kronecker("save_factors")
        if backend.factors is None:
            raise UsageError("no factors to save: call fit_factors (or attribute) first")
        return backend.factors.save(path)

    def load_factors(self, path: str | os.PathLike[str]):
        """Load factors saved by ``save_factors``; they must belong to this model's current weights."""
        from xairepro.explain.kronecker_factors import KroneckerFactors

        backend = self._kronecker("load_factors")
        factors = KroneckerFactors.load(path)
        backend.factors = factors
        backend.checked_factors()
        return factors

    def _kronecker(self, what: str):
        if self.method not in ("kfac", "ekfac"):
            raise UsageError(f"{what} is for method='kfac' or 'ekfac', not {self.method!r}")
        return self._backend

    def _ensure_factors(self, x_train: Examples) -> None:
        if self._backend.factors is None:
            self._backend.fit(self.hessian_data if self.hessian_data is not None else x_train)

    # -- LiSSA ----------------------------------------------------------------------------------------
    def inverse_hvp(self, vectors: Tensor, hessian_data: Examples | None = None) -> Tensor:
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
    def _hessian_data(self, x_train: Examples, loss: LabelFreeLoss) -> Examples:
        data = self.hessian_data if self.hessian_data is not None else x_train
        check_examples(data, "hessian_data")
        return to_device(data, loss.device)

    def _grads(self, loss: LabelFreeLoss, x: Examples) -> Tensor:
        return compute_gradients(loss, x, batch_size=self.batch_size, show_progress=self.show_progress
                                 ).to(loss.device)

    def _spectrum(self, loss: LabelFreeLoss, data: Examples) -> Spectrum:
        """Eigenpairs of the curvature for ``exact`` (H or F) and ``arnoldi``."""
        op = HessianOperator(loss, self.chunk_size)
        if self.method == "arnoldi":
            vals, vecs = arnoldi_eigenpairs(
                lambda v: op.apply_full(v[None], data, self.batch_size)[0], loss.n_params, self.arnoldi_iters,
                self.arnoldi_rank, seed=self.seed, device=loss.device, dtype=loss.point()[loss.names[0]].dtype)
            return Spectrum(vals, vecs, remainder=self.arnoldi_remainder and self.damping > 0)
        if self.curvature == "fisher":
            if min(loss.n_params, count(data)) > MAX_EXACT_PARAMS:
                raise UsageError(f"the exact Fisher needs min(parameters, hessian_data examples) <= "
                                 f"{MAX_EXACT_PARAMS}; got {loss.n_params} and {count(data)}")
            return fisher_spectrum(self._grads(loss, data))
        dtype = loss.point()[loss.names[0]].dtype
        eye = torch.eye(loss.n_params, dtype=dtype, device=loss.device)
        hessian = op.apply_full(eye, data, self.batch_size).double()
        vals, vecs = torch.linalg.eigh((hessian + hessian.T) / 2)
        return Spectrum(vals, vecs)

    def _lissa(self, loss: LabelFreeLoss, g: Tensor, data: Examples) -> Tensor:
        op = HessianOperator(loss, self.chunk_size)
        v = g.clone()
        for batch in progress(self._sampled_batches(data), enabled=self.show_progress, total=self.depth,
                              desc="LiSSA"):
            hv = op.apply(v, batch)
            v = g + v - (hv + self.damping * v) / self.scale
        return v / self.scale

    def _sampled_batches(self, data: Examples) -> Iterator[Examples]:
        """``depth`` batches drawn with replacement (seeded), or all of ``data`` when batch size is None."""
        gen = make_generator(self.seed, "cpu")
        n = count(data)
        for _ in range(self.depth):
            if self.hessian_batch_size is None:
                yield data
            else:
                yield take(data, torch.randint(n, (self.hessian_batch_size,), generator=gen))

