"""The LICO wrapper: any classifier exposing its last stage, plus the text branch used in training (SPEC 4).

L = CE + alpha L_MM + beta L_OT on the image tokens F (the last stage (B, C, H, W) as C tokens of
dimension H W, each L2-normalised) and the text tokens G (h_psi of the frozen encoder's outputs, each
L2-normalised, gathered per sample by label). ``model(x)`` is the plain classifier (the text branch is
dropped at inference); ``model(x, labels)`` returns a :class:`LicoOutput` with the loss and its terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from xairepro.config import config_to_dict
from xairepro.errors import UsageError
from xairepro.lico.config import LicoConfig
from xairepro.lico.manifold import mm_from_distances, pairwise_distances
from xairepro.lico.prompts import PromptLearner, check_class_names
from xairepro.lico.sinkhorn import ot_loss
from xairepro.lico.text_encoders import TextEncoder, load_text_encoder
from xairepro.utils import preserved_state

__all__ = ["LICO", "LicoOutput", "image_tokens"]


class LicoOutput(NamedTuple):
    """``logits`` (B, K); ``loss`` scalar with gradient; ``terms``: detached scalars (ce, mm, ot, tau)."""

    logits: torch.Tensor
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


def check_feature_map(features: torch.Tensor) -> None:
    """Raise ``UsageError`` unless ``features`` is a (B, C, H, W) feature map."""
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise UsageError(f"LICO needs the last conv stage as a (B, C, H, W) feature map, got shape {shape}; "
                         "the backbone's forward_features must return the map before pooling")


def image_tokens(features: torch.Tensor) -> torch.Tensor:
    """Last-stage feature map (B, C, H, W) -> C tokens of dimension H W, each L2-normalised: (B, C, H W)."""
    check_feature_map(features)
    return F.normalize(features.flatten(2), dim=-1)


def _check_backbone(backbone: nn.Module) -> None:
    missing = [a for a in ("forward_features", "forward_head") if not callable(getattr(backbone, a, None))]
    if missing:
        raise UsageError(f"LICO wraps a classifier exposing forward_features (last stage, (B, C, H, W)) and "
                         f"forward_head; {type(backbone).__name__} lacks {', '.join(missing)}")


class LICO(nn.Module):
    """LICO around ``backbone``; ``class_names`` in the data set's label order.

    ``input_shape`` (C, H, W) of the training images sizes h_psi (d' = H' W' of the feature map); it
    defaults to ``backbone.input_shape``; ``token_dim`` gives d' directly. ``text_encoder`` overrides
    the one named in the config (tests use small ones). Initialisation is seeded by ``seed`` and leaves
    the global RNG untouched.
    """

    def __init__(self, backbone: nn.Module, class_names: Sequence[str], config: LicoConfig | None = None, *,
                 input_shape: Sequence[int] | None = None, token_dim: int | None = None,
                 text_encoder: TextEncoder | None = None, seed: int = 0) -> None:
        super().__init__()
        _check_backbone(backbone)
        self.lico_config = (config or LicoConfig()).validate()
        cfg = self.lico_config
        num_classes = getattr(backbone, "num_classes", None)
        names = check_class_names(class_names, num_classes if isinstance(num_classes, int) else None)
        self.backbone = backbone
        self.num_classes = len(names)
        self.num_image_tokens, self.token_dim = self._token_shape(backbone, input_shape, token_dim)
        self.needs_text = cfg.use_mm or cfg.use_ot
        self.prompt: PromptLearner | None = None
        if self.needs_text:
            encoder = text_encoder or load_text_encoder(cfg.text_encoder, clip_path=cfg.clip_path)
            self.prompt = PromptLearner(encoder, names, self.token_dim, mode=cfg.prompt_mode, n_ctx=cfg.n_ctx,
                                        ctx_init_std=cfg.ctx_init_std, mapping_hidden=cfg.mapping_hidden,
                                        seed=seed)
        if cfg.temperature == "fixed":
            self.register_buffer("tau", torch.tensor(float(cfg.tau_fixed)))
        else:
            self.tau = nn.Parameter(torch.tensor(float(cfg.tau_init)))
        self.class_names = names
        self.config = {
            "backbone": dict(getattr(backbone, "config", {}) or {}),
            "class_names": list(names),
            "lico": config_to_dict(cfg),
            "token_dim": self.token_dim,
            "text_encoder": self.prompt.encoder.describe() if self.prompt is not None else None,
        }

    @staticmethod
    def _token_shape(backbone: nn.Module, input_shape: Sequence[int] | None,
                     token_dim: int | None) -> tuple[int | None, int]:
        if token_dim is not None:
            if int(token_dim) < 1:
                raise UsageError(f"token_dim must be >= 1, got {token_dim}")
            return None, int(token_dim)
        shape = input_shape if input_shape is not None else getattr(backbone, "input_shape", None)
        if shape is None:
            raise UsageError("LICO needs the training image size to size h_psi: pass input_shape=(C, H, W), "
                             "e.g. (3, 32, 32), or token_dim=H'*W' of the last feature map")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise UsageError(f"input_shape must be (C, H, W), got {shape}")
        device = next(iter(backbone.parameters()), torch.zeros(())).device
        with preserved_state(backbone, eval_mode=True), torch.no_grad():
            feats = backbone.forward_features(torch.zeros(1, *shape, device=device))
        tokens = image_tokens(feats)
        return int(tokens.shape[1]), int(tokens.shape[2])

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

    def temperature(self) -> torch.Tensor:
        """tau as used: the learnable or fixed value, clamped to [tau_min, tau_max] when so configured."""
        if self.lico_config.temperature == "learnable-clamped":
            return self.tau.clamp(self.lico_config.tau_min, self.lico_config.tau_max)
        return self.tau

    def text_tokens(self) -> torch.Tensor:
        """L2-normalised mapped text tokens of the K classes: (K, M, d')."""
        if self.prompt is None:
            raise UsageError("this LICO model has no text branch (losses='ce' or zero weights)")
        return F.normalize(self.prompt(), dim=-1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor | LicoOutput:
        """``model(x)`` -> logits (B, K); ``model(x, labels)`` -> :class:`LicoOutput` (training)."""
        if labels is None:
            return self.backbone.forward_head(self.backbone.forward_features(x))
        features = self.backbone.forward_features(x)
        if self.needs_text:
            check_feature_map(features)
        logits = self.backbone.forward_head(features)
        return self.losses(features, logits, labels)

    def losses(self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> LicoOutput:
        """CE + alpha L_MM + beta L_OT from the feature map (B, C, H, W), logits (B, K), labels (B,)."""
        ce = F.cross_entropy(logits, labels)
        terms: dict[str, torch.Tensor] = {"ce": ce.detach()}
        loss = ce
        if self.needs_text:
            tokens = image_tokens(features)                                             # (B, N, d')
            if tokens.shape[-1] != self.token_dim:
                raise UsageError(f"the feature map is {features.shape[2]} x {features.shape[3]} "
                                 f"({tokens.shape[-1]} values per token) but LICO was built for tokens of "
                                 f"{self.token_dim}; build it with the input size you train on")
            text = self.text_tokens()                                                   # (K, M, d')
            dtype = torch.promote_types(tokens.dtype, torch.float32)
            with torch.autocast(tokens.device.type, enabled=False):  # the alignment terms in >= float32
                loss = loss + self._alignment(tokens.to(dtype), text.to(dtype), labels, terms)
        return LicoOutput(logits, loss, terms)

    def _alignment(self, tokens: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                   terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """alpha L_MM + beta L_OT for image tokens (B, N, d') and class text tokens (K, M, d')."""
        cfg = self.lico_config
        total = tokens.new_zeros(())
        if cfg.use_mm:
            tau = self.temperature()
            dist_image = pairwise_distances(tokens.flatten(1))                          # (B, B)
            dist_class = pairwise_distances(text.flatten(1))                            # (K, K)
            dist_text = dist_class[labels][:, labels]                                   # (B, B): G_i by label
            mm = mm_from_distances(dist_image, dist_text, tau, sign=cfg.mm_sign)
            total = total + cfg.alpha * mm
            terms["mm"], terms["tau"] = mm.detach(), tau.detach()
        if cfg.use_ot:
            ot = ot_loss(tokens, text[labels], cfg.ot_epsilon, cfg.ot_iters, grad=cfg.ot_grad)
            total = total + cfg.beta * ot
            terms["ot"] = ot.detach()
        return total

    def classifier(self) -> nn.Module:
        """The trained backbone alone (what inference and explanations use)."""
        return self.backbone

    @staticmethod
    def backbone_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The backbone's entries of a LICO ``state_dict`` (prefix ``backbone.`` removed)."""
        return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
