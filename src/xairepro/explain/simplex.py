"""Label-free SimplEx (Crabbé et al. 2021): each test latent as a convex mix of the training latents.

For every test row i, weights w_i = softmax(a_i) over the n_train corpus examples minimise
||h_i - sum_n w_in h_n||², a_i fitted by Adam (lr 1e-3, 1000 steps, a_i = 0 at the start).
All test rows are fitted together as one (n_test, n_train) tensor with the summed loss: the rows do
not interact and Adam is element-wise, so this is exactly per-row fitting.  Scores = the weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.examples import inputs_of
from xairepro.explain.dknn import DEFAULT_BATCH_SIZE, check_examples, latent_representations
from xairepro.utils import progress

DEFAULT_STEPS = 1000
DEFAULT_LR = 1e-3

__all__ = ["SimplEx", "fit_simplex_weights"]


def fit_simplex_weights(h_test: Tensor, h_train: Tensor, steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                        *, show_progress: bool = False) -> Tensor:
    """Corpus weights (n_test, n_train), rows on the simplex, for latents (n_test, d) and (n_train, d)."""
    h_test = h_test.detach()
    h_train = h_train.detach()
    logits = torch.zeros(h_test.shape[0], h_train.shape[0], dtype=h_test.dtype, device=h_test.device,
                         requires_grad=True)
    optimizer = _adam(logits, lr)
    with torch.enable_grad():
        for _ in progress(range(steps), enabled=show_progress, total=steps, desc="SimplEx"):
            optimizer.zero_grad(set_to_none=True)
            error = ((torch.softmax(logits, dim=-1) @ h_train - h_test) ** 2).sum()
            error.backward()
            optimizer.step()
    return torch.softmax(logits.detach(), dim=-1)


def _adam(param: Tensor, lr: float) -> torch.optim.Adam:
    """Adam, fused where this torch supports it for the tensor's device and dtype (same update rule)."""
    try:
        return torch.optim.Adam([param], lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam([param], lr=lr)


class SimplEx:
    """``SimplEx(encoder).attribute(x_test, x_train) -> (n_test, n_train)`` corpus weights (rows sum to 1).

    ``test_batch_size``: fit this many test rows per tensor (memory only; ``None`` = all at once).
    """

    def __init__(self, encoder: nn.Module, steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR, *,
                 test_batch_size: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 show_progress: bool = False) -> None:
        if not isinstance(encoder, nn.Module):
            raise UsageError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
        if steps < 1:
            raise UsageError(f"steps must be >= 1, got {steps}")
        if lr <= 0:
            raise UsageError(f"lr must be > 0, got {lr}")
        if test_batch_size is not None and test_batch_size < 1:
            raise UsageError(f"test_batch_size must be >= 1 or None, got {test_batch_size}")
        self.encoder = encoder
        self.steps = int(steps)
        self.lr = float(lr)
        self.test_batch_size = test_batch_size
        self.batch_size = batch_size
        self.show_progress = show_progress

    def attribute(self, x_test: Tensor, x_train: Tensor) -> Tensor:
        """Scores (n_test, n_train); a tuple (inputs, targets, ...) is explained by its inputs."""
        x_test, x_train = inputs_of(x_test), inputs_of(x_train)
        check_examples(x_test, "x_test")
        check_examples(x_train, "x_train")
        h_test = latent_representations(self.encoder, x_test, self.batch_size)
        h_train = latent_representations(self.encoder, x_train, self.batch_size)
        return self.scores(h_test, h_train).to(x_test.device)

    def scores(self, h_test: Tensor, h_train: Tensor) -> Tensor:
        """Weights from latent representations (n, d) and (m, d)."""
        rows = self.test_batch_size or h_test.shape[0]
        return torch.cat([fit_simplex_weights(h_test[i:i + rows], h_train, self.steps, self.lr,
                                              show_progress=self.show_progress)
                          for i in range(0, h_test.shape[0], rows)])
