"""``LicoConfig``: the one source of LICO's defaults and named variant switches (SPEC 4).

Every switch that separates the paper from the authors' code is a named field, recorded with results:

- ``prompt_mode``: ``"paper"`` (one shared context, every context/name token output kept, M = n_ctx + 1)
  or ``"official"`` (per-class contexts, end-of-text vector only, M = 1).
- ``temperature``: ``"learnable"`` (init log(1/0.07) used directly as the divisor), ``"fixed"`` (tau = 1),
  ``"learnable-clamped"`` (learnable, clamped to [tau_min, tau_max] in the forward pass).
- ``mm_sign``: ``"paper"`` (softmax of -D/tau) or ``"official"`` (softmax of +D/tau, the authors' sign).
- ``ot_grad``: ``"cost"`` (plan without gradient, cost differentiable) or ``"none"`` (no gradient at all).
- ``losses``: the ablation, ``"ce"``, ``"mm"``, ``"ot"`` or ``"mm+ot"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xairepro.errors import ConfigError

#: Sinkhorn entropic regularisation and iteration count (SPEC 4).
DEFAULT_EPSILON: float = 0.1
DEFAULT_N_ITERS: int = 100
#: Learnable temperature initial value, used directly as the divisor (official code).
DEFAULT_TAU_INIT: float = math.log(1.0 / 0.07)
#: CLIP ViT-B/32: a local folder, or this hub id looked up in the local Hugging Face cache only.
DEFAULT_CLIP_PATH: str = "openai/clip-vit-base-patch32"

TEXT_ENCODERS = ("minilm", "clip")
PROMPT_MODES = ("paper", "official")
TEMPERATURES = ("learnable", "fixed", "learnable-clamped")
MM_SIGNS = ("paper", "official")
OT_GRADS = ("cost", "none")
ABLATIONS = ("ce", "mm", "ot", "mm+ot")


@dataclass
class LicoConfig:
    """LICO's settings; defaults follow the paper (alpha = 10, beta = 1, 12 context tokens)."""

    text_encoder: str = "minilm"
    #: where CLIP ViT-B/32 lies: a local folder, or a hub id looked up in the local cache only.
    clip_path: str = DEFAULT_CLIP_PATH
    prompt_mode: str = "paper"
    n_ctx: int = 12
    ctx_init_std: float = 0.02
    mapping_hidden: int = 512
    losses: str = "mm+ot"
    alpha: float = 10.0
    beta: float = 1.0
    temperature: str = "learnable"
    tau_init: float = DEFAULT_TAU_INIT
    tau_fixed: float = 1.0
    tau_min: float = 0.01
    tau_max: float = 10.0
    mm_sign: str = "paper"
    ot_grad: str = "cost"
    ot_epsilon: float = DEFAULT_EPSILON
    ot_iters: int = DEFAULT_N_ITERS

    def validate(self) -> LicoConfig:
        """Raise ``ConfigError`` naming the first bad value; return self."""
        choices = {
            "text_encoder": TEXT_ENCODERS,
            "prompt_mode": PROMPT_MODES,
            "temperature": TEMPERATURES,
            "mm_sign": MM_SIGNS,
            "ot_grad": OT_GRADS,
            "losses": ABLATIONS,
        }
        for key, allowed in choices.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(f"lico.{key}={value!r} is not one of {', '.join(allowed)}")
        for key in ("n_ctx", "mapping_hidden", "ot_iters"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"lico.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("ctx_init_std", "tau_init", "tau_fixed", "tau_min", "tau_max", "ot_epsilon"):
            if not float(getattr(self, key)) > 0:
                raise ConfigError(f"lico.{key} must be > 0, got {getattr(self, key)}")
        if self.tau_min > self.tau_max:
            raise ConfigError(f"lico.tau_min={self.tau_min} is larger than lico.tau_max={self.tau_max}")
        for key in ("alpha", "beta"):
            if float(getattr(self, key)) < 0:
                raise ConfigError(f"lico.{key} must be >= 0, got {getattr(self, key)}")
        return self

    @property
    def use_mm(self) -> bool:
        """Whether the manifold-matching term is on (ablation includes it and alpha > 0)."""
        return "mm" in self.losses and self.alpha > 0

    @property
    def use_ot(self) -> bool:
        """Whether the optimal-transport term is on (ablation includes it and beta > 0)."""
        return "ot" in self.losses and self.beta > 0
