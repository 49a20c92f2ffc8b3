"""ResNet-18/34/50 and DenseNet-121 from torchvision (``weights=None``, nothing is downloaded).

``cifar_stem=True`` replaces the 7x7/stride-2 conv + 3x3 max-pool stem by a 3x3/stride-1 conv and no
pooling (SimCLR appendix B.9), so 32 x 32 images keep a 4 x 4 last stage instead of 1 x 1.
Module names follow torchvision's (``conv1``, ``layer4``, ``fc``; ``features.denseblock4``), so
torchvision state dicts load into the trunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.models.common import ImageClassifier, ImageModule, Normalize, flag, positive_int
from xairepro.models.registry import register_model

__all__ = ["ResNetClassifier", "ResNetEncoder", "DenseNetEncoder", "RESNET_ARCHS", "ENCODER_ARCHS"]

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50")
ENCODER_ARCHS = RESNET_ARCHS + ("densenet121",)
_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _torchvision_model(arch: str, **kwargs: object) -> nn.Module:
    import torchvision  # imported here: keeps `import xairepro.models` light

    if arch not in ENCODER_ARCHS:
        raise UsageError(f"unknown backbone {arch!r}; valid: {', '.join(ENCODER_ARCHS)}")
    return getattr(torchvision.models, arch)(weights=None, **kwargs)


def _stem_conv(in_channels: int, cifar_stem: bool) -> nn.Conv2d:
    conv = (nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False) if cifar_stem
            else nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False))
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
    return conv


def _attach_resnet_trunk(module: ImageModule, arch: str, *, in_channels: int, cifar_stem: bool,
                         mean: Sequence[float] | None, std: Sequence[float] | None, **tv_kwargs: object) -> nn.Module:
    """Give ``module`` a Normalize and torchvision's ResNet stem and stages; returns the whole torchvision net."""
    if arch not in RESNET_ARCHS:
        raise UsageError(f"unknown ResNet {arch!r}; valid: {', '.join(RESNET_ARCHS)}")
    module.model_name = module.arch = arch
    module.cifar_stem = cifar_stem = flag(cifar_stem, "cifar_stem", arch)
    module.in_channels = positive_int(in_channels, "in_channels", arch)
    module.input_shape = None
    module.min_size = 8 if cifar_stem else 32  # the last stage is at least 1 x 1
    net = _torchvision_model(arch, **tv_kwargs)
    if cifar_stem or module.in_channels != 3:
        net.conv1 = _stem_conv(module.in_channels, cifar_stem)
    if cifar_stem:
        net.maxpool = nn.Identity()
    module.normalize = Normalize(mean, std, channels=module.in_channels)
    for name in _TRUNK:
        setattr(module, name, getattr(net, name))
    module.avgpool = net.avgpool
    module.num_features = net.fc.in_features
    return net


def _resnet_features(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m = module
    out = m.maxpool(m.relu(m.bn1(m.conv1(m.normalize(x)))))
    return m.layer4(m.layer3(m.layer2(m.layer1(out))))


class ResNetClassifier(ImageClassifier):
    """torchvision ResNet classifier with pixel normalisation first; ``cam_layer = layer4``."""

    def __init__(self, arch: str = "resnet18", num_classes: int = 10, *, cifar_stem: bool = False,
                 in_channels: int = 3, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.num_classes = positive_int(num_classes, "num_classes", arch)
        net = _attach_resnet_trunk(self, arch, in_channels=in_channels, cifar_stem=cifar_stem, mean=mean, std=std,
                                   num_classes=self.num_classes)
        self.fc = net.fc

    @property
    def cam_layer(self) -> nn.Module:
        return self.layer4

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels -> ``layer4`` output (B, 512 or 2048, H / 32, W / 32); H / 8 with the CIFAR stem."""
        self.check_input(x)
        return _resnet_features(self, x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, H', W') -> logits (B, num_classes): global average pool, linear."""
        return self.fc(torch.flatten(self.avgpool(features), 1))


class ResNetEncoder(ImageModule):
    """ResNet without its classifier: (B, C, H, W) pixels -> representation h (B, 512 or 2048)."""

    def __init__(self, arch: str = "resnet18", *, cifar_stem: bool = True, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        _attach_resnet_trunk(self, arch, in_channels=in_channels, cifar_stem=cifar_stem, mean=mean, std=std)

    @property
    def cam_layer(self) -> nn.Module:
        return self.layer4

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels -> ``layer4`` output (B, C', H', W')."""
        self.check_input(x)
        return _resnet_features(self, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)


class DenseNetEncoder(ImageModule):
    """torchvision DenseNet-121 without its classifier: pixels -> h (B, 1024).

    ``features`` is torchvision's feature stack (ending in ``norm5``) plus the final ReLU that
    torchvision applies functionally, so ``cam_layer = features`` outputs the last stage after its
    final BN + ReLU.  ``cifar_stem``: conv0 becomes 3x3/stride 1 and pool0 is dropped.
    """

    def __init__(self, arch: str = "densenet121", *, cifar_stem: bool = True, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        if arch != "densenet121":
            raise UsageError(f"unknown DenseNet {arch!r}; valid: densenet121")
        self.model_name = self.arch = arch
        self.cifar_stem = cifar_stem = flag(cifar_stem, "cifar_stem", arch)
        self.in_channels = positive_int(in_channels, "in_channels", arch)
        self.input_shape = None
        self.min_size = 8 if cifar_stem else 32
        net = _torchvision_model(arch)
        if cifar_stem or self.in_channels != 3:
            net.features.conv0 = _stem_conv(self.in_channels, cifar_stem)
        if cifar_stem:
            net.features.pool0 = nn.Identity()
        net.features.add_module("relu5", nn.ReLU())
        self.normalize = Normalize(mean, std, channels=self.in_channels)
        self.features = net.features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = net.classifier.in_features

    @property
    def cam_layer(self) -> nn.Module:
        return self.features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels -> (B, 1024, H / 8, W / 8) with the CIFAR stem (H / 32 without)."""
        self.check_input(x)
        return self.features(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)


def build_encoder(arch: str, *, cifar_stem: bool = True, in_channels: int = 3,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> ImageModule:
    """A representation encoder (pixels -> (B, num_features)) for ``arch`` in :data:`ENCODER_ARCHS`."""
    if arch not in ENCODER_ARCHS:
        raise UsageError(f"unknown backbone {arch!r}; valid: {', '.join(ENCODER_ARCHS)}")
    cls = DenseNetEncoder if arch == "densenet121" else ResNetEncoder
    return cls(arch, cifar_stem=cifar_stem, in_channels=in_channels, mean=mean, std=std)


def _register_resnet(arch: str, depth_note: str) -> None:
    @register_model(arch, kind="classifier", input_shape=(3, 224, 224),
                    description=f"torchvision {depth_note} (weights=None); cifar_stem=True for 32 px images")
    def _build(num_classes: int = 10, cifar_stem: bool = False, in_channels: int = 3,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> ResNetClassifier:
        return ResNetClassifier(arch, num_classes, cifar_stem=cifar_stem, in_channels=in_channels,
                                mean=mean, std=std)


_register_resnet("resnet18", "ResNet-18")
_register_resnet("resnet50", "ResNet-50")
