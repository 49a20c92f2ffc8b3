"""The LICO wrapper: a classifier exposing its last stage plus the text branch used in training (SPEC 4).

``model(x)`` is the plain classifier (the text branch is dropped at inference); ``model(x, labels)``
returns a :class:`~xairepro.lico.alignment.LicoOutput` with L = CE + alpha L_MM + beta L_OT and its
terms. Explainers see the backbone's ``forward_features``, ``forward_head`` and ``cam_layer``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xairepro.lico.alignment import (
    LicoAlignment,
    LicoOutput,
    check_backbone,
    check_feature_map,
    feature_token_shape,
)
from xairepro.lico.config import LicoConfig
from xairepro.lico.prompts import check_class_names
from xairepro.lico.text_encoders import TextEncoder

__all__ = ["LICO"]


class LICO(nn.Module):
    """LICO around ``backbone``; ``class_names`` in the data set's label order.

    ``input_shape`` (C, H, W) of the training images sizes h_psi (d' = H' W' of the feature map); it
    defaults to ``backbone.input_shape``; ``token_dim`` gives d' directly. ``text_encoder`` overrides
    the one named in the config. The frozen encoder is shared and kept out of ``state_dict``.
    """

    def __init__(self, backbone: nn.Module, class_names: Sequence[str], config: LicoConfig | None = None, *,
                 input_shape: Sequence[int] | None = None, token_dim: int | None = None,
                 text_encoder: TextEncoder | None = None, seed: int = 0) -> None:
        super().__init__()
        check_backbone(backbone)
        num_classes = getattr(backbone, "num_classes", None)
        names = check_class_names(class_names, num_classes if isinstance(num_classes, int) else None)
        self.num_image_tokens: int | None = None
        if token_dim is None:
            self.num_image_tokens, token_dim = feature_token_shape(backbone, input_shape)
        self.backbone = backbone
        self.alignment = LicoAlignment(names, token_dim, config, text_encoder=text_encoder, seed=seed)
        self.num_classes = len(names)
        self.class_names = names
        self.config = {"backbone": dict(getattr(backbone, "config", {}) or {}), **self.alignment.describe()}

    @property
    def lico_config(self) -> LicoConfig:
        return self.alignment.lico_config

    @property
    def token_dim(self) -> int:
        return self.alignment.token_dim

    # classifier interface: explainers and metrics see the plain backbone
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(features)

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.cam_layer

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        return getattr(self.backbone, "input_shape", None)

    def check_input(self, x: torch.Tensor) -> None:
        check = getattr(self.backbone, "check_input", None)
        if callable(check):
            check(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor | LicoOutput:
        """``model(x)`` -> logits (B, K); ``model(x, labels)`` -> :class:`LicoOutput` (training)."""
        features = self.backbone.forward_features(x)
        if labels is not None and self.alignment.needs_text:
            check_feature_map(features)
        logits = self.backbone.forward_head(features)
        return logits if labels is None else self.alignment(features, logits, labels)

    def classifier(self) -> nn.Module:
        """The trained backbone alone (what inference and explanations use)."""
        return self.backbone

    @staticmethod
    def backbone_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The backbone's entries of a LICO ``state_dict`` (prefix ``backbone.`` removed)."""
        return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
