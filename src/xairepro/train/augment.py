"""Batched augmentations by name, for ``TrainConfig.augment`` and SimCLR's views.

An augmentation is a callable ``aug(x, generator=g) -> x'`` on a batch (B, C, H, W) on the device
(``xairepro.data.transforms``); the engine calls it on every training batch with a generator it
derives from (seed, epoch, rank).  Factories receive the images' shape (C, H, W), since some
augmentations (resized crops) need the output size.  ``register_augmentation(name, factory)`` adds one.

Built-in names: ``crop-flip`` (random crop with reflect padding 4 + horizontal flip, SPEC 4), ``crop``,
``flip``, ``resized-crop-flip`` (ImageNet-style), ``simclr`` (random resized crop, scale 0.08-1, + flip).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

from xairepro.data import transforms as t
from xairepro.errors import ConfigError

__all__ = ["register_augmentation", "build_augmentation", "augmentation_names", "check_augmentation"]

Augmentation = Callable[..., Any]
Factory = Callable[[Sequence[int] | None], Augmentation]

_FACTORIES: dict[str, Factory] = {}


def register_augmentation(name: str, factory: Factory) -> None:
    """Make ``augment=name`` build ``factory(input_shape)``."""
    _builtin()
    if name in _FACTORIES or name == "none":
        raise ValueError(f"an augmentation named {name!r} is already registered")
    _FACTORIES[name] = factory


def _size(shape: Sequence[int] | None, name: str) -> int:
    if shape is None or len(shape) != 3:
        raise ConfigError(f"augmentation {name!r} needs images (C, H, W); got inputs shaped {shape}")
    return int(shape[-1])


def _builtin() -> None:
    if _FACTORIES:
        return

    _FACTORIES.update({
        "crop-flip": lambda shape: t.RandomCropFlip(padding=4, mode="reflect"),
        "crop": lambda shape: t.RandomCropFlip(padding=4, mode="reflect", flip=False),
        "flip": lambda shape: t.RandomCropFlip(padding=0),
        "resized-crop-flip": lambda shape: t.RandomResizedCropFlip(_size(shape, "resized-crop-flip")),
        "simclr": lambda shape: t.RandomResizedCropFlip(_size(shape, "simclr"), scale=(0.08, 1.0)),
    })


def augmentation_names() -> list[str]:
    """Every name ``TrainConfig.augment`` accepts."""
    _builtin()
    return ["none", *sorted(_FACTORIES)]


def check_augmentation(name: str) -> None:
    """Raise :class:`ConfigError` when ``name`` is not a known augmentation."""
    _builtin()
    if name != "none" and name not in _FACTORIES:
        close = difflib.get_close_matches(name, list(_FACTORIES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown augmentation {name!r}{hint} (valid: {', '.join(augmentation_names())})")


def build_augmentation(name: str, input_shape: Sequence[int] | None = None) -> Augmentation | None:
    """The augmentation called ``name`` for inputs of shape (C, H, W) (``None`` for ``"none"``)."""
    check_augmentation(name)
    if name == "none":
        return None
    return _FACTORIES[name](tuple(input_shape) if input_shape is not None else None)
