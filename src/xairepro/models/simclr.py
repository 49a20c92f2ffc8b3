"""SimCLR (Chen et al. 2020) as used by Label-Free-XAI on CIFAR-10: encoder f + projection head g.

Encoder: ResNet-18/34 or DenseNet-121 from torchvision (``weights=None``), CIFAR stem by default,
classifier removed: pixels -> h (B, 512 or 1024), what label-free explanations use.
Head: Linear(h, projection_hidden) -> ReLU -> Linear(projection_hidden, projection_dim);
``forward(x) = g(f(x)) = z`` (B, projection_dim), the input of the NT-Xent loss.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.models.common import ImageModule, positive_int
from xairepro.models.registry import register_model
from xairepro.models.resnet import build_encoder

__all__ = ["SimCLR", "SIMCLR_BACKBONES"]

SIMCLR_BACKBONES = ("resnet18", "resnet34", "densenet121")


class SimCLR(ImageModule):
    """``.encoder``: x -> h; ``.projector``: h -> z; ``forward(x) -> z``; ``cam_layer`` on the encoder's last stage."""

    def __init__(self, backbone: str = "resnet18", *, projection_dim: int = 128, projection_hidden: int = 2048,
                 cifar_stem: bool = True, in_channels: int = 3, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        if backbone not in SIMCLR_BACKBONES:
            raise UsageError(f"simclr: backbone must be one of {', '.join(SIMCLR_BACKBONES)}, got {backbone!r}")
        self.model_name = "simclr"
        self.backbone = backbone
        self.encoder = build_encoder(backbone, cifar_stem=cifar_stem, in_channels=in_channels, mean=mean, std=std)
        self.encoder.model_name = f"simclr ({backbone})"
        self.in_channels, self.min_size = self.encoder.in_channels, self.encoder.min_size
        self.input_shape = None
        self.num_features = self.encoder.num_features
        self.projection_dim = positive_int(projection_dim, "projection_dim", "simclr")
        hidden = positive_int(projection_hidden, "projection_hidden", "simclr")
        self.projector = nn.Sequential(OrderedDict(
            fc1=nn.Linear(self.num_features, hidden), act=nn.ReLU(), fc2=nn.Linear(hidden, self.projection_dim)))

    @property
    def cam_layer(self) -> nn.Module:
        return self.encoder.cam_layer

    def check_input(self, x: torch.Tensor) -> None:
        self.encoder.check_input(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last conv stage (B, C, H', W')."""
        return self.encoder.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels -> projection z (B, projection_dim)."""
        return self.projector(self.encoder(x))


@register_model("simclr", kind="contrastive", input_shape=(3, 32, 32),
                description="SimCLR: ResNet-18/34 or DenseNet-121 encoder (CIFAR stem) + 2-layer projection head")
def _build_simclr(backbone: str = "resnet18", projection_dim: int = 128, projection_hidden: int = 2048,
                  cifar_stem: bool = True, in_channels: int = 3, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> SimCLR:
    return SimCLR(backbone, projection_dim=projection_dim, projection_hidden=projection_hidden,
                  cifar_stem=cifar_stem, in_channels=in_channels, mean=mean, std=std)
