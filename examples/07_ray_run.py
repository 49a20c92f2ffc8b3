"""A run on Ray.

``executor="ray"`` (``xairepro reproduce --executor ray``) sends each cell to Ray as a task; without an
address a local Ray is started with the machine's CPUs and shut down afterwards, with ``address="HOST:PORT"``
the cells go to a running cluster. The cells, their cache keys and their numbers are those of a local run.
Here the smoke experiment (a digits classifier and a denoising autoencoder, one cell per seed) runs on a local Ray; the figure shows the numbers each cell returned. Ray is optional: without it this
example says how to install it and exits with status 1.
"""

import sys
import tempfile
from pathlib import Path

try:
    import ray  # noqa: F401  (the runner imports it itself; here only to say what is missing)
except ImportError:
    sys.exit("this example needs Ray, which is not installed: pip install 'xairepro[distributed]' "
             "(or pip install 'ray>=2.9')")

import pandas as pd  # noqa: E402

from common import plt, save  # noqa: E402
from xairepro.runner import reproduce  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    summary = reproduce(["smoke"], preset="quick", out_dir=tmp, executor="ray", show_progress=False)
    print(f"{summary.computed} cells computed on Ray in {summary.wall_time_s:.0f} s, failures: {summary.failures}")
    results = pd.read_csv(Path(tmp) / "results.csv")
print(results[["seed", "metric", "value"]].to_string(index=False))

table = results.pivot_table(index="metric", columns="seed", values="value")
fig, ax = plt.subplots(figsize=(8, 3.5))
table.plot.barh(ax=ax)
ax.set_xlabel("value")
ax.set_title("smoke experiment, computed by a Ray task")
save(fig, "07_ray_run")
