"""Influence through Kronecker-factored curvature (K-FAC, EK-FAC): ``InfluenceFunctions(method="ekfac")``.

    score[i, j] = sum_l < (Q_Sᵀ G_i Q_A) / (Λ + λ),  Q_Sᵀ G_j Q_A >        (per tracked layer l)

= g_iᵀ (F + λI)^-1 g_j with F the block-diagonal (EK-)FAC approximation of the empirical Fisher
(``xairepro.explain.kronecker_factors``).  Test examples are preconditioned once and kept (per layer
(n_test, out, in'), or rank-``query_rank`` factors of it); training examples stream past in blocks, each
block's per-example layer terms coming from one forward and one backward, so neither the training
gradients nor (with ``scores_to_file``) the score matrix have to fit in memory.

``query_rank=r``: each preconditioned test matrix M_i (out, in') is replaced by a rank-r
approximation on the layers where that is cheaper: a training example's score term is then
sum_r sum_t (u_r·s_t)(v_r·a_t), which costs r·T·(out + in') instead of out·in' per pair.  On a layer
applied once per example (T = 1, e.g. a linear layer on (B, d) inputs) the test gradient is s aᵀ, so
M_i = diag(ŝ_i) W diag(â_i) with W = 1 / (Λ + λ) and M_i has the rank of W: the rank-r SVD of W (one
per layer) gives every M_i at once.  Otherwise each M_i is truncated by its own SVD (as Kronfluence's
query low-rank option).  ``None``: exact (dense) on every layer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.block_files import BlockFile
from xairepro.explain.examples import Examples, check_examples, count, fingerprint, take, to_device
from xairepro.explain.kronecker_factors import (
    KroneckerFactors, KroneckerMethod, fit_kronecker_factors, weights_fingerprint,
)
from xairepro.explain.layer_capture import TrackedLayer, capture_terms, layer_gradients, tracked_layers
from xairepro.explain.per_example_grads import LossFn
from xairepro.utils import model_device, progress

#: Training examples per scored block (one forward + backward each).
DEFAULT_TRAIN_BLOCK = 1024
#: Elements of the largest temporary of the low-rank product (memory only).
_LOW_RANK_ELEMENTS = 1 << 23

__all__ = ["KroneckerInfluence", "DEFAULT_TRAIN_BLOCK"]


@dataclass
class _Query:
    """Preconditioned test gradients of one layer: dense (n, out·in') or low rank (n, out, r), (n, in', r)."""

    dense: Tensor | None = None
    left: Tensor | None = None
    right: Tensor | None = None

    def cat(self, other: _Query) -> _Query:
        if self.dense is not None:
            return _Query(dense=torch.cat([self.dense, other.dense]))
        return _Query(left=torch.cat([self.left, other.left]), right=torch.cat([self.right, other.right]))


class KroneckerInfluence:
    """The K-FAC / EK-FAC back end of ``InfluenceFunctions`` (see the module docstring)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, names: list[str], method: KroneckerMethod,
                 damping: float, *, query_rank: int | None = None, batch_size: int = 128,
                 show_progress: bool = False) -> None:
        if query_rank is not None and query_rank < 1:
            raise UsageError(f"query_rank must be >= 1 or None, got {query_rank}")
        self.model = model
        self.loss_fn = loss_fn
        self.method: KroneckerMethod = method
        self.damping = float(damping)
        self.query_rank = query_rank
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        self.layers, self.ignored = tracked_layers(model, names)
        if not self.layers:
            raise UsageError(f"method={method!r} tracks nn.Linear and nn.Conv2d layers, and none of the chosen "
                             f"parameters ({', '.join(names[:4])}...) is the weight of one")
        self.factors: KroneckerFactors | None = None

    @property
    def param_names(self) -> list[str]:
        return [p for layer in self.layers for p in layer.param_names]

    # -- factors --------------------------------------------------------------------------------------
    def fit(self, data: Examples) -> KroneckerFactors:
        self.factors = fit_kronecker_factors(self.model, self.loss_fn, self.layers, data, method=self.method,
                                             batch_size=self.batch_size, show_progress=self.show_progress)
        return self.factors

    def checked_factors(self) -> KroneckerFactors:
        if self.factors is None:
            raise UsageError("no factors: fit them first (fit_factors) or load them (load_factors)")
        self.factors.check_matches(self.layers, weights_fingerprint(self.layers), self.method)
        return self.factors

    def _bases(self) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Per layer: Q_A, Q_S and 1 / (Λ + λ), on the model's device and in its dtype."""
        factors = self.checked_factors()
        device, dtype = model_device(self.model), self.layers[0].module.weight.dtype
        out = {}
        for layer in self.layers:
            f = factors.layers[layer.name]
            shifted = f.eigenvalues(self.method) + self.damping
            if (shifted <= 0).any():
                raise UsageError(f"F + damping I is singular on layer {layer.name!r} (damping = {self.damping}); "
                                 "use a damping > 0")
            out[layer.name] = (f.a_vecs.to(device, dtype), f.s_vecs.to(device, dtype),
                               (1.0 / shifted).to(device, dtype))
        return out

    # -- per-batch pieces -----------------------------------------------------------------------------
    def _rotated(self, x: Examples, bases) -> dict[str, tuple[Tensor, Tensor]]:
        """Per layer: the batch's terms in the eigenbases, (a Q_A (B, T, in'), s Q_S (B, T, out))."""
        terms = capture_terms(self.model, self.loss_fn, self.layers, to_device(x, model_device(self.model)))
        return {name: (a @ bases[name][0], s @ bases[name][1]) for name, (a, s) in terms.items()}

    def _low_rank(self, layer: TrackedLayer, tokens: int) -> bool:
        r = self.query_rank
        return (r is not None and r < min(layer.out_dim, layer.in_dim)
                and r * tokens * (layer.out_dim + layer.in_dim) < layer.out_dim * layer.in_dim)

    def _queries(self, x: Examples, bases) -> dict[str, _Query]:
        queries: dict[str, _Query] = {}
        n = count(x)
        r = self.query_rank
        inverse_factors: dict[str, tuple[Tensor, Tensor]] = {}
        for start in range(0, n, self.batch_size):
            rotated = self._rotated(take(x, slice(start, start + self.batch_size)), bases)
            for layer in self.layers:
                a, s = rotated[layer.name]
                inverse = bases[layer.name][2]
                if self._low_rank(layer, a.shape[1]) and a.shape[1] == 1:
                    if layer.name not in inverse_factors:  # W ≈ P diag(σ) Qᵀ, rank r, shared by all queries
                        p, sv, qh = torch.linalg.svd(inverse.double(), full_matrices=False)
                        root = sv[:r].sqrt()
                        inverse_factors[layer.name] = ((p[:, :r] * root).to(a.dtype), (qh[:r].T * root).to(a.dtype))
                    left, right = inverse_factors[layer.name]
                    q = _Query(left=s[:, 0, :, None] * left, right=a[:, 0, :, None] * right)
                elif self._low_rank(layer, a.shape[1]):
                    u, sv, vh = torch.linalg.svd(layer_gradients(a, s) * inverse, full_matrices=False)
                    q = _Query(left=u[:, :, :r] * sv[:, None, :r], right=vh[:, :r, :].transpose(1, 2))
                else:
                    q = _Query(dense=(layer_gradients(a, s) * inverse).reshape(a.shape[0], -1))
                queries[layer.name] = q if layer.name not in queries else queries[layer.name].cat(q)
        return queries

    def _block_scores(self, queries: dict[str, _Query], rotated: dict[str, tuple[Tensor, Tensor]]) -> Tensor:
        """(n_test, B) scores of one block of training examples."""
        total = None
        for layer in self.layers:
            a, s = rotated[layer.name]
            q = queries[layer.name]
            if q.dense is not None:
                g = layer_gradients(a, s).reshape(a.shape[0], -1)
                part = q.dense @ g.T
            else:
                part = _low_rank_scores(q.left, q.right, a, s)
            total = part if total is None else total + part
        return total

    # -- public ---------------------------------------------------------------------------------------
    def scores(self, x_test: Examples, x_train: Examples) -> Tensor:
        bases = self._bases()
        queries = self._queries(x_test, bases)
        n_train = count(x_train)
        blocks = range(0, n_train, self.batch_size)
        parts = [self._block_scores(queries, self._rotated(take(x_train, slice(j, j + self.batch_size)), bases))
                 for j in progress(blocks, enabled=self.show_progress, total=len(blocks), desc="EK-FAC scores")]
        return torch.cat(parts, dim=1)

    def self_scores(self, x: Examples) -> Tensor:
        """g_nᵀ (F + λI)^-1 g_n for every example (n,)."""
        bases = self._bases()
        parts = []
        for start in range(0, count(x), self.batch_size):
            rotated = self._rotated(take(x, slice(start, start + self.batch_size)), bases)
            parts.append(sum((layer_gradients(*rotated[name]).square() * bases[name][2]).sum((1, 2))
                             for name in rotated))
        return torch.cat(parts)

    def scores_to_file(self, x_test: Examples, x_train: Examples, path: str | os.PathLike[str], *,
                       train_block: int = DEFAULT_TRAIN_BLOCK, test_block: int | None = None) -> Path:
        """Scores (n_test, n_train) written to the ``.npy`` file ``path`` block by block (resumable).

        ``test_block``: test rows preconditioned and held at once (``None``: all); each test block makes
        one pass over the training set.
        """
        n_test, n_train = check_examples(x_test, "x_test"), check_examples(x_train, "x_train")
        if train_block < 1 or (test_block is not None and test_block < 1):
            raise UsageError(f"train_block and test_block must be >= 1, got {train_block}, {test_block}")
        test_block = test_block or n_test
        bases = self._bases()
        key = json.dumps({"method": self.method, "damping": self.damping, "rank": self.query_rank,
                          "weights": self.checked_factors().weights, "fit": self.checked_factors().n_examples,
                          "test": fingerprint(x_test), "train": fingerprint(x_train),
                          "blocks": [train_block, test_block]}, sort_keys=True)
        out = BlockFile(path, (n_test, n_train), key=key)
        n_cols = -(-n_train // train_block)
        for ti, i0 in enumerate(range(0, n_test, test_block)):
            rows = slice(i0, min(i0 + test_block, n_test))
            todo = [c for c in range(n_cols) if not out.done(ti * n_cols + c)]
            if not todo:
                continue
            queries = self._queries(take(x_test, rows), bases)
            for c in progress(todo, enabled=self.show_progress, total=len(todo), desc=f"{self.method} scores"):
                cols = slice(c * train_block, min((c + 1) * train_block, n_train))
                chunk = take(x_train, cols)
                block = torch.cat([self._block_scores(queries, self._rotated(
                    take(chunk, slice(j, j + self.batch_size)), bases))
                    for j in range(0, count(chunk), self.batch_size)], dim=1)
                out.write(ti * n_cols + c, block, rows=rows, cols=cols)
        return out.finish()


def _low_rank_scores(left: Tensor, right: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """sum_r sum_t (left_ir·s_jt)(right_ir·a_jt): (n, B) for left (n, out, r), right (n, in', r), a (B, T, in'),
    s (B, T, out); test rows in chunks to bound the (B·T, n·r) temporaries."""
    n, out_dim, r = left.shape
    b, t, in_dim = a.shape
    rows = max(1, _LOW_RANK_ELEMENTS // max(1, b * t * r))
    parts = []
    s_flat, a_flat = s.reshape(b * t, out_dim), a.reshape(b * t, in_dim)
    for i in range(0, n, rows):
        lq, rq = left[i:i + rows], right[i:i + rows]
        k = lq.shape[0]
        x = s_flat @ lq.permute(1, 0, 2).reshape(out_dim, k * r)
        y = a_flat @ rq.permute(1, 0, 2).reshape(in_dim, k * r)
        parts.append((x * y).reshape(b, t, k, r).sum((1, 3)).T)
    return torch.cat(parts)
