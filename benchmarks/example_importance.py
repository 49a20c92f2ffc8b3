"""Benchmark: batched label-free example importance vs per-example loops in the original code's style.

MNIST-architecture autoencoder (``mnist-ae``, d = 4, encoder gradients), n_train x n_test examples of
``digits`` at 28 px (default 1,000 x 1,000).  Ours runs in full; each reference runs on a subset and is
extrapolated linearly (its cost is a sum of identical per-example / per-pair / per-iteration steps):

- TracIn: per-example gradients (one backward each, ``create_graph=True`` as the original), each saved
  to its own file, then an N x M Python loop loading both files per pair and taking the dot product.
- LiSSA (seed-003 setting: damp 1e-3, scale 1000, depth 100, batch 200 = our damping 1.0): one
  recursion per training example, recomputing the sampled batch's loss and gradient for every
  Hessian-vector product, IHVPs and test gradients saved to files, pairwise loop.  The full run is
  hours on one core for both, so both are extrapolated from per-vector-per-iteration times measured
  interleaved (ours: one iteration on a block of vectors sharing the batch's graph; reference: one
  vector), plus ours' per-example gradients and score product measured in full.  The same sampled
  batches are used by both, and ``--lissa-iters`` iterations on a few vectors check the scores agree.
- SimplEx: one Adam fit (1,000 steps) per test row; also the original's batches of 50 rows.
- Arnoldi (beyond the study): a small MLP autoencoder on 8 x 8 digits where the exact Hessian is
  affordable; Spearman correlation of Arnoldi and LiSSA scores with exact influence, and their cost.

Run: .venv/bin/python benchmarks/example_importance.py [--n-train 1000] [--n-test 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from xairepro.data import load
from xairepro.explain import DKNN, InfluenceFunctions, SimplEx, TracIn, per_example_gradients
from xairepro.explain.influence import HessianOperator
from xairepro.explain.per_example_grads import LabelFreeLoss
from xairepro.explain.tracin import load_state_dict
from xairepro.models import build_model
from xairepro.utils import make_generator, preserved_state

ORIGINAL_DAMP, SCALE, DEPTH, HESSIAN_BATCH = 1e-3, 1000.0, 100, 200


def rec_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - x) ** 2).flatten(1).mean(1)


def clock(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def flat_grad(model: nn.Module, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    params = list(model.encoder.parameters())
    grads = torch.autograd.grad(rec_loss(model, x).mean(), params, create_graph=create_graph)
    return torch.cat([g.reshape(-1) for g in grads])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# -- references in the original style -------------------------------------------------------------
def reference_grads_to_files(model, x, folder: Path, tag: str) -> float:
    """One backward per example, each gradient written to its own file; returns seconds per example."""
    start = time.perf_counter()
    for i in range(x.shape[0]):
        torch.save(flat_grad(model, x[i:i + 1]).detach(), folder / f"{tag}{i}.pt")
    return (time.perf_counter() - start) / x.shape[0]


def reference_pairs(n_test: int, n_train: int, folder: Path, test_tag: str, train_tag: str):
    """N x M Python loop re-reading both files per pair; returns (scores, seconds per pair)."""
    scores = torch.zeros(n_test, n_train)
    start = time.perf_counter()
    for i, j in itertools.product(range(n_test), range(n_train)):
        a = torch.load(folder / f"{test_tag}{i}.pt")
        b = torch.load(folder / f"{train_tag}{j}.pt")
        scores[i, j] += torch.dot(a, b)
    return scores, (time.perf_counter() - start) / (n_test * n_train)


def reference_lissa_vector(model, g: torch.Tensor, x_h: torch.Tensor, batches) -> tuple[torch.Tensor, float]:
    """The original recursion v <- g + (1 - d) v - H v / s for one vector, batch loss recomputed each time."""
    params = list(model.encoder.parameters())
    v = g.detach().clone()
    start = time.perf_counter()
    for idx in batches:
        grads = flat_grad(model, x_h[idx], create_graph=True)
        hv = torch.cat([h.reshape(-1) for h in torch.autograd.grad(grads @ v, params)])
        v = g + (1 - ORIGINAL_DAMP) * v - hv / SCALE
    return v / SCALE, (time.perf_counter() - start) / len(batches)


def reference_simplex(h_test, h_train, steps: int = 1000) -> torch.Tensor:
    weights = torch.zeros(h_test.shape[0], h_train.shape[0], requires_grad=True)
    opt = torch.optim.Adam([weights])
    for _ in range(steps):
        opt.zero_grad()
        ((torch.softmax(weights, -1) @ h_train - h_test) ** 2).sum().backward()
        opt.step()
    return torch.softmax(weights, -1).detach()


def sampled_batches(n: int, depth: int, seed: int = 0) -> list[torch.Tensor]:
    """The index batches ``InfluenceFunctions`` draws (same generator calls)."""
    gen = make_generator(seed, "cpu")
    return [torch.randint(n, (HESSIAN_BATCH,), generator=gen) for _ in range(depth)]


# -- main comparison --------------------------------------------------------------------------------
def data_and_model(n_train: int, n_test: int, n_ckpt: int, workdir: Path):
    x_tr, _ = load("digits", "train", size=28, seed=0).tensors()
    x_te, _ = load("digits", "test", size=28, seed=0).tensors()
    pool = torch.cat([x_tr, x_te])
    if n_train + n_test > pool.shape[0]:
        print(f"note: {pool.shape[0]} digits in all; train and test overlap by {n_train + n_test - pool.shape[0]}")
    x_train, x_test = pool[:n_train], pool[-n_test:]
    from xairepro.train import AutoencoderObjective, Engine, OptimizerConfig, TrainConfig

    model = build_model("mnist-ae", latent_dim=4, seed=0)
    cfg = TrainConfig(epochs=n_ckpt, batch_size=64, seed=0, accelerator="cpu", checkpoint_every=1,
                      optimizer=OptimizerConfig(name="adam", lr=3e-3))
    result = Engine(cfg, workdir / "train").fit(model, AutoencoderObjective("identity"), (x_train, torch.zeros(n_train)))
    return model.eval(), x_train, x_test, list(result.checkpoints)


def bench_tracin(model, x_train, x_test, ckpts, args, folder: Path) -> dict:
    scores, ours = clock(lambda: TracIn(model, rec_loss, model.encoder, checkpoints=ckpts).attribute(x_test, x_train))
    ref_model = build_model("mnist-ae", latent_dim=4, seed=0).eval()
    nr, nt = args.ref_train, args.ref_test
    ref_scores, total = torch.zeros(nt, nr), 0.0
    for c, path in enumerate(ckpts):
        ref_model.load_state_dict(load_state_dict(path))
        t_grad = reference_grads_to_files(ref_model, torch.cat([x_train[:nr], x_test[:nt]]), folder, f"c{c}_")
        for i in range(nt):  # test gradients under their own names, as the original
            (folder / f"c{c}_{nr + i}.pt").rename(folder / f"c{c}_test{i}.pt")
        part, t_pair = reference_pairs(nt, nr, folder, f"c{c}_test", f"c{c}_")
        ref_scores += part
        total += (args.n_train + args.n_test) * t_grad + args.n_train * args.n_test * t_pair
    return {"method": "TracIn", "ours": ours, "ref": total, "diff": rel(scores[:nt, :nr], ref_scores),
            "note": f"{len(ckpts)} checkpoints; ref on {nt} x {nr} pairs"}


def bench_lissa(model, x_train, x_test, args, folder: Path) -> dict:
    """Per-iteration costs measured interleaved (ours: a block of vectors, reference: one vector at a
    time, same sampled batch), extrapolated to n_train vectors x depth 100 for both."""
    kw = dict(method="lissa", damping=ORIGINAL_DAMP * SCALE, scale=SCALE, hessian_batch_size=HESSIAN_BATCH,
              hessian_data=x_train, seed=0)
    (g_train, g_test), t_grads = clock(lambda: (per_example_gradients(model, rec_loss, x_train),
                                                per_example_gradients(model, rec_loss, x_test)))
    _, t_score = clock(lambda: g_test @ torch.randn_like(g_train).T)
    op = HessianOperator(LabelFreeLoss(model, rec_loss, model.encoder))
    batches = sampled_batches(x_train.shape[0], max(args.repeats, args.lissa_iters))
    ours_iter, ref_iter = [], []
    with preserved_state(model):
        for r in range(args.repeats):
            block = g_train[:args.lissa_block]
            ours_iter.append(clock(lambda: op.apply(block, x_train[batches[r]]))[1] / block.shape[0])
            ref_iter.append(reference_lissa_vector(model, g_train[r], x_train, [batches[r]])[1])
    t_vec_ours, t_vec_ref = statistics.median(ours_iter), statistics.median(ref_iter)
    ours = t_grads + t_score + args.n_train * DEPTH * t_vec_ours
    # same scores: ours vs the original-style recursion on a few vectors, lissa_iters iterations
    nv, nt = args.lissa_ref_vectors, args.ref_test
    ihvp = InfluenceFunctions(model, rec_loss, model.encoder, depth=args.lissa_iters, **kw).inverse_hvp(g_train[:nv])
    t_grad = reference_grads_to_files(model, torch.cat([x_train[:nv], x_test[:nt]]), folder, "if_")
    ref_ihvp = []
    for j in range(nv):
        v, _ = reference_lissa_vector(model, torch.load(folder / f"if_{j}.pt"), x_train, batches[:args.lissa_iters])
        torch.save(v, folder / f"ihvp{j}.pt")
        ref_ihvp.append(v)
    for i in range(nt):
        (folder / f"if_{nv + i}.pt").rename(folder / f"if_test{i}.pt")
    ref_scores, t_pair = reference_pairs(nt, nv, folder, "if_test", "ihvp")
    ref = (args.n_train + args.n_test) * t_grad + args.n_train * DEPTH * t_vec_ref + args.n_train * args.n_test * t_pair
    flop_limit = lissa_flop_limit(model, x_train, args.n_train)
    return {"method": "LiSSA (IF)", "ours": ours, "ref": ref, "diff": rel(g_test[:nt] @ ihvp.T, ref_scores),
            "note": f"both extrapolated: {1000 * t_vec_ours:.0f} vs {1000 * t_vec_ref:.0f} ms per vector and "
                    f"iteration (medians of {args.repeats}, interleaved); FLOP limit {flop_limit:.2f}x",
            "ihvp_diff": rel(ihvp, torch.stack(ref_ihvp))}


def lissa_flop_limit(model, x_train, n_vectors: int) -> float:
    """(FLOPs of one reference HVP) / (FLOPs per vector of ours): the speed-up possible at equal work."""
    params = list(model.encoder.parameters())
    x = x_train[:HESSIAN_BATCH]
    with FlopCounterMode(display=False) as primal:
        grads = flat_grad(model, x, create_graph=True)
    v = torch.randn_like(grads)
    with FlopCounterMode(display=False) as tangent:
        torch.autograd.grad(grads @ v, params, retain_graph=True)
    p, t = primal.get_total_flops(), tangent.get_total_flops()
    return (p + t) / (t + p / n_vectors)


def bench_simplex(model, x_train, x_test, args) -> list[dict]:
    scores, ours = clock(lambda: SimplEx(model.encoder).attribute(x_test, x_train))
    with torch.no_grad():
        h_train, h_test = model.encoder(x_train), model.encoder(x_test)
    rows = args.simplex_ref_rows
    ref_rows, t_rows = clock(lambda: torch.cat([reference_simplex(h_test[i:i + 1], h_train) for i in range(rows)]))
    ref_50, t_50 = clock(lambda: reference_simplex(h_test[:50], h_train))
    return [{"method": "SimplEx", "ours": ours, "ref": t_rows / rows * args.n_test,
             "diff": rel(scores[:rows], ref_rows), "note": f"ref: one fit per test row ({rows} run)"},
            {"method": "SimplEx vs 50-row batches", "ours": ours, "ref": t_50 / 50 * args.n_test,
             "diff": rel(scores[:50], ref_50), "note": "the original code's batches of 50"}]


def print_table(rows: list[dict]) -> None:
    print(f"| method | ours (s) | reference (s, extrapolated) | speed-up | rel. diff of scores | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        ref = f"{r['ref']:.1f}" if r.get("ref") else "-"
        ratio = f"{r['ref'] / r['ours']:.1f}x" if r.get("ref") else "-"
        diff = f"{r['diff']:.1e}" if r.get("diff") is not None else "-"
        print(f"| {r['method']} | {r['ours']:.1f} | {ref} | {ratio} | {diff} | {r.get('note', '')} |")


# -- Arnoldi on a small model ---------------------------------------------------------------------
class SmallAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 4))
        self.decoder = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def bench_arnoldi(args) -> None:
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    x = torch.tensor(load_digits().data / 16.0, dtype=torch.float32)
    x_train, x_test = x[:500], x[1500:1600]
    model = SmallAE()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        for i in range(0, 500, 50):
            opt.zero_grad()
            rec_loss(model, x_train[i:i + 50]).mean().backward()
            opt.step()
    model.eval()
    n_params = sum(p.numel() for p in model.encoder.parameters())
    print(f"\nArnoldi vs exact and LiSSA: 8x8-digits MLP autoencoder, {n_params} encoder parameters, "
          f"500 train x 100 test, Hessian over the 500 training examples")
    print("| damping | method | wall (s) | Hessian-vector products | Spearman vs exact |")
    print("|---:|---|---:|---|---:|")
    for damping in (1.0, 0.05):
        kw = dict(damping=damping, hessian_data=x_train, seed=0)
        exact, t_exact = clock(lambda: InfluenceFunctions(model, rec_loss, method="exact", **kw).attribute(x_test, x_train))
        runs = {
            "exact": (exact, t_exact, f"{n_params} on 500 ex."),
            "LiSSA (scale 1000, depth 100, batch 200)": (
                *clock(lambda: InfluenceFunctions(model, rec_loss, method="lissa", scale=SCALE, depth=DEPTH,
                                                  hessian_batch_size=HESSIAN_BATCH, **kw).attribute(x_test, x_train)),
                f"{DEPTH} x 500 vectors on 200 ex."),
        }
        for rank in (20, 50):
            for remainder in (True, False):
                name = f"Arnoldi (100 iters, rank {rank}{'' if remainder else ', no remainder'})"
                runs[name] = (*clock(lambda: InfluenceFunctions(model, rec_loss, method="arnoldi", arnoldi_iters=100,
                                                                arnoldi_rank=rank, arnoldi_remainder=remainder,
                                                                **kw).attribute(x_test, x_train)),
                              "100 on 500 ex.")
        for name, (scores, t, hvps) in runs.items():
            rho = spearmanr(exact.flatten().numpy(), scores.flatten().numpy())[0]
            print(f"| {damping} | {name} | {t:.2f} | {hvps} | {rho:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=4, help="TracIn checkpoints (epochs trained)")
    parser.add_argument("--lissa-iters", type=int, default=3, help="iterations of the ours-vs-reference score check")
    parser.add_argument("--lissa-block", type=int, default=64, help="vectors per timed LiSSA iteration of ours")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing repeats (LiSSA)")
    parser.add_argument("--lissa-ref-vectors", type=int, default=3)
    parser.add_argument("--ref-train", type=int, default=20, help="reference subset (training examples)")
    parser.add_argument("--ref-test", type=int, default=20, help="reference subset (test examples)")
    parser.add_argument("--simplex-ref-rows", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["tracin", "lissa", "simplex", "arnoldi"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.n_train} train x {args.n_test} test")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, x_train, x_test, ckpts = data_and_model(args.n_train, args.n_test, args.checkpoints, work)
        rows = []
        if "tracin" not in args.skip:
            rows.append(bench_tracin(model, x_train, x_test, ckpts, args, work))
        if "lissa" not in args.skip:
            row = bench_lissa(model, x_train, x_test, args, work)
            print(f"LiSSA: relative difference of the inverse-HVP vectors, ours vs reference: {row['ihvp_diff']:.1e}")
            rows.append(row)
        if "simplex" not in args.skip:
            rows += bench_simplex(model, x_train, x_test, args)
        _, t_dknn = clock(lambda: DKNN(model.encoder).attribute(x_test, x_train))
        rows.append({"method": "DkNN", "ours": t_dknn, "ref": None, "diff": None, "note": "no reference loop"})
        print_table(rows)
    if "arnoldi" not in args.skip:
        bench_arnoldi(args)


if __name__ == "__main__":
    main()
