"""The Label-Free-XAI MNIST models (Crabbé & van der Schaar 2022): conv autoencoder and classifier.

Encoder, (B, 1, 28, 28) -> (B, d):
    Conv(1, 8, 3, s2, p1) ReLU  Conv(8, 16, 3, s2, p1) BN ReLU  Conv(16, 32, 3, s2, p0) ReLU
    [the conv stage, (B, 32, 3, 3)]  Flatten  Linear(288, 128) ReLU  Linear(128, d)
    = 43,428 parameters at d = 4.
Decoder, (B, d) -> (B, 1, 28, 28) in [0, 1]: the mirror image, Linear(d, 128) ReLU Linear(128, 288) ReLU
    Unflatten ConvT(32, 16, 3, s2) BN ReLU ConvT(16, 8, 3, s2, p1, op1) BN ReLU ConvT(8, 1, 3, s2, p1, op1) sigmoid.
Classifier: the same encoder followed by Linear(d, num_classes) giving logits (the original appends a
Softmax and then applies cross-entropy to those probabilities; we return logits, see docs/decisions.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from xairepro.models.common import ImageClassifier, ImageModule, Normalize, positive_int
from xairepro.models.registry import register_model

__all__ = ["MnistEncoder", "MnistDecoder", "MnistAutoencoder", "MnistClassifier"]

MNIST_SHAPE = (1, 28, 28)


class MnistEncoder(ImageModule):
    """(B, 1, 28, 28) pixels -> code (B, latent_dim); normalisation (identity by default) included."""

    def __init__(self, latent_dim: int = 4, *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, model_name: str = "mnist encoder") -> None:
        super().__init__()
        self.model_name = model_name
        self.latent_dim = positive_int(latent_dim, "latent_dim", model_name)
        self.in_channels = 1
        self.input_shape = MNIST_SHAPE
        self.normalize = Normalize(mean, std, channels=1)
        self.cnn = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 8, 3, stride=2, padding=1),
            act1=nn.ReLU(),
            conv2=nn.Conv2d(8, 16, 3, stride=2, padding=1),
            bn2=nn.BatchNorm2d(16),
            act2=nn.ReLU(),
            conv3=nn.Conv2d(16, 32, 3, stride=2, padding=0),
            act3=nn.ReLU(),
        ))
        self.flatten = nn.Flatten(1)
        self.lin = nn.Sequential(OrderedDict(
            fc1=nn.Linear(32 * 3 * 3, 128), act=nn.ReLU(), fc2=nn.Linear(128, self.latent_dim)))

    @property
    def cam_layer(self) -> nn.Module:
        return self.cnn.act3

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> the conv stage (B, 32, 3, 3)."""
        self.check_input(x)
        return self.cnn(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 32, 3, 3) -> (B, latent_dim)."""
        return self.lin(self.flatten(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class MnistDecoder(nn.Module):
    """Code (B, latent_dim) -> image (B, 1, 28, 28) in [0, 1] (sigmoid output)."""

    def __init__(self, latent_dim: int = 4) -> None:
        super().__init__()
        self.latent_dim = positive_int(latent_dim, "latent_dim", "mnist decoder")
        self.lin = nn.Sequential(OrderedDict(
            fc1=nn.Linear(self.latent_dim, 128), act1=nn.ReLU(), fc2=nn.Linear(128, 32 * 3 * 3), act2=nn.ReLU()))
        self.unflatten = nn.Unflatten(1, (32, 3, 3))
        self.cnn = nn.Sequential(OrderedDict(
            deconv1=nn.ConvTranspose2d(32, 16, 3, stride=2),
            bn1=nn.BatchNorm2d(16),
            act1=nn.ReLU(),
            deconv2=nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1),
            bn2=nn.BatchNorm2d(8),
            act2=nn.ReLU(),
            deconv3=nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1),
        ))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.cnn(self.unflatten(self.lin(z))))


class MnistAutoencoder(ImageModule):
    """``forward(x) = decoder(encoder(x))``: (B, 1, 28, 28) -> (B, 1, 28, 28) in [0, 1].

    Pretext perturbations (noise, masking) belong to the training objective, not to ``forward``.
    """

    def __init__(self, latent_dim: int = 4, *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.model_name = "mnist-ae"
        self.in_channels = 1
        self.input_shape = MNIST_SHAPE
        self.encoder = MnistEncoder(latent_dim, mean=mean, std=std, model_name=self.model_name)
        self.decoder = MnistDecoder(latent_dim)
        self.latent_dim = self.encoder.latent_dim

    @property
    def cam_layer(self) -> nn.Module:
        return self.encoder.cam_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class MnistClassifier(ImageClassifier):
    """The MNIST encoder then Linear(latent_dim, num_classes): logits (B, num_classes)."""

    def __init__(self, latent_dim: int = 4, num_classes: int = 10, *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.model_name = "mnist-classifier"
        self.in_channels = 1
        self.input_shape = MNIST_SHAPE
        self.num_classes = positive_int(num_classes, "num_classes", self.model_name)
        self.encoder = MnistEncoder(latent_dim, mean=mean, std=std, model_name=self.model_name)
        self.latent_dim = self.encoder.latent_dim
        self.output = nn.Linear(self.latent_dim, self.num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        return self.encoder.cam_layer

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, 32, 3, 3)."""
        return self.encoder.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 32, 3, 3) -> logits (B, num_classes)."""
        return self.output(self.encoder.forward_head(features))


@register_model("mnist-ae", kind="autoencoder", input_shape=MNIST_SHAPE,
                description="Label-Free-XAI MNIST conv autoencoder (encoder 43,428 parameters at d=4)")
def _build_mnist_ae(latent_dim: int = 4, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> MnistAutoencoder:
    return MnistAutoencoder(latent_dim, mean=mean, std=std)


@register_model("mnist-classifier", kind="classifier", input_shape=MNIST_SHAPE,
                description="Label-Free-XAI MNIST classifier: the autoencoder's encoder + a linear output layer")
def _build_mnist_classifier(latent_dim: int = 4, num_classes: int = 10, mean: Sequence[float] | None = None,
                            std: Sequence[float] | None = None) -> MnistClassifier:
    return MnistClassifier(latent_dim, num_classes, mean=mean, std=std)
