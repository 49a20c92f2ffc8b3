"""Metrics: insertion/deletion, soft IoU, similarity rates, consistency curves, ROAR, map statistics.

Each metric states whether higher is better (``HIGHER_IS_BETTER``) so tables can mark arrows.
Names are imported lazily.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS: dict[str, str] = {
    "insertion_deletion": "xairepro.metrics.insertion_deletion",
    "InsertionDeletionProtocol": "xairepro.metrics.insertion_deletion",
    "InsertionDeletionResult": "xairepro.metrics.insertion_deletion",
    "soft_iou": "xairepro.metrics.iou",
    "similarity_rates": "xairepro.metrics.similarity",
    "feature_consistency": "xairepro.metrics.consistency",
    "topk_masks": "xairepro.metrics.consistency",
    "roar": "xairepro.metrics.roar",
    "pearson_offdiagonal": "xairepro.metrics.correlation",
    "pearson_matrix": "xairepro.metrics.correlation",
    "spearman_offdiagonal": "xairepro.metrics.correlation",
    "cosine_offdiagonal": "xairepro.metrics.correlation",
    "attribution_entropy": "xairepro.metrics.correlation",
    "active_units": "xairepro.metrics.correlation",
}

#: Direction of every named score, for tables and claims (Quantus-style metadata).
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "insertion": True,
    "deletion": False,
    "overall": True,
    "soft_iou": True,
    "similarity_rate_most": True,
    "similarity_rate_least": False,
    "latent_shift": True,
    "test_loss": False,
}

__all__ = sorted(_EXPORTS) + ["HIGHER_IS_BETTER"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xairepro.metrics' has no attribute {name!r}")
    mod = importlib.import_module(module)
    # bind every name of that module: importing a submodule named like one of its functions
    # (``insertion_deletion``) sets the package attribute to the submodule, shadowing the function
    for other, where in _EXPORTS.items():
        if where == module and hasattr(mod, other):
            globals()[other] = getattr(mod, other)
    value = getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


class _Package(types.ModuleType):
    """Importing a submodule named like its function (``roar``, ``insertion_deletion``) sets the package
    attribute to the submodule; bind the function instead, so ``from xairepro.metrics import roar`` is
    always the function (``from xairepro.metrics.roar import ...`` still works through sys.modules)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
