"""Objectives against hand-computed values and direct (looped) reference formulas on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xairepro.train import AutoencoderObjective, ClassifierObjective
from xairepro.train.simclr import SimCLRObjective, nt_xent
from xairepro.train.vae import BetaVAEObjective, TCVAEObjective, gaussian_log_density, kl_standard_normal, tcvae_terms


def test_classifier_cross_entropy_and_accuracy_by_hand():
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 2])
    loss, metrics = ClassifierObjective().loss(model, (x, y))
    # logits (2, 0, 0) with label 0, and (0, 1, 0) with label 2
    expected = (-(2 - math.log(math.exp(2) + 2)) - (0 - math.log(2 + math.e))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["accuracy"].item() == 0.5
    with pytest.raises(ValueError, match="labelled"):
        ClassifierObjective().loss(model, (x,))


class _Half(nn.Module):
    def forward(self, x):
        return 0.5 * x


def test_autoencoder_identity_noise_and_mask_by_hand():
    x = torch.rand(4, 3, 5, 5)
    before = x.clone()
    loss, _ = AutoencoderObjective("identity").loss(_Half(), (x,))
    assert loss.item() == pytest.approx((0.25 * x.square()).mean().item(), rel=1e-6)

    torch.manual_seed(3)
    loss, _ = AutoencoderObjective("noise", noise_std=0.3).loss(_Half(), (x,))
    torch.manual_seed(3)
    noisy = x + 0.3 * torch.randn(x.shape)
    assert loss.item() == pytest.approx((0.5 * noisy - x).square().mean().item(), rel=1e-6)

    l1, _ = AutoencoderObjective("identity", error="l1", reduction="sum").loss(_Half(), (x,))
    assert l1.item() == pytest.approx((0.5 * x).abs().flatten(1).sum(1).mean().item(), rel=1e-6)
    assert torch.equal(x, before)


def test_inpainting_mask_drops_whole_pixels_at_the_given_rate():
    x = torch.ones(64, 3, 16, 16)
    torch.manual_seed(0)
    masked = AutoencoderObjective("mask", mask_prob=0.2).perturb(x)
    dropped = masked == 0
    assert torch.equal(dropped[:, :1].expand_as(dropped), dropped)  # all channels of a pixel together
    assert dropped[:, 0].float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert torch.equal(x, torch.ones_like(x))


def _nt_xent_loop(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1).double()
    n, b = z.shape[0], z1.shape[0]
    total = 0.0
    for i in range(n):
        p = i + b if i < b else i - b
        denom = sum(math.exp(float(z[i] @ z[j]) / t) for j in range(n) if j != i)
        total += -math.log(math.exp(float(z[i] @ z[p]) / t) / denom)
    return total / n


@pytest.mark.parametrize("t", [0.5, 0.1, 1.0])
def test_nt_xent_matches_the_direct_formula(t):
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    loss, _ = nt_xent(z1, z2, t)
    assert loss.item() == pytest.approx(_nt_xent_loop(z1, z2, t), rel=1e-5)
    # identical views, tiny temperature: each row finds its pair with certainty
    loss, acc = nt_xent(z1, z1.clone(), 0.01)
    assert acc.item() == 1.0 and loss.item() < 1e-3


def _flip(x, generator=None):
    """A batched augmentation for the test: flip each image horizontally with probability 1/2."""
    coin = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(coin[:, None, None, None], x.flip(-1), x)


def test_simclr_views_are_seeded_and_loss_uses_one_forward():
    x = torch.rand(8, 1, 4, 4)
    obj = SimCLRObjective(_flip, temperature=0.5)
    torch.manual_seed(0)
    a1, a2 = obj.views(x)
    torch.manual_seed(0)
    b1, b2 = obj.views(x)
    assert torch.equal(a1, b1) and torch.equal(a2, b2) and not torch.equal(a1, a2)
    calls = []

    class Proj(nn.Module):
        def forward(self, v):
            calls.append(v.shape[0])
            return v.flatten(1)

    torch.manual_seed(0)
    loss, metrics = obj.loss(Proj(), (x,))
    assert calls == [16]
    assert loss.item() == pytest.approx(_nt_xent_loop(a1.flatten(1), a2.flatten(1), 0.5), rel=1e-5)
    with pytest.raises(ValueError, match="augmentation"):
        SimCLRObjective(None)


class _TinyVAE(nn.Module):
    """encode: linear map to (mu, logvar); decode_logits: linear map back."""

    def __init__(self, d_in=6, d=2):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.enc = nn.Linear(d_in, 2 * d)
        self.dec = nn.Linear(d, d_in)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
        self.d = d

    def encode(self, x):
        h = self.enc(x.flatten(1))
        return h[:, : self.d], h[:, self.d:]

    def decode_logits(self, z):
        return self.dec(z)

    def decode(self, z):
        return torch.sigmoid(self.dec(z))


def test_beta_vae_loss_by_hand():
    model = _TinyVAE()
    x = (torch.rand(5, 6, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    torch.manual_seed(4)
    loss, metrics = BetaVAEObjective(beta=4.0).loss(model, (x,))
    torch.manual_seed(4)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    p = torch.sigmoid(model.dec(z))
    rec = -(x * p.log() + (1 - x) * (1 - p).log()).sum(1)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert loss.item() == pytest.approx((rec + 4.0 * kl).mean().item(), rel=1e-5)
    assert metrics["kl"].item() == pytest.approx(kl.mean().item(), rel=1e-5)
    assert torch.allclose(kl_standard_normal(mu, logvar), kl, rtol=1e-5)


def _tcvae_loop(z, mu, logvar, n_data):
    """log q(z_i), sum_k log q(z_ik) by minibatch-weighted sampling, written as explicit loops."""
    b, d = z.shape
    normal = lambda v, m, lv: -0.5 * (math.log(2 * math.pi) + lv + (v - m) ** 2 / math.exp(lv))  # noqa: E731
    log_qz, log_prod = [], []
    for i in range(b):
        joint = [sum(normal(float(z[i, k]), float(mu[j, k]), float(logvar[j, k])) for k in range(d)) for j in range(b)]
        log_qz.append(math.log(sum(math.exp(v) for v in joint)) - math.log(b * n_data))
        marg = 0.0
        for k in range(d):
            vals = [normal(float(z[i, k]), float(mu[j, k]), float(logvar[j, k])) for j in range(b)]
            marg += math.log(sum(math.exp(v) for v in vals)) - math.log(b * n_data)
        log_prod.append(marg)
    return torch.tensor(log_qz, dtype=torch.float64), torch.tensor(log_prod, dtype=torch.float64)


def test_tcvae_terms_match_loops_and_sum_to_the_kl_estimate():
    g = torch.Generator().manual_seed(5)
    mu, logvar = torch.randn(6, 3, generator=g).double(), (0.3 * torch.randn(6, 3, generator=g)).double()
    z = mu + torch.exp(0.5 * logvar) * torch.randn(6, 3, generator=g).double()
    terms = tcvae_terms(z, mu, logvar, dataset_size=100)
    log_qz, log_prod = _tcvae_loop(z, mu, logvar, 100)
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(terms["mi"], log_qz_x - log_qz, atol=1e-10)
    assert torch.allclose(terms["tc"], log_qz - log_prod, atol=1e-10)
    assert torch.allclose(terms["dwkl"], log_prod - log_pz, atol=1e-10)
    total = terms["mi"] + terms["tc"] + terms["dwkl"]
    assert total.shape == (6,)
    assert torch.allclose(total, log_qz_x - log_pz, atol=1e-10)


def test_tcvae_decomposition_averages_to_the_analytic_kl():
    g = torch.Generator().manual_seed(6)
    mu, logvar = torch.randn(4, 3, generator=g).double(), (0.5 * torch.randn(4, 3, generator=g)).double()
    draws = 4000  # each draw: one z per posterior, i.e. one mini-batch of 4
    z = mu + torch.exp(0.5 * logvar) * torch.randn(draws, 4, 3, generator=g).double()
    terms = [tcvae_terms(z[s], mu, logvar, dataset_size=50) for s in range(draws)]
    est = torch.stack([t["mi"] + t["tc"] + t["dwkl"] for t in terms]).mean(0)
    assert torch.allclose(est, kl_standard_normal(mu, logvar), atol=0.15)
    # the individual terms are not the KL on their own
    assert not torch.allclose(torch.stack([t["tc"] for t in terms]).mean(0), kl_standard_normal(mu, logvar), atol=0.15)


def test_tcvae_with_unit_weights_is_the_elbo_with_a_one_sample_kl():
    model = _TinyVAE()
    x = (torch.rand(7, 6, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    torch.manual_seed(1)
    loss, metrics = TCVAEObjective(beta=1.0, dataset_size=1000).loss(model, (x,))
    torch.manual_seed(1)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    rec = F.binary_cross_entropy_with_logits(model.dec(z), x, reduction="none").sum(1)
    one_sample_kl = gaussian_log_density(z, mu, logvar).sum(1) - gaussian_log_density(
        z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    assert loss.item() == pytest.approx((rec + one_sample_kl).mean().item(), rel=1e-5)
    assert metrics["mi"] + metrics["tc"] + metrics["dwkl"] == pytest.approx(one_sample_kl.mean().item(), rel=1e-4)
    torch.manual_seed(1)
    heavy, m2 = TCVAEObjective(beta=6.0, dataset_size=1000).loss(model, (x,))
    assert heavy.item() == pytest.approx(loss.item() + 5.0 * m2["tc"].item(), rel=1e-5)


def test_vae_objective_needs_encode_and_decode():
    with pytest.raises(TypeError, match="encode"):
        BetaVAEObjective().loss(nn.Linear(2, 2), (torch.rand(2, 2),))
