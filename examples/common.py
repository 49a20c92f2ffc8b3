"""What every example shares: where its figure goes, and a plain digits classifier trained in seconds.

The output folder is the script's first argument, else ``$XAIREPRO_EXAMPLES_OUT``, else ``examples/out``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def output_folder() -> Path:
    """The folder the figure is written to (created)."""
    default = Path(__file__).resolve().parent / "out"
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("XAIREPRO_EXAMPLES_OUT", default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save(fig: "plt.Figure", name: str) -> Path:
    """Write ``fig`` as ``<output folder>/<name>.png`` and say where."""
    path = output_folder() / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"figure: {path}")
    return path
