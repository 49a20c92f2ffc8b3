"""Command-line interface: ``xairepro --help``.

Each command lives in its own module here and defines ``register(app)``; add the module's
name to ``COMMAND_MODULES`` (``xairepro/cli/app.py``) to switch it on.
"""

from __future__ import annotations

import sys

from xairepro.cli.app import COMMAND_MODULES, app, fail, main


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


__all__ = ["app", "fail", "main", "run", "COMMAND_MODULES"]
