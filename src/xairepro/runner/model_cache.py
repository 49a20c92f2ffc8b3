"""Trained models cached by the hash of their training config, shared between experiments.

    folder = ctx.models.get_or_create(train_cfg, lambda d: train_into(d), name="wrn-28-2")

``build(folder)`` runs once per config: it works in ``<root>/<name>-<hash>.partial`` (kept when a run
is killed, so a training engine that resumes from its ``out_dir`` picks up where it stopped) and the
folder is renamed to ``<root>/<name>-<hash>`` only when ``build`` returns.  A file lock serialises
builders of the same config across processes (Ray tasks), so a model is never trained twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from xairepro.config import config_hash, config_to_dict
from xairepro.utils import atomic_write_text

__all__ = ["ModelCache"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op where unavailable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class ModelCache:
    """Folders of trained models under ``root``, one per training config (keyed by ``config_hash``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelCache({str(self.root)!r})"

    def folder(self, config: Any, *, name: str = "model") -> Path:
        """Where the artefacts of ``config`` live (whether or not they exist yet)."""
        slug = _SAFE.sub("-", name).strip("-") or "model"
        return self.root / f"{slug}-{config_hash(config)}"

    def has(self, config: Any, *, name: str = "model") -> bool:
        return (self.folder(config, name=name) / "config.json").is_file()

    def get_or_create(self, config: Any, build: Callable[[Path], Any], *, name: str = "model") -> Path:
        """The folder of ``config``'s artefacts; ``build(partial_folder)`` fills it the first time."""
        final = self.folder(config, name=name)
        if (final / "config.json").is_file():
            return final
        with _locked(final.with_name(final.name + ".lock")):
            if (final / "config.json").is_file():  # built by another process while we waited
                return final
            partial = final.with_name(final.name + ".partial")
            partial.mkdir(parents=True, exist_ok=True)
            build(partial)
            atomic_write_text(partial / "config.json",
                              json.dumps(config_to_dict(config), indent=2, sort_keys=True) + "\n")
            os.replace(partial, final)
        return final
