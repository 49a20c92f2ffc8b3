"""Explanations: CAM family, Group-CAM, RISE, label-free feature and example importance.

Every explainer takes a plain ``nn.Module`` and tensors, returns tensors on the input's device,
and leaves the model's train/eval flag, hooks and ``.grad`` as they were (SPEC section 9).
Example importance: scores (n_test, n_train), positive = the training example supports the test example
(for influence functions score / n ≈ the rise of the test loss when it is left out; docs/decisions.md).
Names are imported lazily so that ``import xairepro.explain`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # saliency (SPEC 5)
    "GradCAM": "xairepro.explain.cam",
    "GradCAMPlusPlus": "xairepro.explain.cam",
    "ScoreCAM": "xairepro.explain.cam",
    "LayerCAM": "xairepro.explain.cam",
    "XGradCAM": "xairepro.explain.cam",
    "EigenCAM": "xairepro.explain.cam",
    "HiResCAM": "xairepro.explain.cam",
    "saliency_method": "xairepro.explain.cam",
    "method_name": "xairepro.explain.cam",
    "SALIENCY_METHODS": "xairepro.explain.cam",
    "SALIENCY_CLASSES": "xairepro.explain.cam",
    "GroupCAM": "xairepro.explain.group_cam",
    "RISE": "xairepro.explain.rise",
    "generate_rise_masks": "xairepro.explain.rise",
    # label-free feature importance (SPEC 6)
    "LabelFreeAttribution": "xairepro.explain.label_free",
    # label-free example importance (SPEC 6)
    "per_example_gradients": "xairepro.explain.per_example_grads",
    "InfluenceFunctions": "xairepro.explain.influence",
    "TracIn": "xairepro.explain.tracin",
    "SimplEx": "xairepro.explain.simplex",
    "DKNN": "xairepro.explain.dknn",
    # training-data attribution at scale
    "GradientStore": "xairepro.explain.gradient_store",
    "Projector": "xairepro.explain.projection",
    "KroneckerFactors": "xairepro.explain.kronecker_factors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xairepro.explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
