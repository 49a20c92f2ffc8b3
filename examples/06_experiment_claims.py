"""Running one experiment of a study through the library, and reading its claims.

``xairepro.runner.reproduce`` is what ``xairepro reproduce`` calls: it plans the experiment's cells (one per
seed, model, method, ...), runs them (cached by the hash of their config: rerunning recomputes nothing),
aggregates the results and checks each claim of the study against them. Here the label-free study's feature
consistency experiment (Figure 1 of the study: masking the most important pixels moves the latent more than
masking random ones) runs on its quick preset with one seed; with one seed a difference has no
uncertainty, so a verdict may be 'inconclusive' (``overrides=["seeds=[0,1]"]`` runs two). ``claims.json`` holds each claim's verdict
with the numbers that decided it; ``results.csv`` every number.
"""

import json
import tempfile
from pathlib import Path

import pandas as pd

from common import plt, save
from xairepro.runner import reproduce

with tempfile.TemporaryDirectory() as tmp:
    summary = reproduce(["labelfree-feature-consistency"], preset="quick", out_dir=tmp,
                        overrides=["seeds=[0]"], show_progress=False)
    print(summary)
    claims = json.loads((Path(tmp) / "claims.json").read_text())
    results = pd.read_csv(Path(tmp) / "results.csv")

EXPERIMENT = "labelfree-feature-consistency"
claims = claims[EXPERIMENT]  # claims.json: {experiment: [claim, ...]}
for claim in claims:
    print(f"[{claim['status']}] {claim['id']}: {claim['text']}\n    ({claim['source']}) {claim['reason']}")
print(f"results.csv: {len(results)} rows, e.g.\n{results.head(3).to_string(index=False)}")

fig, axes = plt.subplots(len(claims), 1, figsize=(9, 2.2 + 2.4 * len(claims)), squeeze=False)
for ax, claim in zip(axes[:, 0], claims):
    numbers = claim["numbers"]
    ax.barh(list(numbers), list(numbers.values()))
    ax.axvline(0, color="black", lw=0.8)
    ax.set_title(f"{claim['id']}: {claim['status']}", loc="left")
    ax.invert_yaxis()
axes[-1, 0].set_xlabel("latent shift of the method minus that of random masking (the claim's numbers)")
fig.suptitle(f"{EXPERIMENT} (quick preset, seed 0): the numbers behind each verdict")
save(fig, "06_experiment_claims")
