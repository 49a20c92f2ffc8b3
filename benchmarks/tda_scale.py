"""Benchmark: training-data attribution at scale (EK-FAC, projected-gradient store) on the MNIST autoencoder.

The label-free setting of the study: ``mnist-ae`` (d = 4), reconstruction MSE, gradients w.r.t. the
encoder's Linear/Conv2d layers (43,396 parameters; BatchNorm left out, as EK-FAC tracks).  There is no
MNIST here, so the "60,000 x 28 x 28" set is the bundled digits at 28 px resampled with replacement,
each copy shifted by up to 2 px and given N(0, 0.05) noise (same shape and value range; timing does not
depend on the content).  The model is trained a few epochs on the digits first.

1. ``ekfac``: EK-FAC influence of n_train x n_test examples (default 60,000 x 10,000) written block by block
   to a ``.npy`` score file: factor fitting (two passes) + scoring, wall time and peak resident memory;
   plus, on a subset, the effect of ``query_rank`` (Spearman with the dense EK-FAC scores).
2. ``lissa``: EK-FAC vs LiSSA in the study's 1,000 x 1,000 setting (seed-003 LiSSA: damping 1.0, scale 1000,
   depth 100, batch 200): time (LiSSA extrapolated from per-vector-per-iteration time measured on the
   same run), Spearman of the scores on a subset of training vectors, and the LDS of each against
   ``--lds-subsets`` autoencoders retrained on seeded halves of the 1,000 training examples.
3. ``store``: projected-gradient store (sparse Rademacher, k = 1024) vs plain per-example gradients at
   60,000 examples: wall time and peak memory (plain is run in full only when twice N x P x 4 bytes fit
   comfortably in the free memory -- its per-batch parts are concatenated at the end -- otherwise on
   ``--plain-n`` examples and scaled linearly; N x P x 4 bytes is printed beside it).

Run: .venv/bin/python benchmarks/tda_scale.py [--parts ekfac lissa store] [--threads 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from xairepro.data import load
from xairepro.explain import GradientStore, InfluenceFunctions, per_example_gradients
from xairepro.explain.layer_capture import tracked_layers
from xairepro.explain.per_example_grads import resolve_params
from xairepro.metrics import datamodel_subsets, linear_datamodeling_score
from xairepro.models import build_model
from xairepro.train import AutoencoderObjective, Engine, OptimizerConfig, TrainConfig
from xairepro.utils.resources import PeakMemory, resident_bytes

MB = 2**20


def rec_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - x) ** 2).flatten(1).mean(1)


def resampled_digits(n: int, seed: int = 0) -> torch.Tensor:
    """n x 1 x 28 x 28 images: digits drawn with replacement, shifted by up to 2 px, plus N(0, 0.05) noise."""
    x, _ = load("digits", "train", size=28, seed=0).tensors()
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 1, 28, 28)
    for start in range(0, n, 4096):
        stop = min(start + 4096, n)
        idx = torch.randint(x.shape[0], (stop - start,), generator=gen)
        shifts = torch.randint(-2, 3, (2,), generator=gen).tolist()
        block = torch.roll(x[idx], shifts=shifts, dims=(2, 3))
        out[start:stop] = (block + 0.05 * torch.randn(block.shape, generator=gen)).clamp(0, 1)
    return out


def train_ae(x: torch.Tensor, epochs: int, device: str, seed: int = 0) -> torch.nn.Module:
    model = build_model("mnist-ae", latent_dim=4, seed=seed)
    cfg = TrainConfig(epochs=epochs, batch_size=64, seed=seed, accelerator="cuda" if device == "cuda" else "cpu",
                      optimizer=OptimizerConfig(name="adam", lr=3e-3))
    Engine(cfg).fit(model, AutoencoderObjective("identity"), (x, torch.zeros(x.shape[0])))
    return model.to(device).eval()


def encoder_params(model: torch.nn.Module) -> list[str]:
    layers, _ = tracked_layers(model, resolve_params(model, model.encoder))
    return [p for layer in layers for p in layer.param_names]


# -- 1. EK-FAC at 60,000 x 10,000 ------------------------------------------------------------------
def bench_ekfac(args, model, device: str) -> None:
    names = encoder_params(model)
    x_train = resampled_digits(args.n_train, seed=1).to(device)
    x_test = resampled_digits(args.n_test, seed=2).to(device)
    print(f"\n## EK-FAC, {args.n_train} train x {args.n_test} test, label-free, {len(names)} tensors "
          f"({sum(model.get_parameter(n).numel() for n in names)} parameters), query_rank {args.query_rank}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        inf = InfluenceFunctions(model, rec_loss, names, method="ekfac", damping=args.damping,
                                 query_rank=args.query_rank, batch_size=args.batch_size, show_progress=args.progress)
        base = resident_bytes()
        with PeakMemory(device) as fit:
            inf.fit_factors(x_train)
        with PeakMemory(device) as score:
            path = inf.attribute_to_file(x_test, x_train, Path(tmp) / "scores.npy", train_block=args.train_block)
        size = path.stat().st_size
        finite = bool(np.isfinite(np.load(path, mmap_mode="r")[:100]).all())
        path.unlink()
        factors = inf.save_factors(Path(tmp) / "factors.pt")
        print("| step | wall (s) | CPU (s) | peak memory above start (MiB) |")
        print("|---|---:|---:|---:|")
        print(f"| fit factors (2 passes over {args.n_train}) | {fit.seconds:.1f} | {fit.cpu_seconds:.1f} | "
              f"{fit.peak_bytes / MB:.0f} |")
        print(f"| scores to file ({args.n_test} x {args.n_train}, {size / MB:.0f} MiB on disk) | {score.seconds:.1f} | "
              f"{score.cpu_seconds:.1f} | {score.peak_bytes / MB:.0f} |")
        print(f"| total | {fit.seconds + score.seconds:.1f} | {fit.cpu_seconds + score.cpu_seconds:.1f} | "
              f"{max(fit.peak_bytes, score.peak_bytes) / MB:.0f} |")
        print(f"process resident memory before: {base / MB:.0f} MiB; scores finite: {finite}")
        bench_query_rank(args, model, names, factors, x_train, x_test)


def bench_query_rank(args, model, names, factors: Path, x_train, x_test) -> None:
    """query_rank vs dense EK-FAC on a subset, with the same fitted factors (loaded from ``factors``)."""
    sub_train, sub_test = x_train[:args.rank_check_train], x_test[:args.rank_check_test]
    runs = {}
    for rank in [None, *args.ranks]:
        inf = InfluenceFunctions(model, rec_loss, names, method="ekfac", damping=args.damping, query_rank=rank)
        inf.load_factors(factors)
        t0 = time.perf_counter()
        runs[rank] = (inf.attribute(sub_test, sub_train).flatten().cpu(), time.perf_counter() - t0)
    print(f"\nquery_rank on {sub_test.shape[0]} x {sub_train.shape[0]} (same factors)")
    print("| query_rank | wall (s) | Spearman with dense EK-FAC |")
    print("|---:|---:|---:|")
    for rank, (s, t) in runs.items():
        print(f"| {rank or 'dense'} | {t:.1f} | {spearmanr(runs[None][0], s)[0]:.4f} |")


# -- 2. EK-FAC vs LiSSA, 1,000 x 1,000 ---------------------------------------------------------------
def bench_lissa(args, device: str) -> None:
    x, _ = load("digits", "train", size=28, seed=0).tensors()
    xt, _ = load("digits", "test", size=28, seed=0).tensors()
    pool = torch.cat([x, xt])
    x_train, x_test = pool[:1000].to(device), pool[-1000:].to(device)
    model = train_ae(x_train.cpu(), args.epochs, device)
    names = encoder_params(model)
    damping = 1.0  # the study's LiSSA (damp 1e-3 x scale 1000)
    print(f"\n## EK-FAC vs LiSSA, 1,000 x 1,000 (digits at 28 px; train and test overlap by "
          f"{max(0, 2000 - pool.shape[0])}), damping {damping} (the study's LiSSA setting)")
    with PeakMemory(device) as ek:
        ekfac = InfluenceFunctions(model, rec_loss, names, method="ekfac", damping=damping).attribute(x_test, x_train)
    lissa = InfluenceFunctions(model, rec_loss, names, method="lissa", damping=damping, scale=1000.0, depth=100,
                               hessian_batch_size=200, hessian_data=x_train, seed=0)
    n_vec = args.lissa_vectors
    g_test = per_example_gradients(model, rec_loss, x_test, params=names)
    with PeakMemory(device) as li:
        g_sub = per_example_gradients(model, rec_loss, x_train[:n_vec], params=names)
        ihvp = lissa.inverse_hvp(g_sub, x_train)
    lissa_scores = g_test @ ihvp.T                          # (1000 test, n_vec train)
    scale = 1000 / n_vec                                    # all 1,000 training vectors (linear in vectors)
    exact = InfluenceFunctions(model, rec_loss, names, method="exact", curvature="fisher",
                               damping=damping).attribute(x_test, x_train[:n_vec])
    rho = lambda a, b: spearmanr(a.flatten().cpu(), b.flatten().cpu())[0]  # noqa: E731
    sub = ekfac[:, :n_vec]
    print("| method | wall (s) | CPU (s) | Spearman with LiSSA | Spearman with exact (Fisher) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| LiSSA (depth 100, batch 200; x{scale:.0f} from {n_vec} vectors) | {li.seconds * scale:.0f} | "
          f"{li.cpu_seconds * scale:.0f} | 1 | {rho(lissa_scores, exact):.3f} |")
    print(f"| EK-FAC (factors included) | {ek.seconds:.1f} | {ek.cpu_seconds:.1f} | {rho(sub, lissa_scores):.3f} | "
          f"{rho(sub, exact):.3f} |")
    print(f"ratio LiSSA / EK-FAC: wall {li.seconds * scale / ek.seconds:.0f}x, CPU "
          f"{li.cpu_seconds * scale / ek.cpu_seconds:.0f}x (Spearman on 1,000 test x {n_vec} train)")
    # LDS: 100 test examples; LiSSA iterated on their gradients (the same quantity, (H + λI)^-1 g_test · g_train)
    n_lds = args.lds_test
    masks = datamodel_subsets(1000, args.lds_subsets, 0.5, seed=0)
    outputs = []
    for m in range(args.lds_subsets):
        retrained = train_ae(x_train[masks[m].to(device)].cpu(), args.epochs, device)
        with torch.no_grad():
            outputs.append(-rec_loss(retrained, x_test[:n_lds]).double().cpu())
    outputs = torch.stack(outputs)
    g_all = per_example_gradients(model, rec_loss, x_train, params=names)
    lissa_test = lissa.inverse_hvp(g_test[:n_lds], x_train) @ g_all.T
    dot = g_test[:n_lds] @ g_all.T
    small = {name: InfluenceFunctions(model, rec_loss, names, damping=1e-3, **kw).attribute(x_test[:n_lds], x_train)
             for name, kw in (("EK-FAC, damping 1e-3", {"method": "ekfac"}),
                              ("exact (Fisher), damping 1e-3", {"method": "exact", "curvature": "fisher"}))}
    print(f"\nLDS on {n_lds} test examples, {args.lds_subsets} autoencoders retrained on halves of the 1,000 "
          "(output: minus the reconstruction loss)")
    print("| method | LDS |")
    print("|---|---:|")
    rows = {"EK-FAC, damping 1.0": ekfac[:n_lds], "LiSSA, damping 1.0 (on the test gradients)": lissa_test,
            **small, "gradient dot product": dot}
    for name, s in rows.items():
        print(f"| {name} | {linear_datamodeling_score(s.cpu(), masks, outputs).item():.3f} |")


# -- 3. projected store vs plain per-example gradients ----------------------------------------------
def bench_store(args, model, device: str) -> None:
    names = encoder_params(model)
    n_params = sum(model.get_parameter(n).numel() for n in names)
    x = resampled_digits(args.n_train, seed=1).to(device)
    print(f"\n## Projected store vs plain per-example gradients, {args.n_train} examples, P = {n_params}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        with PeakMemory(device) as store_m:
            store = GradientStore.build(Path(tmp) / "store", model, rec_loss, x, names, dim=args.dim,
                                        projection="rademacher", batch_size=args.batch_size)
        size = store.path.stat().st_size
    with open("/proc/meminfo") as fh:
        avail = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable"))
    need = args.n_train * n_params * 4
    # the plain (N, P) result is concatenated from per-batch parts: about twice N x P x 4 bytes at the end
    n_plain = args.n_train if 2.2 * need < 0.6 * avail and not args.plain_n else (args.plain_n or 10000)
    with PeakMemory(device) as plain_m:
        g = per_example_gradients(model, rec_loss, x[:n_plain], params=names, batch_size=args.batch_size)
    del g
    scale = args.n_train / n_plain
    print("| | wall (s) | CPU (s) | peak memory above start (MiB) | on disk (MiB) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| store (sparse Rademacher, k = {args.dim}) | {store_m.seconds:.1f} | {store_m.cpu_seconds:.1f} | "
          f"{store_m.peak_bytes / MB:.0f} | {size / MB:.0f} |")
    note = "" if n_plain == args.n_train else f" (measured on {n_plain}, x{scale:.1f})"
    print(f"| plain per-example gradients{note} | {plain_m.seconds * scale:.1f} | {plain_m.cpu_seconds * scale:.1f} | "
          f"{plain_m.peak_bytes * scale / MB:.0f} (N x P x 4 = {need / MB:.0f}) | - |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="*", default=["ekfac", "lissa", "store"], choices=["ekfac", "lissa", "store"])
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--query-rank", type=int, default=16)
    parser.add_argument("--ranks", type=int, nargs="*", default=[4, 16, 32])
    parser.add_argument("--rank-check-train", type=int, default=2000)
    parser.add_argument("--rank-check-test", type=int, default=200)
    parser.add_argument("--damping", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-block", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of the autoencoders")
    parser.add_argument("--lissa-vectors", type=int, default=20, help="training vectors LiSSA is run on")
    parser.add_argument("--lds-subsets", type=int, default=20)
    parser.add_argument("--lds-test", type=int, default=100)
    parser.add_argument("--dim", type=int, default=1024, help="projection dimension of the store")
    parser.add_argument("--plain-n", type=int, default=0, help="examples for plain gradients (0: all if they fit)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workdir", default=None, help="where the score file and store go (default: /tmp)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    card = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"torch {torch.__version__}, {card}")
    model = None
    if "ekfac" in args.parts or "store" in args.parts:
        x, _ = load("digits", "train", size=28, seed=0).tensors()
        model = train_ae(x, args.epochs, device)
    if "ekfac" in args.parts:
        bench_ekfac(args, model, device)
    if "lissa" in args.parts:
        bench_lissa(args, device)
    if "store" in args.parts:
        bench_store(args, model, device)


if __name__ == "__main__":
    main()
