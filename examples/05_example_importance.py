"""Example importance (TracIn, SimplEx, influence functions) with similarity rates.

Example importance scores each training example's share in a test example's output: a matrix
(n_test, n_train), positive = the training example supports the test example. Here they explain an
autoencoder's reconstruction loss, without labels: TracIn sums gradient dot products over checkpoints,
influence functions (EK-FAC curvature) estimate the rise of the test loss when a training example is left
out, SimplEx writes the test latent as a mixture of training latents. The labels, hidden from the
explanations, judge them: the similarity rate is the fraction of the k top-scored training examples that
share the test example's label (the Most curve should lie above the Least one).
"""

import tempfile

import torch

from common import plt, save
from xairepro.data import load
from xairepro.explain import DKNN, InfluenceFunctions, SimplEx, TracIn
from xairepro.metrics import similarity_rates
from xairepro.models import build_model
from xairepro.train import AutoencoderObjective, Engine, TrainConfig

digits = load("digits", "train", size=28)
x_all, y_all = digits.tensors()
x_test, y_test, x_train, y_train = x_all[:40], y_all[:40], x_all[40:340], y_all[40:340]


def loss_fn(model: torch.nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """Label-free loss: one reconstruction error per example."""
    return ((model(xb) - xb) ** 2).flatten(1).sum(1)


ae = build_model("mnist-ae", latent_dim=4)
with tempfile.TemporaryDirectory() as tmp:
    run = Engine(TrainConfig(epochs=2, batch_size=64, seed=0, checkpoint_every=1), out_dir=tmp).fit(
        ae, AutoencoderObjective(perturbation="noise"), digits)
    ae.eval()
    scores = {"TracIn": TracIn(ae, loss_fn, ae.encoder, checkpoints=run.checkpoints).attribute(x_test, x_train)}
scores["influence (EK-FAC)"] = InfluenceFunctions(ae, loss_fn, ae.encoder, method="ekfac",
                                                  damping=1e-3).attribute(x_test, x_train)
scores["SimplEx"] = SimplEx(ae.encoder, steps=1000).attribute(x_test, x_train)
scores["DkNN"] = DKNN(ae.encoder).attribute(x_test, x_train)

ks = [1, 5, 10, 20, 50]
fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.5), sharey=True)
for ax, (name, s) in zip(axes, scores.items()):
    rates = similarity_rates(s, y_train, y_test, ks=ks)
    print(f"{name:20s} most {[round(float(r), 2) for r in rates['most']]}  least "
          f"{[round(float(r), 2) for r in rates['least']]}")
    ax.plot(ks, rates["most"], marker="o", label="Most important")
    ax.plot(ks, rates["least"], marker="o", label="Least important")
    ax.set_title(name)
    ax.set_xlabel("k top-scored training examples")
axes[0].set_ylabel("similarity rate (same label)")
axes[0].legend()
fig.suptitle("Example importance of a digits autoencoder, judged by the hidden labels")
save(fig, "05_example_importance")
