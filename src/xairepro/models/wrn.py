"""Wide residual networks WRN-d-k in the CIFAR style (Zagoruyko & Komodakis 2016).

conv3x3(16) -> 3 groups of n = (d - 4) / 6 pre-activation basic blocks with widths 16k, 32k, 64k
(strides 1, 2, 2) -> BN -> activation -> global average pool -> linear.
A block is BN-act-conv3x3(stride)-BN-act-[dropout]-conv3x3 plus a shortcut: the identity, or a 1x1
conv (stride) applied to the pre-activated input when the width or resolution changes.
WRN-28-2 with 10 classes has 1,467,610 parameters and WRN-28-10 36,479,194.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.models.common import ImageClassifier, Normalize, flag, positive_int, probability
from xairepro.models.registry import register_model

__all__ = ["WideResNet", "WideBasicBlock"]

ACTIVATIONS = ("relu", "leaky_relu")
LEAKY_SLOPE = 0.1  # FixMatch / TorchSSL WRN, from which the LICO code derives


def _activation(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.LeakyReLU(LEAKY_SLOPE)


class WideBasicBlock(nn.Module):
    """Pre-activation basic block: (B, in, H, W) -> (B, out, H / stride, W / stride)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, *, dropout: float, activation: str,
                 bn_momentum: float, conv_bias: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=bn_momentum)
        self.act1 = _activation(activation)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=bn_momentum)
        self.act2 = _activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=conv_bias)
        needs_projection = in_planes != out_planes or stride != 1
        self.shortcut = (nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=conv_bias)
                         if needs_projection else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.act2(self.bn2(out))))
        return out + residual


class WideResNet(ImageClassifier):
    """WRN-depth-widen_factor classifier; ``forward_features`` gives (B, 64k, H / 4, W / 4)."""

    def __init__(self, depth: int = 28, widen_factor: int = 2, num_classes: int = 10, *, in_channels: int = 3,
                 dropout: float = 0.0, activation: str = "relu", bn_momentum: float = 0.1,
                 conv_bias: bool = False, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        name = f"wrn-{depth}-{widen_factor}"
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
            raise UsageError(f"{name}: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, 40, ...), got {depth}")
        widen_factor = positive_int(widen_factor, "widen factor", name)
        if activation not in ACTIVATIONS:
            raise UsageError(f"{name}: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        dropout = probability(dropout, "dropout", name)
        conv_bias = flag(conv_bias, "conv_bias", name)
        if not isinstance(bn_momentum, (int, float)) or not 0 < bn_momentum <= 1:
            raise UsageError(f"{name}: bn_momentum must be in (0, 1], got {bn_momentum!r}")
        self.model_name = name
        self.depth, self.widen_factor = depth, widen_factor
        self.num_classes = positive_int(num_classes, "num_classes", name)
        self.in_channels = positive_int(in_channels, "in_channels", name)
        self.input_shape = None
        self.min_size = 4  # two stride-2 groups: the last stage is at least 1 x 1
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        opts = dict(dropout=dropout, activation=activation, bn_momentum=float(bn_momentum), conv_bias=conv_bias)

        self.normalize = Normalize(mean, std, channels=self.in_channels)
        self.conv1 = nn.Conv2d(self.in_channels, widths[0], 3, stride=1, padding=1, bias=conv_bias)
        self.block1 = self._group(n, widths[0], widths[1], 1, opts)
        self.block2 = self._group(n, widths[1], widths[2], 2, opts)
        self.block3 = self._group(n, widths[2], widths[3], 2, opts)
        self.final = nn.Sequential(OrderedDict(
            bn=nn.BatchNorm2d(widths[3], momentum=float(bn_momentum)), act=_activation(activation)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], self.num_classes)
        self.num_features = widths[3]
        self._init_weights(activation)

    @staticmethod
    def _group(n: int, in_planes: int, out_planes: int, stride: int, opts: dict) -> nn.Sequential:
        return nn.Sequential(*[WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                              stride if i == 0 else 1, **opts) for i in range(n)])

    def _init_weights(self, activation: str) -> None:
        # He init (fan_out) for convs, BN at (1, 0), Xavier for the classifier, zero biases.
        nonlinearity, slope = ("relu", 0.0) if activation == "relu" else ("leaky_relu", LEAKY_SLOPE)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_out", nonlinearity=nonlinearity)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> nn.Module:
        return self.final

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels -> (B, 64k, ceil(H / 4), ceil(W / 4)) after the final BN + activation."""
        self.check_input(x)
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        return self.final(out)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 64k, H', W') -> logits (B, num_classes): global average pool, linear."""
        return self.fc(torch.flatten(self.pool(features), 1))


@register_model("wrn-D-K", kind="classifier", input_shape=(3, 32, 32), example="wrn-28-2",
                pattern=r"wrn-(?P<depth>\d+)-(?P<widen_factor>\d+)",
                description="Wide ResNet, CIFAR style, depth D = 6n+4, width K (wrn-28-2, wrn-28-8, wrn-28-10)")
def _build_wrn(depth: int, widen_factor: int, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0,
               activation: str = "relu", bn_momentum: float = 0.1, conv_bias: bool = False,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> WideResNet:
    return WideResNet(depth, widen_factor, num_classes, in_channels=in_channels, dropout=dropout,
                      activation=activation, bn_momentum=bn_momentum, conv_bias=conv_bias, mean=mean, std=std)
