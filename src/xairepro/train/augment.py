"""Batched augmentations by name, for ``TrainConfig.augment``.

An augmentation is a callable ``aug(x, generator=g) -> x'`` on a batch (B, C, H, W) on the device
(``xairepro.data.transforms``); the engine calls it on every training batch with a generator it
derives from (seed, epoch, rank).  ``register_augmentation(name, factory)`` adds one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from xairepro.errors import ConfigError

__all__ = ["register_augmentation", "build_augmentation", "augmentation_names"]

Augmentation = Callable[..., Any]

_FACTORIES: dict[str, Callable[[], Augmentation]] = {}


def register_augmentation(name: str, factory: Callable[[], Augmentation]) -> None:
    """Make ``augment=name`` build ``factory()``."""
    if name in _FACTORIES or name == "none":
        raise ValueError(f"an augmentation named {name!r} is already registered")
    _FACTORIES[name] = factory


def _transforms() -> Any:
    from xairepro.data import transforms

    return transforms


def _builtin() -> None:
    if "crop-flip" in _FACTORIES:
        return
    # SPEC 4: random crop with reflect padding 4 + horizontal flip (CIFAR / LICO training).
    _FACTORIES["crop-flip"] = lambda: _transforms().RandomCropFlip(padding=4, mode="reflect")
    _FACTORIES["flip"] = lambda: _transforms().RandomCropFlip(padding=0)


def augmentation_names() -> list[str]:
    """Every name ``TrainConfig.augment`` accepts."""
    _builtin()
    return ["none", *sorted(_FACTORIES)]


def build_augmentation(name: str) -> Augmentation | None:
    """The augmentation called ``name`` (``None`` for ``"none"``); unknown names raise :class:`ConfigError`."""
    _builtin()
    if name == "none":
        return None
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, list(_FACTORIES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown augmentation {name!r}{hint} (valid: {', '.join(augmentation_names())})")
    return _FACTORIES[name]()
