"""Label-free feature importance of an autoencoder, with a consistency curve.

An autoencoder has no class to explain. Label-free feature importance explains its encoder's latent
vector instead: any captum attribution method is applied to ``<f(x), f(x_anchor)>``, the projection of the
latent on the example's own latent (Crabbé and van der Schaar, 2022). The consistency curve checks the
explanation: masking the top-p% most important pixels (black) should move the latent further than masking
random pixels. Shown for Integrated Gradients and Gradient SHAP, against the random control.
"""

import tempfile

from common import plt, save
from xairepro.data import load
from xairepro.explain import LabelFreeAttribution
from xairepro.metrics import feature_consistency
from xairepro.models import build_model
from xairepro.train import AutoencoderObjective, Engine, TrainConfig

digits = load("digits", "train", size=28)
x_all, _ = digits.tensors()
ae = build_model("mnist-ae", latent_dim=4)
with tempfile.TemporaryDirectory() as tmp:
    Engine(TrainConfig(epochs=3, batch_size=64, seed=0), out_dir=tmp).fit(
        ae, AutoencoderObjective(perturbation="noise"), digits)
ae.eval()

x = x_all[:64]
fractions = [0.05, 0.1, 0.2, 0.3, 0.5]
curves = {"random": feature_consistency(ae.encoder, x, "random", fractions=fractions, seed=0)}
maps = {}
for method in ("integrated_gradients", "gradient_shap"):
    maps[method] = LabelFreeAttribution(ae.encoder, method).attribute(x)     # (64, 1, 28, 28)
    curves[method] = feature_consistency(ae.encoder, x, maps[method], fractions=fractions)
for name, curve in curves.items():
    print(f"{name:22s} latent shift per fraction: {[round(float(v), 3) for v in curve]}")

fig = plt.figure(figsize=(12, 4))
ax = fig.add_subplot(1, 3, 1)
for name, curve in curves.items():
    ax.plot(fractions, curve, marker="o", label=name)
ax.set_xlabel("fraction of pixels masked (most important first)")
ax.set_ylabel("latent shift ||f(x) - f(x_p)||^2")
ax.legend()
ax.set_title("consistency curve")
for k, method in enumerate(maps):
    ax = fig.add_subplot(1, 3, 2 + k)
    ax.imshow(maps[method][:8, 0].abs().reshape(2, 4, 28, 28).permute(0, 2, 1, 3).reshape(56, 112), cmap="hot")
    ax.set_title(f"|{method}|, 8 digits")
    ax.axis("off")
fig.suptitle("Label-free feature importance of a digits autoencoder")
save(fig, "04_labelfree_feature_importance")
