"""Insertion/deletion: exact oracles worked out by hand, a per-image reference loop, invariances, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import gaussian_blur
from xairepro.metrics import InsertionDeletionProtocol, insertion_deletion


class PixelSum(nn.Module):
    """One-class model whose raw score is the sum of all pixel values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(dim=1, keepdim=True)


def _raw_zeros(step: int, auc_x: str, include_final: bool = True) -> InsertionDeletionProtocol:
    return InsertionDeletionProtocol(pixels_per_step=step, n_steps=None, insertion_start="zeros",
                                     deletion_end="zeros", score="raw", auc_x=auc_x, include_final=include_final)


# --- exact oracles -------------------------------------------------------------------------------------------

def test_four_pixels_two_per_step_fraction_axis() -> None:
    # x = [0.4, 0.3, 0.2, 0.1], sum 1, saliency = x.  Deletion curve 1, 0.3, 0 at fractions 0, .5, 1:
    # area = .5 * (1 + .3) / 2 + .5 * (.3 + 0) / 2 = 0.4; insertion curve 0, .7, 1: area 0.6.
    x = torch.tensor([0.4, 0.3, 0.2, 0.1]).view(1, 1, 2, 2)
    r = insertion_deletion(PixelSum(), x, x[:, 0], _raw_zeros(2, "fraction"))
    assert r.deletion.item() == pytest.approx(0.4, abs=1e-6)
    assert r.insertion.item() == pytest.approx(0.6, abs=1e-6)
    assert r.overall.item() == pytest.approx(0.2, abs=1e-6)
    torch.testing.assert_close(r.deletion_curve, torch.tensor([[1.0, 0.3, 0.0]]))
    torch.testing.assert_close(r.insertion_curve, torch.tensor([[0.0, 0.7, 1.0]]))
    torch.testing.assert_close(r.fractions, torch.tensor([0.0, 0.5, 1.0]))
    # equal steps: Petsiuk's uniform axis gives the same numbers
    u = insertion_deletion(PixelSum(), x, x[:, 0], _raw_zeros(2, "uniform"))
    assert (u.deletion.item(), u.insertion.item()) == pytest.approx((0.4, 0.6), abs=1e-6)


def test_five_pixels_two_per_step_partial_last_step() -> None:
    # x = [.3, .25, .2, .15, .1]; 3 steps replace 2, 4, 5 pixels (last step partial).
    # Deletion curve 1, .45, .1, 0 at fractions 0, .4, .8, 1:
    #   .4 * 1.45 / 2 + .4 * .55 / 2 + .2 * .1 / 2 = .29 + .11 + .01 = 0.41
    # Insertion curve 0, .55, .9, 1: .4 * .55 / 2 + .4 * 1.45 / 2 + .2 * 1.9 / 2 = .11 + .29 + .19 = 0.59
    # Uniform axis (Petsiuk): deletion (1 + .45 + .1 + 0 - (1 + 0) / 2) / 3 = 0.35, insertion (2.45 - .5) / 3 = 0.65
    x = torch.tensor([0.3, 0.25, 0.2, 0.15, 0.1]).view(1, 1, 1, 5)
    r = insertion_deletion(PixelSum(), x, x[:, 0], _raw_zeros(2, "fraction"))
    assert r.deletion.item() == pytest.approx(0.41, abs=1e-6)
    assert r.insertion.item() == pytest.approx(0.59, abs=1e-6)
    torch.testing.assert_close(r.fractions, torch.tensor([0.0, 0.4, 0.8, 1.0]))
    torch.testing.assert_close(r.deletion_curve, torch.tensor([[1.0, 0.45, 0.1, 0.0]]))
    u = insertion_deletion(PixelSum(), x, x[:, 0], _raw_zeros(2, "uniform"))
    assert u.deletion.item() == pytest.approx(0.35, abs=1e-6)
    assert u.insertion.item() == pytest.approx(0.65, abs=1e-6)


def test_final_point_dropped_like_lico_fact() -> None:
    # Points k = 0, 1, 2 only: deletion 1, .45, .1 -> uniform (1.55 - 1.1 / 2) / 2 = 0.5
    x = torch.tensor([0.3, 0.25, 0.2, 0.15, 0.1]).view(1, 1, 1, 5)
    r = insertion_deletion(PixelSum(), x, x[:, 0], _raw_zeros(2, "uniform", include_final=False))
    assert r.deletion_curve.shape == (1, 3)
    assert r.deletion.item() == pytest.approx(0.5, abs=1e-6)
    # insertion 0, .55, .9 -> (1.45 - .45) / 2 = 0.5
    assert r.insertion.item() == pytest.approx(0.5, abs=1e-6)


def test_petsiuk_preset_steps() -> None:
    p = InsertionDeletionProtocol.petsiuk()
    assert p.step_pixels(32 * 32) == math.ceil(1024 / 28) == 37
    counts = p.replaced_counts(32 * 32)
    assert counts.numel() == 29 and counts[-1].item() == 1024 and counts[-2].item() == 27 * 37
    lf = InsertionDeletionProtocol.lico_fact()
    assert (lf.pixels_per_step, lf.blur_kernel, lf.target) == (10, 9, "label")
    assert lf.replaced_counts(1024)[-1].item() < 1024  # the fully replaced image is never scored


# --- reference loop: one image, one step per forward -----------------------------------------------------------

def _reference(model: nn.Module, x: torch.Tensor, sal: torch.Tensor, p: InsertionDeletionProtocol,
               labels: torch.Tensor | None = None) -> tuple[list[float], list[float], list[list[float]]]:
    ins, dels, dcurves = [], [], []
    model.eval()
    with torch.no_grad():
        for i in range(x.shape[0]):
            img = x[i:i + 1]
            hw = img.shape[2] * img.shape[3]
            logits = model(img)
            c = int(labels[i]) if p.target == "label" else int(logits.argmax())
            blur = gaussian_blur(img, p.blur_kernel, p.blur_sigma)
            order = sorted(range(hw), key=lambda j: (-float(sal[i].flatten()[j]), j))
            step = p.pixels_per_step or math.ceil(hw / p.n_steps)
            n = math.ceil(hw / step)
            ks = range(n + 1) if p.include_final else range(n)
            both = []
            for start, finish in ((img, torch.zeros_like(img)), (blur if p.insertion_start == "blur" else 0 * img, img)):
                curve = []
                for k in ks:
                    cur = start.clone().flatten(2)
                    for j in order[:min(k * step, hw)]:
                        cur[..., j] = finish.flatten(2)[..., j]
                    out = model(cur.view_as(img))
                    out = torch.softmax(out, 1) if p.score == "softmax" else out
                    curve.append(float(out[0, c]))
                both.append(curve)
            d, s = both
            m = len(d) - 1
            dels.append((sum(d) - (d[0] + d[-1]) / 2) / m)
            ins.append((sum(s) - (s[0] + s[-1]) / 2) / m)
            dcurves.append(d)
    return ins, dels, dcurves


def _small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5))


def test_matches_reference_loop_and_batching() -> None:
    model = _small_cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 6, 7, generator=g)
    sal = torch.rand(3, 6, 7, generator=g)
    p = InsertionDeletionProtocol(pixels_per_step=4, n_steps=None, blur_kernel=5, blur_sigma=2.0)
    ref_ins, ref_del, ref_dc = _reference(model, x, sal, p)
    # 22 jobs per image (11 deletion, 11 insertion steps): these chunk sizes cut runs at every kind of place
    # (inside a curve, between the curves, across images, several images per chunk)
    for bs in (1, 3, 5, 7, 29, 57, 1000):
        r = insertion_deletion(model, x, sal, p, batch_size=bs)
        torch.testing.assert_close(r.insertion, torch.tensor(ref_ins), atol=1e-5, rtol=0)
        torch.testing.assert_close(r.deletion, torch.tensor(ref_del), atol=1e-5, rtol=0)
        torch.testing.assert_close(r.deletion_curve, torch.tensor(ref_dc), atol=1e-5, rtol=0)
    one = [insertion_deletion(model, x[i:i + 1], sal[i:i + 1], p, batch_size=3) for i in range(3)]
    torch.testing.assert_close(torch.cat([o.insertion for o in one]), r.insertion, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([o.deletion_curve for o in one]), r.deletion_curve, atol=1e-5, rtol=0)


def test_label_target_and_reference() -> None:
    model = _small_cnn(3)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 5, 5, generator=g)
    sal = torch.rand(2, 5, 5, generator=g)
    labels = torch.tensor([4, 1])
    p = InsertionDeletionProtocol(pixels_per_step=3, n_steps=None, blur_kernel=3, blur_sigma=1.0,
                                  target="label", include_final=False)
    ref_ins, ref_del, _ = _reference(model, x, sal, p, labels)
    for bs in (None, 1, 3, 7, 29, 1000):   # 17 jobs per image: 8 deletion steps, 9 insertion points
        r = insertion_deletion(model, x, sal, p, labels=labels, batch_size=bs)
        torch.testing.assert_close(r.insertion, torch.tensor(ref_ins), atol=1e-5, rtol=0)
        torch.testing.assert_close(r.deletion, torch.tensor(ref_del), atol=1e-5, rtol=0)
    assert r.targets.tolist() == [4, 1]
    # with the predicted-class protocol, labels are ignored
    pp = dataclasses.replace(p, target="predicted")
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    assert pred.tolist() != labels.tolist()  # otherwise this check could not fail
    assert insertion_deletion(model, x, sal, pp, labels=labels).targets.tolist() == pred.tolist()
    torch.testing.assert_close(insertion_deletion(model, x, sal, pp, labels=labels).insertion,
                               insertion_deletion(model, x, sal, pp).insertion)


# --- invariances -----------------------------------------------------------------------------------------------

def test_inputs_and_model_untouched() -> None:
    model = _small_cnn()
    model.train()
    for prm in model.parameters():
        prm.grad = torch.full_like(prm, 0.5)
    bn_mean = model[1].running_mean.clone()
    x = torch.rand(2, 3, 6, 6)
    sal = torch.rand(2, 6, 6)
    x0, s0 = x.clone(), sal.clone()
    r = insertion_deletion(model, x, sal, InsertionDeletionProtocol(pixels_per_step=6, n_steps=None, blur_kernel=3))
    assert torch.equal(x, x0) and torch.equal(sal, s0)
    r.insertion_curve.mul_(1.0)   # ordinary tensors, not inference-mode ones
    assert not r.deletion.is_inference()
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, bn_mean)
    assert all(torch.equal(prm.grad, torch.full_like(prm, 0.5)) for prm in model.parameters())


def test_reversed_good_saliency_is_worse() -> None:
    # linear two-class model; the exact attribution of class 0 is v0 * x (summed over channels)
    torch.manual_seed(4)
    lin = nn.Linear(3 * 6 * 6, 2, bias=False)
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(4, 3, 6, 6)
    good = (lin.weight[0] - lin.weight[1]).detach().view(3, 6, 6).mul(x).sum(1)
    labels = torch.zeros(4, dtype=torch.long)
    p = InsertionDeletionProtocol(pixels_per_step=4, n_steps=None, insertion_start="zeros", target="label")
    a = insertion_deletion(model, x, good, p, labels=labels)
    b = insertion_deletion(model, x, -good, p, labels=labels)
    assert bool((a.insertion > b.insertion).all()) and bool((a.deletion < b.deletion).all())
    assert bool((a.overall > b.overall).all())


def test_protocol_as_spec_9_writes_it() -> None:
    # SPEC 9's call names pixels_per_step and not n_steps; it must be valid as written
    p = InsertionDeletionProtocol(pixels_per_step=10, insertion_start="blur", blur_kernel=11, blur_sigma=5.0,
                                  deletion_end="zeros", target="predicted", score="softmax", auc_x="uniform")
    assert (p.pixels_per_step, p.n_steps, p.step_pixels(1024)) == (10, None, 10)
    d = InsertionDeletionProtocol()                    # neither given: Petsiuk's 28 steps
    assert (d.pixels_per_step, d.n_steps, d.step_pixels(1024)) == (None, 28, 37)
    assert InsertionDeletionProtocol(**p.to_dict()) == p and InsertionDeletionProtocol(**d.to_dict()) == d
    assert InsertionDeletionProtocol(n_steps=28).digest == InsertionDeletionProtocol().digest


def test_protocol_record_is_stable() -> None:
    p = InsertionDeletionProtocol.petsiuk()
    d = p.to_dict()
    assert d["n_steps"] == 28 and d["auc_x"] == "uniform" and d["pixel_space"] is True
    assert p.digest == InsertionDeletionProtocol(**d).digest
    assert p.digest != InsertionDeletionProtocol.lico_fact().digest
    # independent of the Python hash seed: SHA-256 of the sorted JSON record
    blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    assert p.digest == hashlib.sha256(blob).hexdigest()[:16]
    with pytest.raises(Exception):
        p.score = "raw"  # type: ignore[misc]  # frozen


# --- bad input -------------------------------------------------------------------------------------------------

def test_bad_inputs() -> None:
    model = _small_cnn()
    x = torch.rand(2, 3, 6, 6)
    p = InsertionDeletionProtocol(pixels_per_step=6, n_steps=None, blur_kernel=3)
    with pytest.raises(UsageError, match=r"saliency has shape \(2, 5, 6\) but images are 2 x 6 x 6"):
        insertion_deletion(model, x, torch.rand(2, 5, 6), p)
    with pytest.raises(UsageError, match="saliency has shape"):
        insertion_deletion(model, x, torch.rand(3, 6, 6), p)
    bad = torch.rand(2, 6, 6)
    bad[1, 2, 3] = float("nan")
    with pytest.raises(UsageError, match="NaN"):
        insertion_deletion(model, x, bad, p)
    with pytest.raises(UsageError, match="empty batch"):
        insertion_deletion(model, x[:0], torch.rand(0, 6, 6), p)
    lp = InsertionDeletionProtocol(pixels_per_step=6, n_steps=None, blur_kernel=3, target="label")
    with pytest.raises(UsageError, match="labels"):
        insertion_deletion(model, x, torch.rand(2, 6, 6), lp)
    with pytest.raises(UsageError, match="out of range"):
        insertion_deletion(model, x, torch.rand(2, 6, 6), lp, labels=torch.tensor([0, 5]))
    with pytest.raises(UsageError, match="exactly one"):
        InsertionDeletionProtocol(pixels_per_step=3, n_steps=28)
    with pytest.raises(UsageError, match="score"):
        InsertionDeletionProtocol(score="logit")
    with pytest.raises(UsageError, match="unknown"):
        InsertionDeletionProtocol.preset("nope")
