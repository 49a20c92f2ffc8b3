"""The data set registry: ``load(name, split, data_dir, seed=..., download=..., **options)``.

Every set registers a :class:`~xairepro.data.info.DatasetInfo` (its default options included)
and a builder ``build(request) -> XDataset``. ``load`` validates the name, split and options
(unknown ones raise :class:`UsageError` listing the valid ones) and hands the builder a
:class:`LoadRequest` with the helpers every loader shares: the split indices and file lookup.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xairepro.data.dataset import XDataset
from xairepro.data.files import data_root, locate, missing_error
from xairepro.data.info import DatasetInfo
from xairepro.data.splits import carve, check_split, take_subset, three_way
from xairepro.errors import DataNotFoundError, UsageError

__all__ = ["load", "list_datasets", "dataset_info", "check_dataset_options", "register_dataset", "LoadRequest",
           "GENERIC_OPTIONS"]

#: Options every data set accepts, besides its own (``info.options``).
GENERIC_OPTIONS: dict[str, Any] = {"subset": None}

#: Modules that register data sets when imported (real loaders first, then bundled/generated).
_LOADER_MODULES = ("vision", "mnist_subset", "folders", "ecg", "dsprites", "digits", "shapes")


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    build: Callable[[LoadRequest], XDataset]


_REGISTRY: dict[str, _Entry] = {}
_ALIASES: dict[str, str] = {}
_loaded = False


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


def register_dataset(info: DatasetInfo, build: Callable[[LoadRequest], XDataset],
                     aliases: Sequence[str] = ()) -> None:
    """Add a data set: ``load(info.name, ...)`` calls ``build(request)``."""
    if info.name in _REGISTRY:
        raise ValueError(f"a data set named {info.name!r} is already registered")
    _REGISTRY[info.name] = _Entry(info, build)
    for alias in (info.name, *aliases):
        _ALIASES[_key(alias)] = info.name


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _LOADER_MODULES:
        importlib.import_module(f"xairepro.data.{module}")


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    if not isinstance(name, str):
        raise UsageError(f"a data set name must be a string, got {type(name).__name__}")
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        valid = list(_REGISTRY)
        close = difflib.get_close_matches(name.lower(), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown data set {name!r}{hint}; valid data sets: {', '.join(valid)}")
    return _REGISTRY[canonical]


def list_datasets() -> list[DatasetInfo]:
    """Every registered data set's info (default options), real sets first, then bundled/generated."""
    _ensure_loaded()
    infos = [e.info for e in _REGISTRY.values()]
    return [i for i in infos if not i.bundled] + [i for i in infos if i.bundled]


def dataset_info(name: str) -> DatasetInfo:
    """The info of data set ``name`` with its default options (aliases such as ``cifar-10`` accepted)."""
    return _entry(name).info


@dataclass
class LoadRequest:
    """What ``load`` was asked for, with validated options, plus the helpers loaders share."""

    info: DatasetInfo
    split: str
    root: Path
    seed: int
    download: bool
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def subset(self) -> int | float | None:
        return self.options.get("subset")

    def option(self, key: str) -> Any:
        return self.options[key]

    def finish(self, idx: Tensor) -> Tensor:
        """``idx`` after the ``subset`` option; an empty split is a :class:`UsageError`."""
        if idx.numel() == 0:
            raise UsageError(f"{self.name} has no {self.split} examples with these options "
                             f"(val_size={self.options.get('val_size')!r}, "
                             f"test_size={self.options.get('test_size')!r})")
        return take_subset(idx, self.subset, self.seed, f"{self.name}/{self.split}")

    def official_indices(self, n_files: int) -> Tensor:
        """Indices of this split into the files read for it: all test files for ``test``; for
        ``train``/``val`` the training files minus/just a seeded ``val_size`` carve-out."""
        if self.split == "test":
            return self.finish(torch.arange(n_files))
        train, val = carve(n_files, self.options["val_size"], self.seed, self.name)
        return self.finish(train if self.split == "train" else val)

    def pool_indices(self, n: int) -> Tensor:
        """Indices of this split in one pool of ``n`` examples: seeded ``test_size``, then ``val_size``."""
        train, val, test = three_way(n, self.options["test_size"], self.options["val_size"], self.seed, self.name)
        return self.finish({"train": train, "val": val, "test": test}[self.split])

    def find(self, display: str, names: Sequence[str], candidates: Sequence[Path], where: str, *,
             download: Callable[[Path], None] | None = None, allow_gz: bool = False) -> dict[str, Path]:
        """``{name: path}`` of the required files from the first candidate folder holding them all.

        With ``download=True`` and a downloader, fetch the files into the data folder first. Missing
        files raise :class:`DataNotFoundError` naming them and where to get them.
        """
        found = locate(candidates, names, allow_gz=allow_gz)
        if found is None and self.download and download is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                download(self.root)
            except Exception as exc:  # noqa: BLE001 - network/archive failures become one clear line
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DataNotFoundError(f"downloading {display} into {self.root} failed ({reason}); "
                                        f"get the files from {where}") from None
            found = locate(candidates, names, allow_gz=allow_gz)
        if found is None:
            raise missing_error(display, names, candidates, where, downloadable=download is not None)
        return found


def _check_options(entry: _Entry, options: dict[str, Any]) -> dict[str, Any]:
    valid = {**GENERIC_OPTIONS, **entry.info.default_options}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" for k, v in valid.items())
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for data set {entry.info.name!r}; "
                         f"valid options: {listing}")
    return {**valid, **options}


def check_dataset_options(name: str, options: dict[str, Any]) -> None:
    """Raise :class:`UsageError` for an unknown data set or option name, without loading anything
    (``download`` is ``load``'s own keyword and always accepted)."""
    _check_options(_entry(name), {k: v for k, v in options.items() if k != "download"})


def load(name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None, *, seed: int = 0,
         download: bool = False, **options: Any) -> XDataset:
    """Load split ``split`` ("train" | "val" | "test") of data set ``name``.

    ``data_dir``: folder with the real files (else ``$XAIREPRO_DATA_DIR``, else
    ``~/.cache/xairepro/data``); generated sets ignore it. ``seed`` fixes the validation carve-out,
    ``subset`` and generated data. ``download=True`` lets sets with a downloader fetch missing
    files. ``options``: ``subset`` (count or fraction of the split, seeded) and the set's own
    options (``dataset_info(name).options``).
    """
    entry = _entry(name)
    check_split(split)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed must be an int, got {seed!r}")
    request = LoadRequest(entry.info, split, data_root(data_dir), int(seed), bool(download),
                          _check_options(entry, options))
    return entry.build(request)
