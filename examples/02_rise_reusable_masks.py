"""RISE with reusable masks.

RISE averages random masks weighted by the class score of each masked image. Drawing the masks once
(``generate_rise_masks``, seeded) and passing them as ``masks=`` explains several images and several models
with the same masks, so their maps differ only by the models. Here two digit classifiers of the model registry
(a small CNN at two widths) are explained with the same 500 masks, and the same seed gives the same maps.
"""

import tempfile

import torch

from common import plt, save
from xairepro.data import load
from xairepro.explain import RISE, generate_rise_masks
from xairepro.models import build_model
from xairepro.train import ClassifierObjective, Engine, TrainConfig

train, test = load("digits", "train", size=28), load("digits", "test", size=28)
models = {}
with tempfile.TemporaryDirectory() as tmp:
    for width in (8, 16):
        model = build_model("small-cnn", num_classes=10, in_channels=1, width=width, mean=train.info.mean, std=train.info.std)
        Engine(TrainConfig(epochs=2, batch_size=64, seed=0), out_dir=f"{tmp}/w{width}").fit(
            model, ClassifierObjective(), train)
        models[width] = model.eval()

masks = generate_rise_masks(500, (28, 28), seed=0)              # (500, 28, 28), drawn once
x, y = test.batch(range(4))
maps = {w: RISE(m, masks=masks, batch_size=250)(x, y) for w, m in models.items()}
again = RISE(models[8], masks=masks, batch_size=250)(x, y)
print(f"same masks, same maps: {torch.equal(again, maps[8])}")
print(f"masks: {tuple(masks.shape)}, kept fraction {masks.mean():.3f}")

fig, axes = plt.subplots(3, 4, figsize=(9, 7))
for i in range(4):
    axes[0, i].imshow(x[i, 0], cmap="gray")
    axes[0, i].set_title(f"label {int(y[i])}")
    for row, width in ((1, 8), (2, 16)):
        axes[row, i].imshow(maps[width][i], cmap="jet")
        axes[row, i].set_title(f"RISE, width {width}")
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("RISE maps of two models from the same 500 masks")
save(fig, "02_rise_reusable_masks")
