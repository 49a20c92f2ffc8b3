"""What a data set is: :class:`DatasetInfo`, the static description every loader publishes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DatasetInfo", "TASKS", "AUGMENTATIONS"]

#: Kinds of data set: what ``ds[i] -> (x, y)`` holds and which extras come with it.
TASKS = ("classification", "segmentation", "series", "latents")

#: Names of the SPEC-4 training augmentations a data set is meant to be trained with
#: (see :func:`xairepro.data.transforms.default_train_transform`).
AUGMENTATIONS = ("none", "crop", "crop-flip", "resized-crop-flip")


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a data set (with its default options unless built by :func:`load`).

    ``input_shape`` is (C, H, W) for images and (T, C) for series; ``class_names`` are in label
    order (the name at index i is the class of label i); ``mean``/``std`` are per channel, in the
    [0, 1] pixel space the data set returns.
    """

    name: str
    task: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bundled: bool
    source: str
    description: str
    augmentation: str = "none"
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation {self.augmentation!r} is not one of {', '.join(AUGMENTATIONS)}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        channels = self.input_shape[0] if self.task != "series" else self.input_shape[-1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"{self.name}: mean/std need {channels} values")

    @property
    def channels(self) -> int:
        """Number of channels: C of (C, H, W) images, C of (T, C) series."""
        return self.input_shape[-1] if self.task == "series" else self.input_shape[0]

    @property
    def default_options(self) -> dict[str, Any]:
        """The data-set-specific options :func:`~xairepro.data.load` accepts, with their defaults."""
        return dict(self.options)

    def replace(self, **changes: Any) -> DatasetInfo:
        """A copy with some fields changed (e.g. ``input_shape`` after a ``size=`` option)."""
        return dataclasses.replace(self, **changes)
