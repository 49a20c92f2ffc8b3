"""Seeded random projections of gradients, g (B, P) -> g R (B, k), in pure torch (no compiled extension).

E[R Rᵀ] = I, so (g R)·(g' R) is an unbiased estimate of g·g' (Johnson-Lindenstrauss).  R is defined
block by block: rows [b·4096, (b+1)·4096) come from their own generator, seeded by ``derive_seed(seed,
kind, b)``, so any block can be regenerated alone and the matrix never has to exist in one piece.

- ``gaussian``: R_ij ~ N(0, 1/k).  Kept whole in memory when P·k values fit in ``max_bytes``; otherwise
  each block is regenerated for every batch it projects (slower, bounded memory).
- ``rademacher``: sparse, ``nonzeros`` entries ±1/sqrt(s) per row of R (s = ``nonzeros``), one in each of
  s equal slices of the k columns (Kane & Nelson's block construction; s = 1 is a CountSketch).  Stored
  as a (k, P) CSR matrix of P·s entries; a batch costs B·P·s multiply-adds instead of B·P·k.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import Tensor

from xairepro.errors import UsageError
from xairepro.utils import derive_seed, make_generator

ProjectionKind = Literal["gaussian", "rademacher"]

#: Rows of R per generated block (part of R's definition: changing it changes the matrix for a seed).
BLOCK_ROWS = 4096
#: A Gaussian R larger than this is regenerated block by block instead of kept in memory.
DEFAULT_MAX_BYTES = 256 * 2**20
#: Nonzeros per row of the sparse Rademacher R.
DEFAULT_NONZEROS = 4

__all__ = ["Projector", "ProjectionKind", "BLOCK_ROWS"]


class Projector:
    """``project(g)``: (B, P) -> (B, k) with the seeded R (P, k) described in the module docstring."""

    def __init__(self, n_params: int, dim: int, kind: ProjectionKind = "gaussian", seed: int | None = 0, *,
                 nonzeros: int = DEFAULT_NONZEROS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if n_params < 1:
            raise UsageError(f"n_params must be >= 1, got {n_params}")
        if dim < 1:
            raise UsageError(f"projection_dim must be >= 1, got {dim}")
        if kind not in ("gaussian", "rademacher"):
            raise UsageError(f"projection must be 'gaussian' or 'rademacher', got {kind!r}")
        if nonzeros < 1:
            raise UsageError(f"nonzeros must be >= 1, got {nonzeros}")
        self.n_params = int(n_params)
        self.dim = int(dim)
        self.kind = kind
        self.seed = int(seed) if seed is not None else int(torch.randint(2**62, (1,)).item())
        self.nonzeros = min(int(nonzeros), self.dim)
        self.max_bytes = int(max_bytes)
        self._cache: dict[tuple[str, torch.dtype], Tensor] = {}

    def describe(self) -> dict[str, object]:
        """What defines R (for metadata files)."""
        return {"kind": self.kind, "n_params": self.n_params, "dim": self.dim, "seed": self.seed,
                "nonzeros": self.nonzeros if self.kind == "rademacher" else None, "block_rows": BLOCK_ROWS}

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_params / BLOCK_ROWS)

    def _rows(self, b: int) -> tuple[int, int]:
        return b * BLOCK_ROWS, min((b + 1) * BLOCK_ROWS, self.n_params)

    def _gen(self, b: int) -> torch.Generator:
        return make_generator(derive_seed(self.seed, self.kind, b), "cpu")

    def gaussian_block(self, b: int) -> Tensor:
        """Rows of block ``b`` of the Gaussian R, (rows, k) float32 on the CPU."""
        lo, hi = self._rows(b)
        return torch.randn(hi - lo, self.dim, generator=self._gen(b)) / math.sqrt(self.dim)

    def sparse_block(self, b: int) -> tuple[Tensor, Tensor]:
        """Column indices (rows, s) and values (rows, s) of block ``b`` of the sparse Rademacher R."""
        lo, hi = self._rows(b)
        gen, s = self._gen(b), self.nonzeros
        bounds = [t * self.dim // s for t in range(s + 1)]
        cols = torch.stack([bounds[t] + torch.randint(bounds[t + 1] - bounds[t], (hi - lo,), generator=gen)
                            for t in range(s)], dim=1)
        signs = torch.randint(2, (hi - lo, s), generator=gen).float() * 2 - 1
        return cols, signs / math.sqrt(s)

    def matrix(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        """R as a dense (P, k) tensor (small problems and tests)."""
        if self.kind == "gaussian":
            return torch.cat([self.gaussian_block(b) for b in range(self.n_blocks)]).to(device=device, dtype=dtype)
        return self._sparse_t(torch.device(device), dtype).to_dense().T.contiguous()

    def _sparse_t(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Rᵀ (k, P) as CSR, built once per device and dtype."""
        key = (str(device), dtype)
        if key not in self._cache:
            cols, vals = zip(*(self.sparse_block(b) for b in range(self.n_blocks)))
            rows = torch.arange(self.n_params).repeat_interleave(self.nonzeros)
            index = torch.stack([torch.cat(cols).reshape(-1), rows])
            with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is all we use
                warnings.simplefilter("ignore", UserWarning)
                coo = torch.sparse_coo_tensor(index, torch.cat(vals).reshape(-1), (self.dim, self.n_params),
                                              check_invariants=False).coalesce()
                self._cache[key] = coo.to_sparse_csr().to(device=device, dtype=dtype)
        return self._cache[key]

    def project(self, g: Tensor) -> Tensor:
        """g (B, P) -> g R (B, k), on g's device and in g's dtype."""
        if g.dim() != 2 or g.shape[1] != self.n_params:
            raise UsageError(f"gradients must have shape (B, {self.n_params}), got {tuple(g.shape)}")
        if self.kind == "rademacher":
            return (self._sparse_t(g.device, g.dtype) @ g.T.contiguous()).T
        key = (str(g.device), g.dtype)
        if key in self._cache:
            return g @ self._cache[key]
        itemsize = torch.empty((), dtype=g.dtype).element_size()
        if self.n_params * self.dim * itemsize <= self.max_bytes:
            self._cache[key] = self.matrix(g.device, g.dtype)
            return g @ self._cache[key]
        out = torch.zeros(g.shape[0], self.dim, device=g.device, dtype=g.dtype)
        for b in range(self.n_blocks):  # too large to keep: regenerate each block
            lo, hi = self._rows(b)
            out += g[:, lo:hi] @ self.gaussian_block(b).to(device=g.device, dtype=g.dtype)
        return out

    __call__ = project
