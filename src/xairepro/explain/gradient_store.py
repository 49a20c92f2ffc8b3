"""A store of projected per-example gradients on disk: Φ (N, k) = G R, written and read in blocks.

    store = GradientStore.build("store/train", model, loss_fn, x_train, dim=1024, projection="rademacher")
    store.rows(0, 4096)            # (4096, k) tensor, only those rows read from disk
    store.gram()                   # ΦᵀΦ (k, k), accumulated block by block

The folder holds ``gradients.npy`` (float32, memory-mapped) and ``store.json`` (what defines it: the
projection, the parameters, fingerprints of the weights and of the examples).  Blocks of ``block_size``
examples are computed and written one at a time (``xairepro.explain.block_files``): a killed build
resumes at the first unfinished block when run again with the same inputs; ``build`` on a folder that
already holds the same store returns it without recomputing; other inputs rebuild it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.block_files import BlockFile, read_rows
from xairepro.explain.examples import Examples, check_examples, fingerprint, take
from xairepro.explain.per_example_grads import DEFAULT_BATCH_SIZE, LabelFreeLoss, LossFn, ParamsArg, compute_gradients
from xairepro.explain.projection import ProjectionKind, Projector
from xairepro.utils import atomic_write_text, preserved_state, progress

#: Examples per written block.
DEFAULT_BLOCK_SIZE = 4096
DEFAULT_PROJECTION_DIM = 1024

__all__ = ["GradientStore", "DEFAULT_PROJECTION_DIM"]


class GradientStore:
    """Projected per-example gradients in a folder; see the module docstring."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "store.json"
        if not meta_path.is_file() or not (self.folder / "gradients.npy").is_file():
            raise UsageError(f"{str(self.folder)!r} holds no finished gradient store (store.json, gradients.npy)")
        self.meta = json.loads(meta_path.read_text())
        self.n = int(self.meta["n"])
        self.dim = int(self.meta["dim"])

    @property
    def path(self) -> Path:
        return self.folder / "gradients.npy"

    def __repr__(self) -> str:
        return f"GradientStore({str(self.folder)!r}, n={self.n}, dim={self.dim})"

    @classmethod
    def build(cls, folder: str | os.PathLike[str], model: nn.Module, loss_fn: LossFn, x: Examples,
              params: ParamsArg = None, *, dim: int = DEFAULT_PROJECTION_DIM, projection: ProjectionKind = "rademacher",
              seed: int | None = 0, projector: Projector | None = None, state: Mapping[str, Tensor] | None = None,
              batch_size: int = DEFAULT_BATCH_SIZE, block_size: int = DEFAULT_BLOCK_SIZE,
              show_progress: bool = False) -> GradientStore:
        """Compute and write Φ = G R for the examples ``x`` (or return the finished store already there).

        ``projector`` (optional) fixes R; otherwise R = ``Projector(P, dim, projection, seed)``.
        ``state``: weights to use instead of the model's (a checkpoint), as in ``per_example_gradients``.
        """
        n = check_examples(x, "examples")
        if block_size < 1:
            raise UsageError(f"block_size must be >= 1, got {block_size}")
        loss = LabelFreeLoss(model, loss_fn, params, state)
        if projector is None:
            projector = Projector(loss.n_params, dim, projection, seed)
        elif projector.n_params != loss.n_params:
            raise UsageError(f"the projector maps {projector.n_params} parameters, the chosen ones are {loss.n_params}")
        meta = {"n": n, "dim": projector.dim, "projection": projector.describe(), "params": loss.names,
                "weights": fingerprint(*loss.values.values()), "examples": fingerprint(x)}
        folder = Path(folder)
        meta_path = folder / "store.json"
        if meta_path.is_file() and (folder / "gradients.npy").is_file():
            if json.loads(meta_path.read_text()) == meta:
                return cls(folder)
            meta_path.unlink()  # another store: rebuild
        out = BlockFile(folder / "gradients.npy", (n, projector.dim), key=json.dumps(meta, sort_keys=True))
        starts = list(range(0, n, block_size))
        todo = [b for b in range(len(starts)) if not out.done(b)]
        with preserved_state(model, eval_mode=True):
            for b in progress(todo, enabled=show_progress, total=len(todo), desc="projected gradients"):
                rows = slice(starts[b], min(starts[b] + block_size, n))
                phi = compute_gradients(loss, take(x, rows), batch_size=batch_size, projection=projector)
                out.write(b, phi, rows=rows)
        out.finish()
        atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
        return cls(folder)

    def rows(self, start: int, stop: int) -> Tensor:
        """Φ[start:stop] (float32, CPU)."""
        return read_rows(self.path, start, stop)

    def blocks(self, block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[tuple[slice, Tensor]]:
        for start in range(0, self.n, block_size):
            stop = min(start + block_size, self.n)
            yield slice(start, stop), self.rows(start, stop)

    def gram(self, block_size: int = DEFAULT_BLOCK_SIZE) -> Tensor:
        """ΦᵀΦ (k, k) in float64, summed over blocks."""
        total = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        for _, phi in self.blocks(block_size):
            phi = phi.double()
            total += phi.T @ phi
        return total


def score_against_stores(path: str | os.PathLike[str], queries: Tensor, stores: list[GradientStore], *, key: str,
                         train_block: int = DEFAULT_BLOCK_SIZE, show_progress: bool = False) -> Path:
    """Write queries (n_test, K) @ [Φ_1 | Φ_2 | ...]ᵀ to the ``.npy`` file ``path``, one block of training
    rows at a time (K = the stores' dims summed; every store holds the same n_train examples)."""
    if not stores or len({s.n for s in stores}) != 1:
        raise UsageError("scoring needs one or more gradient stores of the same examples")
    if queries.dim() != 2 or queries.shape[1] != sum(s.dim for s in stores):
        raise UsageError(f"queries must be (n_test, {sum(s.dim for s in stores)}), got {tuple(queries.shape)}")
    n_train = stores[0].n
    out = BlockFile(path, (queries.shape[0], n_train), key=key)
    starts = list(range(0, n_train, train_block))
    todo = [b for b in range(len(starts)) if not out.done(b)]
    for b in progress(todo, enabled=show_progress, total=len(todo), desc="scores"):
        cols = slice(starts[b], min(starts[b] + train_block, n_train))
        feats = torch.cat([s.rows(cols.start, cols.stop) for s in stores], dim=1).to(queries)
        out.write(b, queries @ feats.T, cols=cols)
    return out.finish()
