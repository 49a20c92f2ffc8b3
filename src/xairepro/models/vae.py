"""Burgess et al. (2018) beta-VAE encoder/decoder, as in disentangling-vae and Label-Free-XAI.

Encoder, (B, C, S, S) with S in {32, 64} -> (mu, logvar), each (B, latent_dim):
    Conv(C, 32, 4, s2, p1) ReLU, Conv(32, 32, 4, s2, p1) ReLU, Conv(32, 32, 4, s2, p1) ReLU
    [+ one more Conv(32, 32, 4, s2, p1) ReLU at 64 px]  -> (B, 32, 4, 4) -> Linear(512, 256) ReLU
    Linear(256, 256) ReLU -> Linear(256, 2 * latent_dim) = [mu | logvar].
Decoder, z -> image: Linear(latent_dim, 256) ReLU Linear(256, 256) ReLU Linear(256, 512) ReLU -> (B, 32, 4, 4)
    -> [ConvT(32, 32, 4, s2, p1) ReLU at 64 px] ConvT(32, 32) ReLU ConvT(32, 32) ReLU ConvT(32, C) -> logits.
Output: ``decode`` and ``forward`` return sigmoid probabilities in [0, 1] (pixel space, as the data);
``decode_logits`` returns the pre-sigmoid logits.  The matching loss is the Bernoulli likelihood:
``binary_cross_entropy(recon, x)`` on the probabilities, or (numerically safer)
``binary_cross_entropy_with_logits(decode_logits(z), x)``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.models.common import ImageModule, positive_int
from xairepro.models.registry import register_model

__all__ = ["BurgessEncoder", "BurgessDecoder", "BurgessVAE"]

HIDDEN_CHANNELS = 32
KERNEL = 4
HIDDEN_DIM = 256
IMAGE_SIZES = (32, 64)


def _check_size(image_size: object, model: str) -> int:
    if image_size not in IMAGE_SIZES:
        raise UsageError(f"{model}: image_size must be 32 or 64, got {image_size!r} "
                         "(resize or pad the images, e.g. MNIST 28 px padded by 2 to 32)")
    return int(image_size)  # type: ignore[arg-type]


def _conv_stack(in_channels: int, n_layers: int) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(n_layers):
        layers[f"conv{i + 1}"] = nn.Conv2d(in_channels if i == 0 else HIDDEN_CHANNELS, HIDDEN_CHANNELS, KERNEL,
                                           stride=2, padding=1)
        layers[f"act{i + 1}"] = nn.ReLU()
    return nn.Sequential(layers)


class BurgessEncoder(ImageModule):
    """``forward(x) -> mu`` (B, latent_dim) (what explainers see); ``distribution(x) -> (mu, logvar)``."""

    def __init__(self, image_size: int = 64, in_channels: int = 1, latent_dim: int = 10, *,
                 model_name: str = "burgess-vae") -> None:
        super().__init__()
        self.model_name = model_name
        self.image_size = _check_size(image_size, model_name)
        self.in_channels = positive_int(in_channels, "in_channels", model_name)
        self.latent_dim = positive_int(latent_dim, "latent_dim", model_name)
        self.input_shape = (self.in_channels, self.image_size, self.image_size)
        self.cnn = _conv_stack(self.in_channels, 3 if self.image_size == 32 else 4)
        self.flatten = nn.Flatten(1)
        self.lin = nn.Sequential(OrderedDict(
            fc1=nn.Linear(HIDDEN_CHANNELS * KERNEL * KERNEL, HIDDEN_DIM), act1=nn.ReLU(),
            fc2=nn.Linear(HIDDEN_DIM, HIDDEN_DIM), act2=nn.ReLU()))
        self.mu_logvar = nn.Linear(HIDDEN_DIM, 2 * self.latent_dim)

    @property
    def cam_layer(self) -> nn.Module:
        """The last conv activation, (B, 32, 4, 4)."""
        return self.cnn[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, 32, 4, 4)."""
        self.check_input(x)
        return self.cnn(x)

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> (mu, logvar), each (B, latent_dim)."""
        stats = self.mu_logvar(self.lin(self.flatten(self.forward_features(x))))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.distribution(x)[0]


class BurgessDecoder(nn.Module):
    """z (B, latent_dim) -> image (B, C, S, S): ``forward`` gives sigmoid probabilities, ``logits`` the logits."""

    def __init__(self, image_size: int = 64, in_channels: int = 1, latent_dim: int = 10) -> None:
        super().__init__()
        self.image_size = _check_size(image_size, "burgess-vae")
        self.out_channels = positive_int(in_channels, "in_channels", "burgess-vae")
        self.latent_dim = positive_int(latent_dim, "latent_dim", "burgess-vae")
        self.lin = nn.Sequential(OrderedDict(
            fc1=nn.Linear(self.latent_dim, HIDDEN_DIM), act1=nn.ReLU(),
            fc2=nn.Linear(HIDDEN_DIM, HIDDEN_DIM), act2=nn.ReLU(),
            fc3=nn.Linear(HIDDEN_DIM, HIDDEN_CHANNELS * KERNEL * KERNEL), act3=nn.ReLU()))
        self.unflatten = nn.Unflatten(1, (HIDDEN_CHANNELS, KERNEL, KERNEL))
        n_layers = 3 if self.image_size == 32 else 4
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(n_layers):
            last = i == n_layers - 1
            out_channels = self.out_channels if last else HIDDEN_CHANNELS
            layers[f"deconv{i + 1}"] = nn.ConvTranspose2d(HIDDEN_CHANNELS, out_channels, KERNEL, stride=2, padding=1)
            if not last:
                layers[f"act{i + 1}"] = nn.ReLU()
        self.cnn = nn.Sequential(layers)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> pre-sigmoid logits (B, C, S, S)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise UsageError(f"the decoder expects codes shaped (B, {self.latent_dim}), got {tuple(z.shape)}")
        return self.cnn(self.unflatten(self.lin(z)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))


class BurgessVAE(ImageModule):
    """beta-VAE with the Burgess encoder/decoder.

    ``encode(x) -> (mu, logvar)``; ``reparameterize(mu, logvar) = mu + exp(logvar / 2) * eps``;
    ``decode(z)`` -> probabilities; ``forward(x) -> (recon, mu, logvar)`` samples z in training mode and
    uses z = mu in eval mode.  ``.encoder`` maps x -> mu.
    """

    def __init__(self, image_size: int = 64, in_channels: int = 1, latent_dim: int = 10) -> None:
        super().__init__()
        self.model_name = "burgess-vae"
        self.encoder = BurgessEncoder(image_size, in_channels, latent_dim)
        self.decoder = BurgessDecoder(image_size, in_channels, latent_dim)
        self.image_size, self.in_channels = self.encoder.image_size, self.encoder.in_channels
        self.latent_dim = self.encoder.latent_dim
        self.input_shape = self.encoder.input_shape

    @property
    def cam_layer(self) -> nn.Module:
        return self.encoder.cam_layer

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.distribution(x)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) drawn from ``generator`` (global RNG if None)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder.logits(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator) if self.training else mu
        return self.decode(z), mu, logvar


@register_model("burgess-vae", kind="vae", input_shape=(1, 64, 64), aliases=("beta-vae",),
                description="Burgess et al. beta-VAE encoder/decoder (image_size 32 or 64); sigmoid output")
def _build_burgess_vae(image_size: int = 64, in_channels: int = 1, latent_dim: int = 10) -> BurgessVAE:
    return BurgessVAE(image_size, in_channels, latent_dim)
