"""LICO's training head: from a classifier's last stage, logits and labels to L = CE + alpha L_MM + beta L_OT.

Image tokens F: the last stage (B, C, H, W) as C tokens of dimension H W, each L2-normalised. Text tokens
G: h_psi of the frozen encoder's outputs for the K class prompts, each L2-normalised, gathered per sample
by label. L_MM compares unit-norm aggregates (each sample's token set flattened and L2-normalised, so
distances lie in [0, 2]) and gathers the class-level (K, K) text distances to (B, B); L_OT solves the B
transport problems in one batched Sinkhorn. :class:`LicoAlignment` holds every trainable part besides the
classifier (contexts, h_psi, tau), so it can sit in a wrapper model (:class:`~xairepro.lico.LICO`) or be
owned by the objective (``xairepro train --set method=lico``); the classifier itself stays unchanged.
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
from xairepro.lico.manifold import log_affinities, mm_from_distances, pairwise_distances, unit_aggregate
from xairepro.lico.prompts import PromptLearner, check_class_names
from xairepro.lico.sinkhorn import ot_loss
from xairepro.lico.text_encoders import TextEncoder, load_text_encoder
from xairepro.utils import preserved_state

__all__ = ["LicoAlignment", "LicoOutput", "image_tokens", "check_feature_map", "feature_token_shape"]


class LicoOutput(NamedTuple):
    """``logits`` (B, K); ``loss`` scalar with gradient; ``terms``: detached scalars (ce, mm, tau, ot)."""

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


def check_backbone(backbone: nn.Module) -> None:
    """Raise ``UsageError`` unless ``backbone`` exposes ``forward_features`` and ``forward_head``."""
    missing = [a for a in ("forward_features", "forward_head") if not callable(getattr(backbone, a, None))]
    if missing:
        raise UsageError(f"LICO trains a classifier exposing forward_features (last stage, (B, C, H, W)) and "
                         f"forward_head; {type(backbone).__name__} lacks {', '.join(missing)}")


def feature_token_shape(backbone: nn.Module, input_shape: Sequence[int] | None = None) -> tuple[int, int]:
    """(N, d') = (C, H' W') of ``backbone``'s last stage for images of ``input_shape`` (C, H, W).

    One forward of a zero image in eval mode, without gradient; the model's state is left as it was.
    """
    check_backbone(backbone)
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


class LicoAlignment(nn.Module):
    """Prompt learner + temperature + the LICO losses, for ``class_names`` in label order.

    ``forward(features (B, C, H, W), logits (B, K), labels (B,)) -> LicoOutput``. ``token_dim`` is
    d' = H' W' of the training feature maps. ``text_encoder`` overrides the one named in the config
    (tests use small ones). Initialisation is seeded by ``seed``; the global RNG is left untouched.
    """

    def __init__(self, class_names: Sequence[str], token_dim: int, config: LicoConfig | None = None, *,
                 text_encoder: TextEncoder | None = None, seed: int = 0) -> None:
        super().__init__()
        self.lico_config = (config or LicoConfig()).validate()
        cfg = self.lico_config
        self.class_names = check_class_names(class_names)
        if isinstance(token_dim, bool) or int(token_dim) < 1:
            raise UsageError(f"token_dim must be >= 1, got {token_dim}")
        self.token_dim = int(token_dim)
        self.needs_text = cfg.use_mm or cfg.use_ot
        self.prompt: PromptLearner | None = None
        if self.needs_text:
            encoder = text_encoder or load_text_encoder(cfg.text_encoder, clip_path=cfg.clip_path)
            self.prompt = PromptLearner(encoder, self.class_names, self.token_dim, mode=cfg.prompt_mode,
                                        n_ctx=cfg.n_ctx, ctx_init_std=cfg.ctx_init_std,
                                        mapping_hidden=cfg.mapping_hidden, seed=seed)
        if cfg.temperature == "fixed":
            self.register_buffer("tau", torch.tensor(float(cfg.tau_fixed)))
        else:
            self.tau = nn.Parameter(torch.tensor(float(cfg.tau_init)))

    def describe(self) -> dict[str, object]:
        """What ran, recorded with results: the LICO settings and the text encoder."""
        return {"lico": config_to_dict(self.lico_config), "token_dim": self.token_dim,
                "class_names": list(self.class_names),
                "text_encoder": self.prompt.encoder.describe() if self.prompt is not None else None}

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

    def forward(self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> LicoOutput:
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

    @staticmethod
    def mm_distances(tokens: torch.Tensor, text: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """D^F and D^G of L_MM, (B, B) each, in [0, 2]: distances between unit-norm aggregates.

        ``tokens`` (B, N, d') image tokens, ``text`` (K, M, d') class text tokens, ``labels`` (B,); the
        text distances are computed for the K classes and gathered by label (G_i is its class's tokens).
        """
        dist_image = pairwise_distances(unit_aggregate(tokens))                         # (B, B)
        dist_class = pairwise_distances(unit_aggregate(text))                           # (K, K)
        return dist_image, dist_class[labels][:, labels]

    def affinities(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A^F and A^G of L_MM at the current tau, (B, B) each, rows summing to 1 (a diagnostic; no grad).

        ``features`` the last stage (B, C, H, W), ``labels`` (B,).
        """
        with torch.no_grad():
            tokens, text = image_tokens(features), self.text_tokens()
            dtype = torch.promote_types(tokens.dtype, torch.float32)
            dist_image, dist_text = self.mm_distances(tokens.to(dtype), text.to(dtype), labels)
            tau, sign = self.temperature(), self.lico_config.mm_sign
            return log_affinities(dist_image, tau, sign=sign).exp(), log_affinities(dist_text, tau, sign=sign).exp()

    def _alignment(self, tokens: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                   terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """alpha L_MM + beta L_OT for image tokens (B, N, d') and class text tokens (K, M, d')."""
        cfg = self.lico_config
        total = tokens.new_zeros(())
        if cfg.use_mm:
            tau = self.temperature()
            dist_image, dist_text = self.mm_distances(tokens, text, labels)
            mm = mm_from_distances(dist_image, dist_text, tau, sign=cfg.mm_sign)
            total = total + cfg.alpha * mm
            terms["mm"], terms["tau"] = mm.detach(), tau.detach()
        if cfg.use_ot:
            ot = ot_loss(tokens, text[labels], cfg.ot_epsilon, cfg.ot_iters, grad=cfg.ot_grad)
            total = total + cfg.beta * ot
            terms["ot"] = ot.detach()
        return total
