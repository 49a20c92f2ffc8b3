"""VAE objectives: beta-VAE (Higgins et al. 2017) and beta-TCVAE (Chen et al. 2018).

The model gives ``encode(x) -> (mu, logvar)`` (B, D) each, ``reparameterize(mu, logvar)`` and
``decode_logits(z)`` (or ``decode(z)`` probabilities) shaped like x.  Per example, with
z = mu + exp(logvar / 2) eps drawn once:

    rec  = -log p(x | z) = sum_pixels BCE(logits, x)       (Bernoulli; binary images)
           or 1/2 sum_pixels (x - decode(z))^2             (Gaussian, unit variance, up to a constant)
    KL   = 1/2 sum_k (mu_k^2 + exp(logvar_k) - 1 - logvar_k)
    beta-VAE:  rec + beta KL
    beta-TCVAE: rec + alpha MI + beta TC + gamma DWKL, with, for the batch z_1..z_M of a data set of size N,
        MI   = log q(z|x) - log q(z),  TC = log q(z) - sum_k log q(z_k),  DWKL = sum_k log q(z_k) - log p(z)
        log q(z_i)   ~ logsumexp_j log q(z_i | x_j) - log(N M)          (minibatch-weighted sampling)
        log q(z_ik)  ~ logsumexp_j log q(z_ik | x_j) - log(N M)
    MI + TC + DWKL = log q(z|x) - log p(z): a one-sample estimate of KL whose mean is KL.
Losses are means over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xairepro.train.objectives import ObjectiveBase

__all__ = ["BetaVAEObjective", "TCVAEObjective", "gaussian_log_density", "kl_standard_normal", "tcvae_terms"]

LIKELIHOODS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(z; mu, exp(logvar)) (broadcasting)."""
    return -0.5 * (_LOG_2PI + logvar + (z - mu).square() * torch.exp(-logvar))


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example, (B, D) -> (B,)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)


def tcvae_terms(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int) -> dict[str, Tensor]:
    """Per-example ``mi``, ``tc``, ``dwkl`` (each (B,)) for samples z (B, D) of q(z | x_i) = N(mu_i, e^logvar_i).

    log q(z) and log q(z_k) by minibatch-weighted sampling (module docstring).
    """
    batch = z.shape[0]
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(dim=1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
    # mat[i, j, k] = log q(z_ik | x_j)
    mat = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
    log_norm = math.log(batch * dataset_size)
    log_qz = torch.logsumexp(mat.sum(dim=2), dim=1) - log_norm
    log_prod_qzk = (torch.logsumexp(mat, dim=1) - log_norm).sum(dim=1)
    return {"mi": log_qz_x - log_qz, "tc": log_qz - log_prod_qzk, "dwkl": log_prod_qzk - log_pz}


class _VAEObjective(ObjectiveBase):
    forward_methods = ("encode", "decode", "decode_logits")

    def __init__(self, likelihood: str = "bernoulli") -> None:
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}; got {likelihood!r}")
        self.likelihood = likelihood

    def _forward(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(z, mu, logvar, rec) with rec the per-example negative log-likelihood (B,)."""
        for name in ("encode", "decode"):
            if not callable(getattr(model, name, None)):
                raise TypeError(f"a VAE objective needs a model with encode(x) and decode(z); "
                                f"{type(model).__name__} has no {name}()")
        mu, logvar = model.encode(x)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        target = x.float().flatten(1)
        if self.likelihood == "bernoulli":
            if callable(getattr(model, "decode_logits", None)):
                logits = model.decode_logits(z).float().flatten(1)
                rec = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=1)
            else:
                probs = model.decode(z).float().flatten(1)
                rec = F.binary_cross_entropy(probs, target, reduction="none").sum(dim=1)
        else:
            rec = 0.5 * (model.decode(z).float().flatten(1) - target).square().sum(dim=1)
        return z, mu, logvar, rec


class BetaVAEObjective(_VAEObjective):
    """beta-VAE: mean_i [rec_i + beta KL_i] (see the module docstring)."""

    def __init__(self, beta: float = 1.0, likelihood: str = "bernoulli") -> None:
        super().__init__(likelihood)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        self.beta = float(beta)

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        _, mu, logvar, rec = self._forward(model, batch[0])
        kl = kl_standard_normal(mu, logvar)
        loss = (rec + self.beta * kl).mean()
        return loss, {"recon": rec.detach().mean(), "kl": kl.detach().mean()}


class TCVAEObjective(_VAEObjective):
    """beta-TCVAE: mean_i [rec_i + alpha MI_i + beta TC_i + gamma DWKL_i] (see the module docstring).

    ``dataset_size``: N, the number of training examples (minibatch-weighted sampling).
    """

    def __init__(self, beta: float = 1.0, dataset_size: int = 60000, *, alpha: float = 1.0, gamma: float = 1.0,
                 likelihood: str = "bernoulli") -> None:
        super().__init__(likelihood)
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be >= 1, got {dataset_size!r}")
        if min(alpha, beta, gamma) < 0:
            raise ValueError("alpha, beta and gamma must be >= 0")
        self.beta, self.alpha, self.gamma = float(beta), float(alpha), float(gamma)
        self.dataset_size = int(dataset_size)

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        z, mu, logvar, rec = self._forward(model, batch[0])
        terms = tcvae_terms(z, mu, logvar, self.dataset_size)
        loss = (rec + self.alpha * terms["mi"] + self.beta * terms["tc"] + self.gamma * terms["dwkl"]).mean()
        metrics = {"recon": rec.detach().mean(), "kl": kl_standard_normal(mu, logvar).detach().mean()}
        metrics.update({k: v.detach().mean() for k, v in terms.items()})
        return loss, metrics
