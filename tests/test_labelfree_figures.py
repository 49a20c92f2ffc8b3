"""Consistency and ROAR figures: one line per method, mean with a Student-t 95% band."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from xairepro.errors import UsageError
from xairepro.experiments.labelfree_study.figures import (
    consistency_figure,
    mean_ci,
    roar_figure,
)
from xairepro.metrics.roar import RoarResult
from xairepro.utils import save_figure

FRACS = [0.05, 0.1, 0.2, 0.5]


def test_mean_ci_matches_scipy_t_interval():
    rng = np.random.default_rng(0)
    samples = rng.random((4, 9))
    mean, low, high = mean_ci(samples)
    for f in range(4):
        lo, hi = stats.t.interval(0.95, 8, loc=samples[f].mean(), scale=stats.sem(samples[f]))
        assert (low[f], high[f]) == pytest.approx((lo, hi))
    np.testing.assert_allclose(mean, samples.mean(1))
    m1, l1, h1 = mean_ci(samples[:, :1])
    np.testing.assert_array_equal(m1, l1)
    np.testing.assert_array_equal(m1, h1)


def test_consistency_figure_draws_one_line_and_band_per_method():
    rng = np.random.default_rng(1)
    curves = {"IG": torch.from_numpy(rng.random((4, 20))), "Random": rng.random((4, 20)) * 0.5}
    fig = consistency_figure(curves, FRACS, title="digits")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["IG", "Random"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [5, 10, 20, 50])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), curves["Random"].mean(1))
    assert len(ax.collections) == 2  # one confidence band per method
    assert ax.get_title() == "digits"


def test_tidy_dataframe_input_gives_the_same_means():
    rng = np.random.default_rng(2)
    vals = rng.random((4, 5))
    df = pd.DataFrame([{"method": "IG", "fraction": f, "latent_shift": v}
                       for f, row in zip(FRACS, vals) for v in row])
    fig = consistency_figure(df)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), vals.mean(1))


def test_roar_figure_and_atomic_save(tmp_path):
    result = RoarResult(fractions=[0.0, 0.1, 0.5], test_loss={"IG": [0.1, 0.2, 0.4], "Random": [0.1, 0.12, 0.2]})
    fig = roar_figure(result)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.1, 0.2, 0.4])
    assert len(ax.collections) == 0  # a single run has no band
    png = save_figure(fig, tmp_path / "roar.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = save_figure(fig, tmp_path / "sub" / "roar.pdf")
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_input():
    with pytest.raises(UsageError, match="3 points but there are 4"):
        consistency_figure({"IG": np.zeros(3)}, FRACS)
    with pytest.raises(UsageError, match="no curves"):
        consistency_figure({}, FRACS)
    with pytest.raises(UsageError, match="RoarResult"):
        roar_figure({"IG": [1.0]})


def test_band_is_the_student_t_95_interval():
    rng = np.random.default_rng(3)
    samples = rng.random((4, 12))
    fig = consistency_figure({"IG": samples}, FRACS)
    verts = fig.axes[0].collections[0].get_paths()[0].vertices
    for x, row in zip([5, 10, 20, 50], samples):
        ys = verts[np.isclose(verts[:, 0], x), 1]
        lo, hi = stats.t.interval(0.95, 11, loc=row.mean(), scale=stats.sem(row))
        assert (ys.min(), ys.max()) == pytest.approx((lo, hi))
