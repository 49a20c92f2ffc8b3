"""Grad-CAM and insertion / deletion on your own classifier.

Any ``nn.Module`` works: here a three-layer CNN written in the script, trained for a few epochs on the
bundled 8x8 digits (resized to 32 px) with a plain torch loop. Grad-CAM explains its last convolution;
insertion / deletion (Petsiuk et al.'s protocol) measure how fast the class score rises when the most
salient pixels are put back on a blurred image, and falls when they are deleted. Higher insertion and
lower deletion are better; the ``overall`` score is their difference.
"""

import torch
from torch import nn

from common import plt, save
from xairepro.data import load
from xairepro.explain import GradCAM
from xairepro.metrics import InsertionDeletionProtocol, insertion_deletion

torch.manual_seed(0)
train, test = load("digits", "train", size=32), load("digits", "test", size=32)
x_train, y_train = train.tensors()


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


model = TinyCNN()
optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(5):
    for batch in torch.randperm(len(x_train)).split(64):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
        optimiser.step()
model.eval()

x, y = test.batch(range(8))
print(f"test accuracy: {(model(test.tensors()[0]).argmax(1) == test.tensors()[1]).float().mean():.3f}")
maps = GradCAM(model, model.features[3])(x)                      # (8, 32, 32) in [0, 1]
result = insertion_deletion(model, x, maps, protocol=InsertionDeletionProtocol.petsiuk())
print(f"insertion {result.insertion.mean():.3f}  deletion {result.deletion.mean():.3f}  "
      f"overall {result.overall.mean():.3f}")

fig, axes = plt.subplots(2, 5, figsize=(12, 5))
for i in range(4):
    axes[0, i].imshow(x[i, 0], cmap="gray")
    axes[0, i].imshow(maps[i], cmap="jet", alpha=0.45)
    axes[0, i].set_title(f"label {int(y[i])}")
    axes[1, i].plot(result.fractions, result.insertion_curve[i], label="insertion")
    axes[1, i].plot(result.fractions, result.deletion_curve[i], label="deletion")
    axes[1, i].set_xlabel("fraction of pixels")
for ax in axes[0]:
    ax.axis("off")
axes[1, 0].legend()
axes[1, 4].bar(["insertion", "deletion", "overall"],
               [result.insertion.mean(), result.deletion.mean(), result.overall.mean()])
axes[1, 4].set_title("mean over 8 images")
fig.suptitle("Grad-CAM of a hand-written CNN, with its insertion / deletion curves")
save(fig, "01_gradcam_insertion_deletion")
