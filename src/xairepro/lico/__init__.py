"""LICO: prompt learner, frozen text encoders, manifold-matching and optimal-transport losses.

    from xairepro.lico import LICO, LicoConfig, LicoObjective, sinkhorn, ot_loss, manifold_matching_loss

The losses are imported eagerly (``sinkhorn`` is both a module and a function: the function wins);
the rest lazily, so that ``import xairepro.lico`` does not import transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from xairepro.lico.config import LicoConfig
from xairepro.lico.manifold import manifold_matching_loss
from xairepro.lico.sinkhorn import ot_loss, sinkhorn

_EAGER = ["LicoConfig", "manifold_matching_loss", "ot_loss", "sinkhorn"]
_EXPORTS: dict[str, str] = {
    "TextEncoder": "xairepro.lico.text_encoders",
    "load_text_encoder": "xairepro.lico.text_encoders",
    "PromptLearner": "xairepro.lico.prompts",
    "LICO": "xairepro.lico.model",
    "LicoAlignment": "xairepro.lico.alignment",
    "LicoOutput": "xairepro.lico.alignment",
    "image_tokens": "xairepro.lico.alignment",
    "feature_token_shape": "xairepro.lico.alignment",
    "LicoObjective": "xairepro.lico.objective",
}

__all__ = sorted([*_EAGER, *_EXPORTS])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xairepro.lico' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
