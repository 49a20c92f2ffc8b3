"""LICO training of a small wide residual network.

LICO adds two losses to cross-entropy: manifold matching (the images' feature-map distances follow the
distances of their class prompts' text embeddings, weight alpha) and optimal transport between the feature
map's tokens and learnable prompt tokens encoded by a frozen text encoder (weight beta). Here a WRN-16-1
learns the bundled objects-on-textures set (32 px, 4 classes, object masks included) for two epochs: enough
to show the mechanics (each step runs the prompts through the text encoder), not to learn the classes; the
study's ``lico-accuracy`` experiment trains longer. The figure shows the losses per epoch and the Grad-CAM
maps of the model with their soft IoU against the objects' masks.
"""

import tempfile

from common import plt, save
from xairepro.data import load
from xairepro.explain import GradCAM
from xairepro.lico import LicoConfig, LicoObjective
from xairepro.metrics import soft_iou
from xairepro.models import build_model
from xairepro.train import Engine, TrainConfig

options = {"size": 32, "n": 200, "num_classes": 4}
train, test = load("shapes-seg", "train", **options), load("shapes-seg", "test", **options)
model = build_model("wrn-16-1", num_classes=4, mean=train.info.mean, std=train.info.std)
objective = LicoObjective.for_model(model, list(train.info.class_names), LicoConfig(alpha=10.0, beta=1.0),
                                    input_shape=train.info.input_shape, seed=0)
with tempfile.TemporaryDirectory() as tmp:
    run = Engine(TrainConfig(epochs=2, batch_size=32, seed=0), out_dir=tmp).fit(model, objective, train)
model.eval()
for record in run.history:
    print({k: round(v, 3) for k, v in record.items() if k.startswith("train/") or k == "epoch"})

x, y = test.batch(range(6))
maps = GradCAM(model, model.cam_layer)(x)
iou = soft_iou(maps, test.batch_masks(range(6)))
print(f"soft IoU of Grad-CAM with the object masks: {iou.mean():.3f}")

fig, axes = plt.subplots(2, 6, figsize=(13, 5))
losses = [k for k in run.history[0] if k.startswith("train/") and k != "train/accuracy"]
ax = plt.subplot2grid((2, 6), (0, 0), colspan=3, fig=fig)
for key in losses:
    ax.plot([r["epoch"] for r in run.history], [r[key] for r in run.history], marker="o", label=key[6:])
ax.set_xlabel("epoch"), ax.legend(), ax.set_title("LICO training losses")
for i in range(3):
    axes[0, 3 + i].imshow(x[i].permute(1, 2, 0))
    axes[0, 3 + i].set_title(train.info.class_names[int(y[i])])
for i in range(6):
    axes[1, i].imshow(x[i].permute(1, 2, 0))
    axes[1, i].imshow(maps[i], cmap="jet", alpha=0.5)
    axes[1, i].set_title(f"IoU {iou[i]:.2f}")
for a in [*axes[0, 3:], *axes[1]]:
    a.axis("off")
for a in axes[0, :3]:
    a.remove()
fig.suptitle("LICO on a WRN-16-1: losses, and Grad-CAM maps against the objects' masks")
save(fig, "03_lico_wrn")
