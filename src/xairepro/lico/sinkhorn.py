"""Batched log-domain Sinkhorn and LICO's optimal-transport loss (SPEC 4).

Entropic OT with uniform marginals a = 1/N, b = 1/M, in POT's convention
min_P <P, C> + eps * sum P (log P - 1). Log-domain updates (scaled potentials u, v):

    v <- log b - logsumexp_i(-C_ij / eps + u_i)
    u <- log a - logsumexp_j(-C_ij / eps + v_j)
    P_ij = exp(-C_ij / eps + u_i + v_j)

the same order as POT's ``sinkhorn_log``, for a whole batch at once, a fixed number of iterations and no
host synchronisation (no convergence test), so it runs unchanged on an accelerator. The plan is a
constant (no gradient), as LICO uses it.
"""

from __future__ import annotations

import math

import torch

from xairepro.lico.config import DEFAULT_EPSILON, DEFAULT_N_ITERS, OT_GRADS

__all__ = ["sinkhorn", "ot_loss", "squared_distances"]


def _check_positive(epsilon: float, n_iters: int) -> None:
    if not float(epsilon) > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if int(n_iters) != n_iters or n_iters < 1:
        raise ValueError(f"n_iters must be a positive integer, got {n_iters}")


def _logsumexp_into(out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last (contiguous) dim of x + y, using ``out`` as scratch: (..., K) -> (..., 1)."""
    torch.add(x, y, out=out)
    shift = out.amax(dim=-1, keepdim=True)
    return out.sub_(shift).exp_().sum(dim=-1, keepdim=True).log_().add_(shift)


@torch.no_grad()
def sinkhorn(cost: torch.Tensor, epsilon: float = DEFAULT_EPSILON,
             n_iters: int = DEFAULT_N_ITERS) -> torch.Tensor:
    """Entropic OT plans with uniform marginals for a batch of cost matrices.

    cost: (B, N, M) float -> plan (B, N, M), without gradient; each plan's rows sum to 1/N and columns
    to 1/M at convergence (after the last update the row sums are exact). Stable for epsilon down to
    1e-4: every reduction is a max-shifted logsumexp. Both reductions run over a contiguous last
    dimension (the kernel is kept in both layouts) into preallocated scratch buffers.
    """
    if not isinstance(cost, torch.Tensor) or cost.dim() != 3:
        shape = tuple(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
        raise ValueError(f"cost must be a (B, N, M) tensor, got {shape}")
    if not cost.is_floating_point():
        raise TypeError(f"cost must be a floating-point tensor, got {cost.dtype}")
    _check_positive(epsilon, n_iters)
    batch, n, m = cost.shape
    log_kernel = cost / (-float(epsilon))                       # (B, N, M): -C / eps
    log_kernel_t = log_kernel.transpose(1, 2).contiguous()       # (B, M, N)
    log_a, log_b = -math.log(n), -math.log(m)
    u = cost.new_zeros(batch, 1, n)                              # row potentials, laid out as a row
    v = cost.new_zeros(batch, 1, m)
    scratch, scratch_t = torch.empty_like(log_kernel), torch.empty_like(log_kernel_t)
    for _ in range(int(n_iters)):
        v = (log_b - _logsumexp_into(scratch_t, log_kernel_t, u)).transpose(1, 2)   # LSE over i
        u = (log_a - _logsumexp_into(scratch, log_kernel, v)).transpose(1, 2)       # LSE over j
    return torch.exp(log_kernel + u.transpose(1, 2) + v)


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batched squared Euclidean distances: (B, N, d), (B, M, d) -> (B, N, M), clamped at 0."""
    sq = (x * x).sum(-1).unsqueeze(-1) + (y * y).sum(-1).unsqueeze(-2) - 2.0 * torch.bmm(x, y.transpose(1, 2))
    return sq.clamp_min(0.0)


def _check_tokens(image_tokens: torch.Tensor, text_tokens: torch.Tensor) -> None:
    for name, t in (("image_tokens", image_tokens), ("text_tokens", text_tokens)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a (B, tokens, dim) tensor, got {shape}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if image_tokens.shape[0] != text_tokens.shape[0] or image_tokens.shape[2] != text_tokens.shape[2]:
        raise ValueError(f"image_tokens {tuple(image_tokens.shape)} and text_tokens {tuple(text_tokens.shape)} "
                         "must share the batch size and the token dimension")


def ot_loss(image_tokens: torch.Tensor, text_tokens: torch.Tensor, epsilon: float = DEFAULT_EPSILON,
            n_iters: int = DEFAULT_N_ITERS, *, grad: str = "cost") -> torch.Tensor:
    """L_OT = mean_b <P_b, C_b>, C_b = squared Euclidean costs between sample b's N image and M text tokens.

    image_tokens (B, N, d'), text_tokens (B, M, d') -> scalar. The plan P_b = sinkhorn(C_b) carries no
    gradient; ``grad="cost"`` lets the gradient flow through C, ``grad="none"`` (the official code)
    returns a constant. Tokens are used as given (LICO normalises them first).
    """
    if grad not in OT_GRADS:
        raise ValueError(f"grad={grad!r} is not one of {', '.join(OT_GRADS)}")
    _check_tokens(image_tokens, text_tokens)
    _check_positive(epsilon, n_iters)
    with torch.set_grad_enabled(grad != "none" and torch.is_grad_enabled()):
        dtype = torch.promote_types(image_tokens.dtype, text_tokens.dtype)
        cost = squared_distances(image_tokens.to(dtype), text_tokens.to(dtype))
        plan = sinkhorn(cost.detach(), epsilon, n_iters)
        return (plan * cost).sum(dim=(1, 2)).mean()
