"""Benchmark: the label-free study's settings on the real data sets (``make data`` first).

1. ``--attribution``: label-free Integrated Gradients, 50 steps, on 500 real ECG5000 test series with a
   freshly built LSTM autoencoder (embedding 64, untrained: memory and time do not depend on the
   weights).  Each case runs in its own process; its peak resident memory is reset right before the
   attribution (``/proc/self/clear_refs``) and read after it (``VmHWM``):
   - one pass (the code before the memory bound): 20 series x 50 steps = 1,000 rows, extrapolated
     linearly to 500 series (25,000 rows; the pass is one batch, memory is linear in its rows);
   - passes sized by the default budget (and ``--budget`` MiB if given), all 500 series.
2. ``--epochs``: one training epoch of the study's models on the real sets through the engine (seed's
   settings: Adam 1e-3): the LSTM autoencoder on ECG5000 (3,800 train + 200 validation; batch 300 and
   200), the MNIST autoencoder (d = 4, denoising) on Fashion-MNIST (57,000 + 3,000; batch 300) and on
   mnist-10k (7,600 + 400; batch 300).
3. ``--lissa``: LiSSA at the seed's setting (depth 100, damping 1.0, scale 1000, Hessian batch 200) for
   the MNIST autoencoder on 1,000 x 1,000 real Fashion-MNIST examples, extrapolated from iterations
   measured on ``--lissa-vectors`` training vectors (the cost is linear in vectors and in depth).

Run: .venv/bin/python benchmarks/realdata.py [--attribution] [--epochs] [--lissa] [--data-dir D] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ATTRIBUTION = """
import json, sys, time, torch
from xairepro.data import load
from xairepro.explain import LabelFreeAttribution
from xairepro.explain.memory import default_budget
from xairepro.models.lstm_ae import LSTMAutoencoder

data_dir, n, max_rows, budget, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
x, _ = load("ecg5000", "test", data_dir).tensors()
x = x[:n]
encoder = LSTMAutoencoder(embedding_dim=64).encoder.eval()
lf = LabelFreeAttribution(encoder, "integrated_gradients")
lf.attribute(x[:2], n_steps=2)

def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) * 1024

kwargs = {"max_rows": int(max_rows)} if max_rows != "auto" else {}
if budget != "default":
    kwargs["memory_budget"] = int(budget)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before = status("VmRSS:")
start = time.perf_counter()
out = lf.attribute(x, n_steps=50, batch_size=500, **kwargs)
seconds = time.perf_counter() - start
print(json.dumps({"n": n, "seconds": seconds, "increase": status("VmHWM:") - before,
                  "budget": int(budget) if budget != "default" else default_budget(),
                  "finite": bool(torch.isfinite(out).all())}))
"""


def _attribution_case(data_dir: str, n: int, max_rows: str, budget: str, threads: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(_ATTRIBUTION)
    done = subprocess.run([sys.executable, fh.name, data_dir, str(n), max_rows, budget, str(threads)],
                          capture_output=True, text=True, check=False)
    Path(fh.name).unlink()
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def attribution(data_dir: str, threads: int, budget_mib: int | None) -> None:
    mib = 2**20
    print("| case | series | rows per pass | peak RSS added | wall (s) |")
    print("|---|---:|---|---:|---:|")
    one = _attribution_case(data_dir, 20, str(10**9), "default", threads)
    per_series = one["increase"] / 20
    print(f"| one pass (before) | 20 | 1,000 | {one['increase'] / mib:,.0f} MiB | {one['seconds']:.1f} |")
    print(f"| one pass, extrapolated | 500 | 25,000 | {per_series * 500 / mib:,.0f} MiB | "
          f"{one['seconds'] * 25:.0f} |")
    budgets = ["default"] + ([str(budget_mib * mib)] if budget_mib else [])
    for budget in budgets:
        r = _attribution_case(data_dir, 500, "auto", budget, threads)
        print(f"| bounded, budget {r['budget'] / mib:,.0f} MiB | 500 | from the budget | "
              f"{r['increase'] / mib:,.0f} MiB | {r['seconds']:.1f} |")


def _epoch_seconds(setup_values: dict, data_dir: str) -> tuple[float, int]:
    import torch  # noqa: F401 - imported before timing

    from xairepro.data import load
    from xairepro.experiments.labelfree_study.common import ModelSetup
    from xairepro.experiments.labelfree_study.trained_models import run_config
    from xairepro.training import train_run

    setup = ModelSetup(**{**setup_values, "epochs": 1, "patience": 0, "checkpoint_every": 0})
    n_train = len(load(setup.data, "train", data_dir, **setup.data_options))
    with tempfile.TemporaryDirectory() as out:
        cfg = run_config(setup, 0)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)), out_dir=out)
        start = time.perf_counter()
        train_run(cfg, progress=False)
        return time.perf_counter() - start, n_train


def epochs(data_dir: str) -> None:
    from xairepro.experiments.labelfree_study.common import PAPER_ECG_AE, PAPER_MNIST_DAE

    cases = [("LSTM AE, ECG5000", {**PAPER_ECG_AE, "batch_size": 300}),
             ("LSTM AE, ECG5000", {**PAPER_ECG_AE, "batch_size": 200}),
             ("MNIST AE (d=4, denoising), Fashion-MNIST",
              {**PAPER_MNIST_DAE, "data": "fashion-mnist", "batch_size": 300}),
             ("MNIST AE (d=4, denoising), mnist-10k", {**PAPER_MNIST_DAE, "data": "mnist-10k", "batch_size": 300})]
    print("| model, data | train examples | batch | one epoch incl. validation (s) |")
    print("|---|---:|---:|---:|")
    for label, values in cases:
        seconds, n_train = _epoch_seconds(values, data_dir)
        print(f"| {label} | {n_train:,} | {values['batch_size']} | {seconds:.1f} |")


def lissa(data_dir: str, n_vectors: int) -> None:
    import torch

    from xairepro.data import load
    from xairepro.explain import InfluenceFunctions, per_example_gradients
    from xairepro.models import build_model

    torch.manual_seed(0)
    model = build_model("mnist-ae", latent_dim=4).eval()
    x_train, _ = load("fashion-mnist", "train", data_dir).tensors()
    x_test, _ = load("fashion-mnist", "test", data_dir).tensors()
    x_train, x_test = x_train[:1000], x_test[:1000]

    def loss_fn(m, x):
        return ((m(x) - x) ** 2).flatten(1).mean(1)

    start = time.perf_counter()
    g_train = per_example_gradients(model, loss_fn, x_train, params=model.encoder)
    per_example_gradients(model, loss_fn, x_test, params=model.encoder)
    grads = time.perf_counter() - start
    times = {}
    for depth in (1, 3):
        explainer = InfluenceFunctions(model, loss_fn, model.encoder, method="lissa", damping=1.0, scale=1000.0,
                                       depth=depth, hessian_batch_size=200, hessian_data=x_train, seed=0)
        start = time.perf_counter()
        explainer.inverse_hvp(g_train[:n_vectors])
        times[depth] = time.perf_counter() - start
    per_iteration = (times[3] - times[1]) / 2 / n_vectors
    total = grads + per_iteration * 1000 * 100
    print(f"LiSSA, mnist-ae d=4, Fashion-MNIST 1,000 x 1,000, depth 100, Hessian batch 200: per-example "
          f"gradients {grads:.1f} s; {per_iteration * 1000:.1f} ms per vector and iteration "
          f"(depth 1 vs 3 on {n_vectors} vectors: {times[1]:.1f} / {times[3]:.1f} s); "
          f"full run about {total / 60:.0f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attribution", action="store_true")
    parser.add_argument("--epochs", action="store_true")
    parser.add_argument("--lissa", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=int, default=None, help="also run with this budget (MiB)")
    parser.add_argument("--lissa-vectors", type=int, default=50)
    args = parser.parse_args()
    import torch

    from xairepro.data import data_root

    from xairepro.data.fetch import data_status

    torch.set_num_threads(args.threads)
    data_dir = str(data_root(args.data_dir))
    missing = [s.name for s in data_status(data_dir) if s.name in ("fashion-mnist", "ecg5000", "mnist-10k")
               and s.state != "present"]
    if missing:  # `make benchmarks` runs every script: say what is missing instead of failing
        print(f"skipped: {', '.join(missing)} not in {data_dir}; run `make data` (or pass --data-dir)")
        return
    if not (args.attribution or args.epochs or args.lissa):
        args.attribution = args.epochs = args.lissa = True
    if args.attribution:
        attribution(data_dir, args.threads, args.budget)
    if args.epochs:
        epochs(data_dir)
    if args.lissa:
        lissa(data_dir, args.lissa_vectors)


if __name__ == "__main__":
    main()
