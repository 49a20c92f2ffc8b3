"""Each script of ``examples/`` runs on bundled data and writes a non-trivial figure (slow: ~6 min)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_writes_its_figure(script: Path, tmp_path: Path) -> None:
    if script.stem.endswith("ray_run"):
        pytest.importorskip("ray", reason="the Ray example needs the 'distributed' extra")
    import matplotlib.image

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    figure = tmp_path / f"{script.stem}.png"
    assert figure.is_file() and figure.stat().st_size > 10_000
    pixels = matplotlib.image.imread(figure)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and float(pixels[..., :3].std()) > 0.05
