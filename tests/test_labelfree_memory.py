"""Memory-bounded attribution: passes of at most ``max_rows`` rows, same result as one pass, and the
study's ECG5000 setting (LSTM autoencoder, length 140, IG 50 steps, 500 series) within a stated bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from xairepro.explain import LabelFreeAttribution
from xairepro.explain.memory import SAFETY, bytes_per_row, default_budget, rows_within
from xairepro.metrics import feature_consistency
from xairepro.models.lstm_ae import LSTMAutoencoder

pytestmark = pytest.mark.usefixtures("one_thread")


class RowSpy(nn.Module):
    """Wraps an encoder and records the rows of every forward pass that builds a graph."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, x):
        if torch.is_grad_enabled():
            self.rows.append(int(x.shape[0]))
        return self.inner(x)


class ConvEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def lstm_encoder(length: int = 20) -> nn.Module:
    torch.manual_seed(1)
    return LSTMAutoencoder(seq_len=length, embedding_dim=4).encoder


@pytest.mark.parametrize("method, kwargs", [
    ("integrated_gradients", {"n_steps": 50}),
    ("gradient_shap", {"n_samples": 7}),
    ("saliency", {}),
    ("deeplift", {}),
])
def test_passes_of_max_rows_give_the_one_pass_result(method, kwargs):
    encoder = RowSpy(lstm_encoder())
    x = torch.randn(9, 20, 1)
    whole = LabelFreeAttribution(encoder, method).attribute(x, max_rows=10**6, **kwargs)
    assert max(encoder.rows) >= 9  # one pass held every example
    encoder.rows.clear()
    split = LabelFreeAttribution(encoder, method).attribute(x, max_rows=7, **kwargs)
    assert encoder.rows and max(encoder.rows) <= 7
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)


def test_integrated_gradients_steps_are_split_across_passes():
    encoder = RowSpy(ConvEncoder())
    x = torch.rand(4, 1, 8, 8)
    whole = LabelFreeAttribution(encoder, "integrated_gradients").attribute(x, n_steps=50, max_rows=10**6)
    encoder.rows.clear()
    split = LabelFreeAttribution(encoder, "integrated_gradients").attribute(x, n_steps=50, max_rows=30)
    # 4 examples x 7 steps = 28 rows per pass (captum splits the steps), 50 steps -> 8 passes of 28 or fewer
    assert max(encoder.rows) == 28 and sum(encoder.rows) == 4 * 50
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)


def test_per_unit_maps_and_layer_methods_are_split_the_same_way():
    encoder = RowSpy(ConvEncoder())
    x = torch.rand(5, 1, 8, 8)
    lf = LabelFreeAttribution(encoder, "integrated_gradients")
    whole = lf.attribute_per_unit(x, n_steps=20, max_rows=10**6)
    encoder.rows.clear()
    split = lf.attribute_per_unit(x, n_steps=20, max_rows=8)
    assert max(encoder.rows) <= 8
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)
    for method in ("integrated_gradients", "conductance"):
        layer = LabelFreeAttribution(encoder, method, layer=encoder.inner.conv)
        whole = layer.attribute(x, n_steps=12, max_rows=10**6)
        encoder.rows.clear()
        split = layer.attribute(x, n_steps=12, max_rows=6)
        assert max(encoder.rows) <= 6
        torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)


def test_an_explicit_internal_batch_size_is_used_as_given():
    encoder = RowSpy(ConvEncoder())
    x = torch.rand(4, 1, 8, 8)
    LabelFreeAttribution(encoder, "integrated_gradients").attribute(x, n_steps=10, internal_batch_size=20, max_rows=3)
    assert max(encoder.rows) == 20


def test_default_rows_follow_the_memory_budget():
    encoder = RowSpy(lstm_encoder())
    x = torch.randn(30, 20, 1)
    per_row = bytes_per_row(lambda r: encoder.inner(r).sum(-1), x)
    budget = int(SAFETY * per_row * 40)  # 40 rows
    LabelFreeAttribution(encoder, "integrated_gradients").attribute(x, n_steps=10, memory_budget=budget)
    probe, passes = encoder.rows[:2], encoder.rows[2:]
    assert probe == [6, 2] and max(passes) <= 40 and sum(passes) == 30 * 10
    assert rows_within(budget, per_row) in (39, 40)
    assert 0 < default_budget() <= 2 * 2**30


def test_bytes_per_row_counts_what_autograd_saves():
    # Linear(10 -> 7) saves its input (10 floats a row), tanh its output (7 floats); the weights are
    # saved once and cancel between the two probe sizes
    model = nn.Sequential(nn.Linear(10, 7), nn.Tanh())
    assert bytes_per_row(lambda r: model(r).sum(-1), torch.randn(3, 10)) == (10 + 7) * 4
    with pytest.raises(ValueError, match="memory_budget"):
        rows_within(0, 1.0)


def test_feature_consistency_masks_in_passes_of_batch_size_rows():
    seen: list[int] = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return x.flatten(1)[:, :5] * 2.0

    x, attr = torch.rand(10, 1, 6, 6), torch.rand(10, 1, 6, 6)
    whole = feature_consistency(Spy(), x, attr, batch_size=10**6)
    seen.clear()
    split = feature_consistency(Spy(), x, attr, batch_size=4)
    assert max(seen) <= 4
    torch.testing.assert_close(split, whole)


_PAPER_SETTING = textwrap.dedent("""
    import json, sys, torch
    from xairepro.explain import LabelFreeAttribution
    from xairepro.explain.memory import SAFETY, bytes_per_row
    from xairepro.models.lstm_ae import LSTMAutoencoder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    budget = int(sys.argv[1])
    encoder = LSTMAutoencoder(seq_len=140, embedding_dim=4).encoder.eval()
    x = torch.randn(500, 140, 1)
    lf = LabelFreeAttribution(encoder, "integrated_gradients")
    lf.attribute(x[:2], n_steps=2)  # warm-up: kernels, thread pools

    def rss(key):
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) * 1024

    with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
        fh.write("5")
    before = rss("VmRSS:")
    out = lf.attribute(x, n_steps=50, batch_size=500, memory_budget=budget)
    peak = rss("VmHWM:")
    per_row = bytes_per_row(lambda r: encoder(r).sum(-1), x)
    print(json.dumps({"increase": peak - before, "whole": SAFETY * per_row * 500 * 50,
                      "finite": bool(torch.isfinite(out).all()), "shape": list(out.shape)}))
""")


def test_the_studys_ecg_setting_stays_within_the_memory_budget(tmp_path):
    """IG 50 steps on 500 series of 140 steps (25,000 rows through an LSTM): the peak RSS the attribution
    adds stays below its 64 MiB budget, where one pass would need the whole estimate (> 1 GiB here)."""
    script = tmp_path / "paper_setting.py"
    script.write_text(_PAPER_SETTING)
    budget = 64 * 2**20
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, str(script), str(budget)], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["finite"] and result["shape"] == [500, 140, 1]
    assert result["whole"] > 16 * budget  # what a single pass would ask for
    assert result["increase"] < budget, result
