"""EK-FAC against an independent implementation: Kronfluence (PyPI ``kronfluence``, a dev extra).

Same supervised model (convolutions and linear layers, biases), same data, the empirical Fisher
(``use_empirical_fisher=True``: our curvature), the same absolute damping: the pairwise scores agree.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xairepro.explain import InfluenceFunctions

kronfluence = pytest.importorskip("kronfluence", reason="kronfluence is a dev extra (pip install -e '.[dev]')")

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]  # kronfluence's own torch.cuda.amp use


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc2(torch.tanh(self.fc1(h.flatten(1))))


class _Task(kronfluence.task.Task):
    def compute_train_loss(self, batch, model, sample=False):
        x, y = batch
        return nn.functional.cross_entropy(model(x), y, reduction="sum")

    def compute_measurement(self, batch, model):
        return self.compute_train_loss(batch, model)


def test_ekfac_scores_equal_kronfluence(tmp_path) -> None:
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:200]), y[:200]).backward()
        opt.step()
    model.eval()
    train, test = (x[:200], y[:200]), (x[1500:1520], y[1500:1520])
    damping = 1e-3
    ours = InfluenceFunctions(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1], reduction="none"),
                              method="ekfac", damping=damping).attribute(test, train)

    reference = Net()
    reference.load_state_dict(model.state_dict())
    task = _Task()
    reference = prepare_model(reference.eval(), task)
    analyzer = Analyzer("tda", reference, task, cpu=True, disable_tqdm=True, output_dir=str(tmp_path))
    factor_args = FactorArguments(strategy="ekfac", use_empirical_fisher=True)
    analyzer.fit_all_factors("f", torch.utils.data.TensorDataset(*train), per_device_batch_size=50,
                             factor_args=factor_args)
    analyzer.compute_pairwise_scores("s", "f", torch.utils.data.TensorDataset(*test),
                                     torch.utils.data.TensorDataset(*train), per_device_query_batch_size=20,
                                     per_device_train_batch_size=50, score_args=ScoreArguments(damping_factor=damping))
    theirs = analyzer.load_pairwise_scores("s")["all_modules"]
    assert theirs.shape == ours.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())  # 6e-6 measured
