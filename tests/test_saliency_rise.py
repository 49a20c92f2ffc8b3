"""RISE: exact oracle on a linear model with enumerated masks, mask generation, seeds, invariances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from xairepro.errors import UsageError
from xairepro.explain import RISE, generate_rise_masks


def _linear(c: int, h: int, w: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    lin = nn.Linear(c * h * w, 1, bias=False)
    return nn.Sequential(nn.Flatten(), lin), lin.weight.detach().view(c, h, w)


def _all_masks(n: int, h: int, w: int, weight_of_zero: int = 1) -> torch.Tensor:
    """Every binary mask over n = h*w pixels; each repeated weight_of_zero ** (#zeros) times."""
    out = []
    for bits in itertools.product([0.0, 1.0], repeat=n):
        out += [torch.tensor(bits).view(h, w)] * weight_of_zero ** int(n - sum(bits))
    return torch.stack(out)


def test_enumerated_masks_on_linear_model_give_closed_form() -> None:
    # E[f(x * M) M_i] / p = (1 - p) v_i . x_i + p f(x) for Bernoulli(p) masks and f linear without bias
    c, h, w = 2, 2, 2
    model, v = _linear(c, h, w)
    x = torch.rand(3, c, h, w)
    f = (v * x).flatten(1).sum(1)                                         # (B,)
    for p, weight in ((0.5, 1), (1 / 3, 2)):   # p = 1/3: a mask with z zeros repeated 2^z times -> 3^n masks
        masks = _all_masks(h * w, h, w, weight)
        assert masks.shape[0] == (2 ** (h * w) if weight == 1 else 3 ** (h * w))
        rise = RISE(model, p1=p, masks=masks, batch_size=7, score="raw", normalize=False)
        sal = rise(x, target=0)
        expected = (1 - p) * (v * x).sum(1) + p * f[:, None, None]
        torch.testing.assert_close(sal, expected, atol=1e-5, rtol=1e-5)
        normed = RISE(model, p1=p, masks=masks, score="raw")(x, target=0)
        low = expected.flatten(1).min(1).values[:, None, None]
        high = expected.flatten(1).max(1).values[:, None, None]
        torch.testing.assert_close(normed, (expected - low) / (high - low), atol=1e-5, rtol=0)


def _reference_masks(n: int, h: int, w: int, s: int, p1: float, seed: int) -> torch.Tensor:
    """Same draws as generate_rise_masks; bilinear (half-pixel centres, clamped edges) written out in numpy."""
    gen = torch.Generator().manual_seed(seed)
    grid = (torch.rand(n, s, s, generator=gen) < p1).double().numpy()
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    sy = torch.randint(0, ch, (n,), generator=gen).numpy()
    sx = torch.randint(0, cw, (n,), generator=gen).numpy()
    uh, uw = (s + 1) * ch, (s + 1) * cw

    def coords(out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(out) + 0.5) * s / out - 0.5, 0, s - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, s - 1)
        return lo, hi, src - lo

    ylo, yhi, fy = coords(uh)
    xlo, xhi, fx = coords(uw)
    masks = np.empty((n, h, w))
    for i in range(n):
        g = grid[i]
        rows = g[ylo] * (1 - fy)[:, None] + g[yhi] * fy[:, None]
        up = rows[:, xlo] * (1 - fx)[None] + rows[:, xhi] * fx[None]
        masks[i] = up[sy[i]:sy[i] + h, sx[i]:sx[i] + w]
    return torch.from_numpy(masks).float()


def test_generated_masks_match_definition_and_seed() -> None:
    for (h, w, s) in ((12, 12, 4), (10, 7, 3)):
        m = generate_rise_masks(50, (h, w), cell_size=s, p1=0.3, seed=5)
        assert m.shape == (50, h, w) and m.dtype == torch.float32
        torch.testing.assert_close(m, _reference_masks(50, h, w, s, 0.3, 5), atol=1e-5, rtol=0)
    a = generate_rise_masks(20, (8, 8), 4, 0.5, seed=1)
    assert torch.equal(a, generate_rise_masks(20, (8, 8), 4, 0.5, seed=1))
    assert not torch.equal(a, generate_rise_masks(20, (8, 8), 4, 0.5, seed=2))
    big = generate_rise_masks(4000, (16, 16), 8, 0.1, seed=0)
    assert abs(float(big.mean()) - 0.1) < 0.01 and float(big.min()) >= 0 and float(big.max()) <= 1
    torch.testing.assert_close(generate_rise_masks(5, (8, 8), 4, 1.0, seed=0), torch.ones(5, 8, 8))


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3))


def test_seeds_batching_chunks_and_state() -> None:
    model = _cnn()
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 2.0)
    bn = model[1].running_var.clone()
    x = torch.rand(3, 3, 8, 8)
    x0 = x.clone()
    sal = RISE(model, n_masks=60, cell_size=4, p1=0.5, batch_size=16, seed=3)(x)
    assert sal.shape == (3, 8, 8) and float(sal.min()) >= 0 and float(sal.max()) <= 1
    assert torch.equal(sal, RISE(model, n_masks=60, cell_size=4, p1=0.5, batch_size=16, seed=3)(x))
    assert not torch.allclose(sal, RISE(model, n_masks=60, cell_size=4, p1=0.5, batch_size=16, seed=4)(x))
    for bs in (1, 7, 500):
        torch.testing.assert_close(RISE(model, 60, 4, 0.5, batch_size=bs, seed=3)(x), sal, atol=1e-5, rtol=0)
    rise = RISE(model, 60, 4, 0.5, batch_size=16, seed=3)
    one = torch.cat([rise(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(one, sal, atol=1e-5, rtol=0)
    # masks are generated once and reused; given masks reproduce the seeded ones
    masks = rise.masks_for((8, 8), x.device)
    assert rise.masks_for((8, 8), x.device) is masks
    torch.testing.assert_close(RISE(model, p1=0.5, masks=masks)(x), sal, atol=1e-5, rtol=0)
    assert torch.equal(x, x0)
    assert all(m.training for m in model.modules()) and torch.equal(model[1].running_var, bn)
    assert all(torch.equal(p.grad, torch.full_like(p, 2.0)) for p in model.parameters())


def test_target_is_used() -> None:
    model = _cnn(1)
    x = torch.rand(2, 3, 8, 8)
    rise = RISE(model, 40, 4, 0.5, seed=0, normalize=False)
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    torch.testing.assert_close(rise(x), rise(x, target=pred))
    other = (pred + 1) % 3
    assert not torch.allclose(rise(x), rise(x, target=other))


def test_per_image_targets_pair_with_their_images() -> None:
    # different classes per image; chunks of 7 cut the runs of masks of one image
    model = _cnn(2)
    x = torch.rand(3, 3, 8, 8)
    t = torch.tensor([2, 0, 1])
    rise = RISE(model, 30, 4, 0.5, batch_size=7, seed=1, normalize=False)
    whole = rise(x, target=t)
    one = torch.cat([rise(x[i:i + 1], target=int(t[i])) for i in range(3)])
    torch.testing.assert_close(whole, one, atol=1e-6, rtol=0)
    assert not torch.allclose(whole, rise(x, target=int(t[0])))


class _SyncCounter(TorchDispatchMode):
    """Counts device-to-host reads (``.item()``, ``int(tensor)``, a 0-d tensor used as an index)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_host_syncs_do_not_grow_with_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a GPU every device-to-host read stalls the queue; the number of reads must not depend on the
    # number of chunks.  Dispatch modes do not see inference-mode tensors, so no_grad stands in for it.
    from xairepro.explain import GroupCAM
    from xairepro.metrics import InsertionDeletionProtocol, insertion_deletion

    monkeypatch.setattr(torch, "inference_mode", torch.no_grad)
    model = _cnn(3)
    x = torch.rand(3, 3, 8, 8)
    t = torch.tensor([0, 2, 1])
    sal = torch.rand(3, 8, 8)
    proto = InsertionDeletionProtocol(pixels_per_step=4, n_steps=None, blur_kernel=3, target="label")
    runs = {
        "rise": lambda bs: RISE(model, 40, 4, 0.5, batch_size=bs, seed=0)(x, target=t),
        "groupcam": lambda bs: GroupCAM(model, "2", groups=2, blur_kernel=3, batch_size=bs)(x, target=t),
        "insertion_deletion": lambda bs: insertion_deletion(model, x, sal, proto, labels=t, batch_size=bs),
    }
    for name, run in runs.items():
        counts = []
        for bs in (3, 1000):
            run(bs)   # masks generated, caches warm
            with _SyncCounter() as counter:
                run(bs)
            counts.append(counter.count)
        assert counts[0] == counts[1], (name, counts)


def test_bad_inputs() -> None:
    model = _cnn()
    with pytest.raises(UsageError, match="out of range"):
        RISE(model, 10, 4, seed=0)(torch.rand(1, 3, 8, 8), target=3)
    with pytest.raises(UsageError, match="masks are 4 x 4 but images are 8 x 8"):
        RISE(model, masks=torch.rand(5, 4, 4))(torch.rand(1, 3, 8, 8))
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        RISE(model, masks=torch.full((5, 8, 8), 2.0))
    with pytest.raises(UsageError, match="p1"):
        RISE(model, p1=0.0)
    with pytest.raises(UsageError, match="empty batch"):
        RISE(model, 10, 4)(torch.rand(0, 3, 8, 8))
    bad = torch.rand(1, 3, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(UsageError, match="NaN"):
        RISE(model, 10, 4)(bad)


class _FailsLater(nn.Module):
    """Conv net whose forward raises from the ``fail_at``-th call on (model left in train mode)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.net = _cnn(5)
        self.calls, self.fail_at = 0, fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("forward failed")
        return self.net(x)


def test_state_restored_after_a_failing_forward() -> None:
    from xairepro.explain import GroupCAM
    from xairepro.metrics import InsertionDeletionProtocol, insertion_deletion

    x = torch.rand(2, 3, 8, 8)
    runs = [
        lambda m: RISE(m, 20, 4, 0.5, batch_size=4, seed=0)(x),
        lambda m: GroupCAM(m, "net.2", groups=2, blur_kernel=3, batch_size=1)(x),
        lambda m: insertion_deletion(m, x, torch.rand(2, 8, 8),
                                     InsertionDeletionProtocol(pixels_per_step=8, n_steps=None, blur_kernel=3),
                                     batch_size=4),
    ]
    for run in runs:
        model = _FailsLater(fail_at=3)
        model.train()
        for p in model.parameters():
            p.grad = torch.full_like(p, 7.0)
        with pytest.raises(RuntimeError, match="forward failed"):
            run(model)
        assert all(m.training for m in model.modules())
        assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
        assert all(not m._forward_hooks for m in model.modules())
