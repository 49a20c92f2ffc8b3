"""Similarity-rate figures: one solid (Most) and one dashed (Least) line per method, saved atomically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xairepro.errors import UsageError
from xairepro.experiments.labelfree_study.figures import similarity_rate_figure, similarity_rate_rows
from xairepro.utils import save_figure


pytestmark = pytest.mark.usefixtures("one_thread")


FRACTIONS = [0.05, 0.1, 0.2, 0.5, 1.0]


def rates() -> dict[str, dict[str, torch.Tensor]]:
    return {
        "TracIn": {"most": torch.tensor([0.9, 0.8, 0.7, 0.4, 0.1]), "least": torch.tensor([0.0, 0.02, 0.05, 0.08, 0.1])},
        "DKNN": {"most": torch.rand(5, 12), "least": torch.rand(5, 12)},   # per-test rates: band
    }


def test_figure_lines_and_styles(tmp_path) -> None:
    data = rates()
    fig = similarity_rate_figure(data, FRACTIONS, title="digits")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 4
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
    np.testing.assert_allclose(lines[0].get_xdata(), [5, 10, 20, 50, 100])
    np.testing.assert_allclose(lines[0].get_ydata(), [0.9, 0.8, 0.7, 0.4, 0.1], rtol=1e-6)
    np.testing.assert_allclose(lines[2].get_ydata(), data["DKNN"]["most"].double().mean(1).numpy(), rtol=1e-6)
    assert len(ax.collections) == 2  # confidence bands for the per-test rates only
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert ax.get_xlabel() == "% of training examples selected" and ax.get_title() == "digits"
    path = save_figure(fig, tmp_path / "sim.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp"))


def test_rows_and_errors() -> None:
    rows = similarity_rate_rows(rates(), FRACTIONS)
    assert len(rows) == 2 * 2 * 5
    assert rows[0] == {"method": "TracIn", "kind": "most", "fraction": 0.05, "similarity_rate": pytest.approx(0.9)}
    with pytest.raises(UsageError, match="no similarity"):
        similarity_rate_figure({}, FRACTIONS)
    with pytest.raises(UsageError, match="fractions"):
        similarity_rate_figure(rates(), [0.0, 0.1, 0.2, 0.5, 1.0])
    with pytest.raises(UsageError, match="points"):
        similarity_rate_figure(rates(), FRACTIONS[:3])
    with pytest.raises(UsageError, match="'most' and 'least'"):
        similarity_rate_figure({"x": {"most": torch.zeros(5)}}, FRACTIONS)
