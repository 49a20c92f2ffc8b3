"""Label-free deep k-nearest-neighbour example importance (DkNN, Papernot & McDaniel 2018).

score[i, n] = 1 / max(||h_i - h_n||², eps),  h = encoder(x) flattened to (N, d).
Higher = closer in latent space.  Invariant to any isometry of the latent space (rotations, shifts);
``eps`` keeps duplicates (zero distance) finite.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.examples import inputs_of
from xairepro.utils import model_device, preserved_state

#: Examples per encoder forward.
DEFAULT_BATCH_SIZE = 256
#: Squared distances are clamped below at this value (zero distance gives 1/eps, not inf).
DEFAULT_EPS = 1e-12
#: Test rows per distance block are chosen so a block holds about this many floats.
_BLOCK_ELEMENTS = 1 << 24

__all__ = ["DKNN", "latent_representations", "squared_distances"]


def check_examples(x: Tensor, what: str) -> None:
    """One clear error for a non-tensor or an empty set of examples."""
    if not isinstance(x, Tensor):
        raise UsageError(f"{what} must be a tensor of examples (N, ...), got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise UsageError(f"{what} has no examples (shape {tuple(x.shape)}); n must be >= 1")


@torch.no_grad()
def latent_representations(encoder: nn.Module, x: Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
    """encoder(x) in eval mode, in batches, flattened to (N, d), on the encoder's device."""
    check_examples(x, "inputs")
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    device = model_device(encoder)
    with preserved_state(encoder, eval_mode=True):
        parts = [encoder(x[i:i + batch_size].to(device)) for i in range(0, x.shape[0], batch_size)]
    out = torch.cat([p[0] if isinstance(p, (tuple, list)) else p for p in parts])
    return out.reshape(out.shape[0], -1)


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """||a_i - b_j||² (n, m) computed from differences (exactly 0 for equal rows), in row blocks."""
    rows = max(1, _BLOCK_ELEMENTS // max(1, b.shape[0] * b.shape[1]))
    return torch.cat([((a[i:i + rows, None, :] - b[None]) ** 2).sum(-1) for i in range(0, a.shape[0], rows)])


class DKNN:
    """``DKNN(encoder).attribute(x_test, x_train) -> (n_test, n_train)`` = 1 / ||h_test - h_train||²."""

    def __init__(self, encoder: nn.Module, *, eps: float = DEFAULT_EPS, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if not isinstance(encoder, nn.Module):
            raise UsageError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
        if eps <= 0:
            raise UsageError(f"eps must be > 0, got {eps}")
        self.encoder = encoder
        self.eps = float(eps)
        self.batch_size = batch_size

    def attribute(self, x_test: Tensor, x_train: Tensor) -> Tensor:
        """Scores (n_test, n_train); a tuple (inputs, targets, ...) is explained by its inputs."""
        x_test, x_train = inputs_of(x_test), inputs_of(x_train)
        check_examples(x_test, "x_test")
        check_examples(x_train, "x_train")
        h_test = latent_representations(self.encoder, x_test, self.batch_size)
        h_train = latent_representations(self.encoder, x_train, self.batch_size)
        return self.scores(h_test, h_train).to(x_test.device)

    def scores(self, h_test: Tensor, h_train: Tensor) -> Tensor:
        """Scores from latent representations (n, d) and (m, d)."""
        return 1.0 / squared_distances(h_test, h_train).clamp_min(self.eps)
