"""Command-line interface: ``xairepro --help``.

Each command lives in its own module here and defines ``register(app)``; add the module's
name to ``COMMAND_MODULES`` to switch it on.
"""

from __future__ import annotations

import importlib
import sys

from xairepro.cli.app import app, fail, main

#: Modules under ``xairepro.cli`` that add commands to ``app``.
COMMAND_MODULES: list[str] = ["reproduce", "report", "saliency", "listing", "train", "data"]

_registered = False


def _register_commands() -> None:
    global _registered
    if _registered:
        return
    for name in COMMAND_MODULES:
        importlib.import_module(f"xairepro.cli.{name}").register(app)
    _registered = True


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


__all__ = ["app", "fail", "main", "run", "COMMAND_MODULES"]
