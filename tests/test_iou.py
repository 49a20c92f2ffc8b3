"""Soft IoU: hand-computed values, empty masks, batch pooling, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from xairepro.errors import UsageError
from xairepro.metrics import soft_iou


def _square(top: int, left: int, size: int = 4, n: int = 8) -> torch.Tensor:
    m = torch.zeros(n, n)
    m[top:top + size, left:left + size] = 1.0
    return m


def test_half_overlapping_squares_is_one_third() -> None:
    # two 4x4 squares shifted by 2 columns: intersection 8, union 16 + 16 - 8 = 24
    s = _square(2, 1)[None]
    m = _square(2, 3).bool()[None]
    assert soft_iou(s, m).item() == pytest.approx(1 / 3, abs=1e-7)
    assert soft_iou(s, m, reduction="batch").item() == pytest.approx(1 / 3, abs=1e-7)


def test_soft_values_and_reductions() -> None:
    s = torch.tensor([[[0.5, 1.0], [0.0, 0.25]], [[1.0, 1.0], [1.0, 1.0]], [[0.2, 0.0], [0.0, 0.0]]])
    m = torch.tensor([[[1, 0], [0, 1]], [[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=torch.uint8)
    # image 0: inter .5 + .25 = .75; union = sum(s + m - s m) = (1) + (1) + 0 + (1) = 3 -> 0.25
    # image 1: inter 1; union 4 -> 0.25; image 2: empty mask -> NaN
    per = soft_iou(s, m)
    assert per[:2].tolist() == pytest.approx([0.25, 0.25]) and math.isnan(per[2].item())
    # batch: pooled over images with a non-empty mask: (0.75 + 1) / (3 + 4)
    assert soft_iou(s, m, reduction="batch").item() == pytest.approx(1.75 / 7)
    assert math.isnan(soft_iou(s[2:], m[2:], reduction="batch").item())
    # pooled, not the mean of per-image values: 1/4 (union 4) and 1/1 (union 1) pool to 2/5, not 0.625
    s2 = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    m2 = torch.tensor([[[1, 1], [1, 1]], [[1, 0], [0, 0]]]).bool()
    assert soft_iou(s2, m2).tolist() == pytest.approx([0.25, 1.0])
    assert soft_iou(s2, m2, reduction="batch").item() == pytest.approx(0.4)
    # perfect agreement
    assert soft_iou(m[:2].float(), m[:2]).tolist() == pytest.approx([1.0, 1.0])


def test_bad_input() -> None:
    s = torch.rand(2, 4, 4)
    with pytest.raises(UsageError, match=r"saliency has shape \(2, 4, 4\) but masks have shape \(2, 4, 5\)"):
        soft_iou(s, torch.ones(2, 4, 5))
    with pytest.raises(UsageError, match="binary"):
        soft_iou(s, torch.full((2, 4, 4), 0.5))
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        soft_iou(s * 3, torch.ones(2, 4, 4))
    bad = s.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(UsageError, match="NaN"):
        soft_iou(bad, torch.ones(2, 4, 4))
    with pytest.raises(UsageError, match="reduction"):
        soft_iou(s, torch.ones(2, 4, 4), reduction="mean")
    with pytest.raises(UsageError, match="empty"):
        soft_iou(torch.rand(0, 4, 4), torch.ones(0, 4, 4))
