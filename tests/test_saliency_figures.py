"""Saliency figures: the grid and the curves are drawn from the data given and written as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.metrics import InsertionDeletionProtocol, insertion_deletion
from xairepro.report.saliency_figures import insertion_deletion_curves, saliency_grid


def test_grid_layout_and_file(tmp_path: Path) -> None:
    images = torch.rand(3, 3, 8, 8)
    maps = {"a": torch.rand(3, 8, 8), "b": torch.zeros(3, 8, 8)}
    out = tmp_path / "sub" / "grid.png"
    fig = saliency_grid(images, maps, row_titles=["x", "y", "z"], path=out)
    assert len(fig.axes) == 3 * 3
    assert fig.axes[1].get_title() == "a" and fig.axes[2].get_title() == "b"
    shown = fig.axes[1].images[1].get_array()
    np.testing.assert_allclose(np.asarray(shown), maps["a"][0].numpy(), atol=1e-6)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gray = saliency_grid(torch.rand(1, 1, 8, 8), {"a": torch.rand(1, 8, 8)})
    assert len(gray.axes) == 2
    with pytest.raises(UsageError, match="map 'a' has shape"):
        saliency_grid(images, {"a": torch.rand(3, 4, 4)})


def test_curves_plot_means(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 3))
    x = torch.rand(4, 3, 6, 6)
    p = InsertionDeletionProtocol(pixels_per_step=6, n_steps=None, blur_kernel=3)
    results = {"random": insertion_deletion(model, x, torch.rand(4, 6, 6), p),
               "other": insertion_deletion(model, x, torch.rand(4, 6, 6), p)}
    fig = insertion_deletion_curves(results, title="t", path=tmp_path / "curves.png")
    ins_ax, del_ax = fig.axes[:2]
    y = ins_ax.lines[0].get_ydata()
    np.testing.assert_allclose(y, results["random"].insertion_curve.mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(del_ax.lines[1].get_xdata(), results["other"].fractions.numpy(), atol=1e-7)
    assert "AUC" in ins_ax.get_legend().get_texts()[0].get_text()
    assert (tmp_path / "curves.png").stat().st_size > 1000
    with pytest.raises(UsageError):
        insertion_deletion_curves({})
