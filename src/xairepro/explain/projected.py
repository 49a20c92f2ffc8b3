"""Influence in a random projection (TRAK-style): ``InfluenceFunctions(method="projected")``.

    φ = g R (k,),   C = (1/n_h) Φ_hᵀ Φ_h + λI (k x k),   score[i, j] = φ_i C^-1 φ_jᵀ

R is the seeded projection of ``xairepro.explain.projection``; Φ_h are the projected per-example
gradients of ``hessian_data``, so C is the empirical Fisher (the Gauss-Newton matrix of the per-example
losses' outer products) seen through R, and the solve is a k x k Cholesky in float64 (Park et al. 2023
use the same Gauss-Newton solve on projected gradients of the model output).  With k = P and an
invertible R, scores equal exact influence with the empirical Fisher for λ = 0.
``scores_to_file`` keeps the projected gradients in stores on disk (``GradientStore``) and writes the
score matrix block by block.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.examples import Examples, fingerprint
from xairepro.explain.gradient_store import DEFAULT_BLOCK_SIZE, GradientStore, score_against_stores
from xairepro.explain.per_example_grads import LabelFreeLoss, LossFn, compute_gradients
from xairepro.explain.projection import ProjectionKind, Projector

__all__ = ["ProjectedInfluence"]


class ProjectedInfluence:
    """The projected back end of ``InfluenceFunctions`` (see the module docstring)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, names: list[str], damping: float, *, dim: int,
                 projection: ProjectionKind, seed: int | None, batch_size: int, show_progress: bool = False) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.names = names
        self.damping = float(damping)
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        n_params = LabelFreeLoss(model, loss_fn, names).n_params
        self.projector = Projector(n_params, dim, projection, seed)

    def _features(self, x: Examples) -> Tensor:
        loss = LabelFreeLoss(self.model, self.loss_fn, self.names)
        return compute_gradients(loss, x, batch_size=self.batch_size, projection=self.projector,
                                 show_progress=self.show_progress).to(loss.device)

    def _factor(self, gram: Tensor, n: int) -> Tensor:
        """Cholesky factor of C = gram / n + λI (float64)."""
        c = gram.double() / n + self.damping * torch.eye(gram.shape[0], dtype=torch.float64, device=gram.device)
        chol, info = torch.linalg.cholesky_ex(c)
        if int(info) != 0:
            raise UsageError(f"the projected curvature + damping I is singular (damping = {self.damping}, "
                             f"k = {gram.shape[0]}, {n} examples); use a damping > 0")
        return chol

    def _precondition(self, phi: Tensor, chol: Tensor) -> Tensor:
        return torch.cholesky_solve(phi.double().T, chol).T

    def scores(self, x_test: Examples, x_train: Examples, hessian_data: Examples | None = None) -> Tensor:
        """Scores (n_test, n_train); ``hessian_data`` None: the curvature of ``x_train``."""
        phi_train = self._features(x_train)
        phi_h = phi_train if hessian_data is None else self._features(hessian_data)
        chol = self._factor(phi_h.T.double() @ phi_h.double(), phi_h.shape[0])
        psi = self._precondition(self._features(x_test), chol)
        return (psi @ phi_train.double().T).to(phi_train.dtype)

    def self_scores(self, x: Examples, hessian_data: Examples | None = None) -> Tensor:
        phi = self._features(x)
        phi_h = phi if hessian_data is None else self._features(hessian_data)
        chol = self._factor(phi_h.T.double() @ phi_h.double(), phi_h.shape[0])
        return (self._precondition(phi, chol) * phi.double()).sum(1).to(phi.dtype)

    def scores_to_file(self, x_test: Examples, x_train: Examples, hessian_data: Examples | None,
                       path: str | os.PathLike[str], *, store_dir: str | os.PathLike[str] | None = None,
                       train_block: int = DEFAULT_BLOCK_SIZE) -> Path:
        """Stores for the training (and Hessian) examples on disk, scores written block by block.

        ``store_dir``: where the stores go (kept, and reused by a later call with the same inputs);
        ``None``: a temporary folder beside ``path``, removed afterwards.
        """
        path = Path(path)
        if store_dir is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".stores-") as tmp:
                return self.scores_to_file(x_test, x_train, hessian_data, path, store_dir=tmp,
                                           train_block=train_block)
        store_dir = Path(store_dir)
        kw = dict(projector=self.projector, batch_size=self.batch_size, show_progress=self.show_progress)
        train = GradientStore.build(store_dir / "train", self.model, self.loss_fn, x_train, self.names, **kw)
        hess = train if hessian_data is None else GradientStore.build(
            store_dir / "hessian", self.model, self.loss_fn, hessian_data, self.names, **kw)
        chol = self._factor(hess.gram(), hess.n)
        psi = self._precondition(self._features(x_test).cpu(), chol).float()
        key = json.dumps({"store": train.meta, "hessian": hess.meta, "damping": self.damping,
                          "test": fingerprint(x_test)}, sort_keys=True)
        return score_against_stores(path, psi, [train], key=key, train_block=train_block,
                                    show_progress=self.show_progress)
