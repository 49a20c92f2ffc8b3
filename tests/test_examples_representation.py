"""SimplEx and DkNN: latent-rotation invariance, batched = per-row fitting, duplicates, known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import DKNN, SimplEx


pytestmark = pytest.mark.usefixtures("one_thread")


def encoder_and_rotated(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    rot = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        rot.weight.copy_(q)
    return enc, nn.Sequential(enc, rot)


def test_dknn_closed_form_and_rotation_invariance() -> None:
    enc, rotated = encoder_and_rotated()
    x_train, x_test = torch.randn(20, 5), torch.randn(6, 5)
    scores = DKNN(enc).attribute(x_test, x_train)
    with torch.no_grad():
        h_test, h_train = enc(x_test), enc(x_train)
    expected = 1 / ((h_test[:, None] - h_train[None]) ** 2).sum(-1)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(DKNN(rotated).attribute(x_test, x_train), scores, rtol=1e-3, atol=0)


def test_dknn_finite_on_duplicates_and_duplicate_ranks_first() -> None:
    enc, _ = encoder_and_rotated()
    x_train = torch.randn(10, 5)
    x_test = torch.cat([x_train[3:4], x_train[7:8]])
    scores = DKNN(enc).attribute(x_test, x_train)
    assert torch.isfinite(scores).all()
    assert scores.argmax(1).tolist() == [3, 7]
    same = DKNN(enc).attribute(x_train[:4], x_train[:4])
    assert torch.isfinite(same).all() and torch.equal(same.argmax(1), torch.arange(4))


def test_dknn_chunked_distances_equal_whole(monkeypatch) -> None:
    import xairepro.explain.dknn as dknn

    enc, _ = encoder_and_rotated()
    x_train, x_test = torch.randn(30, 5), torch.randn(17, 5)
    whole = DKNN(enc).attribute(x_test, x_train)
    monkeypatch.setattr(dknn, "_BLOCK_ELEMENTS", 90)  # 1 test row per block
    torch.testing.assert_close(DKNN(enc, batch_size=4).attribute(x_test, x_train), whole, rtol=1e-5, atol=0)


def test_simplex_batched_equals_per_row_fitting() -> None:
    enc, _ = encoder_and_rotated()
    x_train, x_test = torch.randn(25, 5), torch.randn(7, 5)
    explainer = SimplEx(enc, steps=120, lr=1e-2)
    batched = explainer.attribute(x_test, x_train)
    per_row = torch.cat([explainer.attribute(x_test[i:i + 1], x_train) for i in range(7)])
    assert batched.shape == (7, 25)
    torch.testing.assert_close(batched, per_row, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(batched.sum(1), torch.ones(7))
    chunked = SimplEx(enc, steps=120, lr=1e-2, test_batch_size=3).attribute(x_test, x_train)
    torch.testing.assert_close(chunked, batched, rtol=1e-5, atol=1e-7)


def test_simplex_matches_independent_adam_reference() -> None:
    """Independent Adam written out by hand on the summed squared error (the SimplEx objective)."""
    enc, _ = encoder_and_rotated()
    x_train, x_test = torch.randn(12, 5), torch.randn(4, 5)
    with torch.no_grad():
        h_test, h_train = enc(x_test).double(), enc(x_train).double()
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    a = torch.zeros(4, 12, dtype=torch.float64)
    m = torch.zeros_like(a)
    v = torch.zeros_like(a)
    for t in range(1, 201):
        w = torch.softmax(a, 1)
        dw = 2 * (w @ h_train - h_test) @ h_train.T
        g = w * (dw - (w * dw).sum(1, keepdim=True))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        a = a - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
    got = SimplEx(enc, steps=200, lr=lr).attribute(x_test, x_train)
    torch.testing.assert_close(got.double(), torch.softmax(a, 1), rtol=1e-4, atol=1e-6)


def test_simplex_rotation_invariance_and_recovers_a_corpus_point() -> None:
    enc, rotated = encoder_and_rotated()
    x_train = torch.randn(15, 5)
    x_test = torch.cat([x_train[4:5], torch.randn(3, 5)])
    a = SimplEx(enc, steps=400, lr=5e-2).attribute(x_test, x_train)
    b = SimplEx(rotated, steps=400, lr=5e-2).attribute(x_test, x_train)
    torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-4)
    assert a[0].argmax().item() == 4


def test_model_state_restored_and_errors() -> None:
    enc = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    enc.train()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    x = torch.randn(6, 4)
    s1 = DKNN(enc).attribute(x, x)
    s2 = DKNN(enc).attribute(x, x)
    assert torch.equal(s1, s2)  # eval mode: dropout off, BN statistics untouched
    assert enc.training and all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    SimplEx(enc, steps=5).attribute(x, x)
    assert enc.training and all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    for explainer in (DKNN(enc), SimplEx(enc, steps=2)):
        with pytest.raises(UsageError, match="no examples"):
            explainer.attribute(x, x[:0])
        with pytest.raises(UsageError, match="no examples"):
            explainer.attribute(x[:0], x)
    with pytest.raises(UsageError, match="steps"):
        SimplEx(enc, steps=0)
    with pytest.raises(UsageError, match="eps"):
        DKNN(enc, eps=0.0)
