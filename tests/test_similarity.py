"""similarity_rates: known answers, a loop reference, K = N limit, errors."""

from __future__ import annotations

import pytest
import torch

from xairepro.errors import UsageError
from xairepro.metrics import similarity_rates
from xairepro.metrics.similarity import ks_from_fractions


pytestmark = pytest.mark.usefixtures("one_thread")


def loop_reference(scores, y_train, y_test, ks):
    most, least = [], []
    for k in ks:
        m = l = 0.0
        for i in range(scores.shape[0]):
            order = sorted(range(scores.shape[1]), key=lambda j: (-scores[i, j].item(), j))
            m += sum(int(y_train[j] == y_test[i]) for j in order[:k]) / k
            l += sum(int(y_train[j] == y_test[i]) for j in order[::-1][:k]) / k
        most.append(m / scores.shape[0])
        least.append(l / scores.shape[0])
    return torch.tensor(most), torch.tensor(least)


def test_perfect_scores() -> None:
    y_train = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])   # class 0: 4 of 10, classes 1, 2: 3 of 10
    y_test = torch.tensor([0, 1, 2, 2])
    scores = (y_test[:, None] == y_train[None]).float() + 0.01 * torch.rand(4, 10)
    r = similarity_rates(scores, y_train, y_test, ks=[1, 2, 3, 10])
    assert set(r) == {"most", "least"} and r["most"].shape == (4,)
    torch.testing.assert_close(r["most"][:3], torch.ones(3))
    torch.testing.assert_close(r["least"][:3], torch.zeros(3))
    class_frequency = (0.4 + 0.3 + 0.3 + 0.3) / 4
    torch.testing.assert_close(r["most"][3], torch.tensor(class_frequency))
    torch.testing.assert_close(r["least"][3], torch.tensor(class_frequency))


def test_matches_loop_reference_with_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (6, 15), generator=gen).float()   # many ties
    y_train = torch.randint(0, 3, (15,), generator=gen)
    y_test = torch.randint(0, 3, (6,), generator=gen)
    ks = [1, 3, 7, 15]
    r = similarity_rates(scores, y_train, y_test, ks)
    most, least = loop_reference(scores, y_train, y_test, ks)
    torch.testing.assert_close(r["most"], most)
    torch.testing.assert_close(r["least"], least)
    per_test = similarity_rates(scores, y_train, y_test, ks, reduction="none")
    assert per_test["most"].shape == (4, 6)
    torch.testing.assert_close(per_test["most"].mean(1), r["most"])


def test_ks_from_fractions() -> None:
    assert ks_from_fractions(1000) == [50, 100, 200, 500, 700, 1000]
    assert ks_from_fractions(10, [0.01, 0.5]) == [1, 5]
    with pytest.raises(UsageError):
        ks_from_fractions(10, [1.5])


def test_errors() -> None:
    scores = torch.rand(3, 5)
    y_train, y_test = torch.arange(5), torch.arange(3)
    with pytest.raises(UsageError, match="1..n_train = 5"):
        similarity_rates(scores, y_train, y_test, ks=[6])
    with pytest.raises(UsageError, match="1..n_train"):
        similarity_rates(scores, y_train, y_test, ks=[0])
    with pytest.raises(UsageError, match="y_train has 4 labels"):
        similarity_rates(scores, y_train[:4], y_test, ks=[1])
    with pytest.raises(UsageError, match="y_test has 2 labels"):
        similarity_rates(scores, y_train, y_test[:2], ks=[1])
    with pytest.raises(UsageError, match="at least one"):
        similarity_rates(torch.rand(3, 0), y_train[:0], y_test, ks=[1])
    with pytest.raises(UsageError, match="NaN"):
        similarity_rates(torch.full((3, 5), float("nan")), y_train, y_test, ks=[1])
    with pytest.raises(UsageError, match="n_test, n_train"):
        similarity_rates(torch.rand(5), y_train, y_test, ks=[1])
