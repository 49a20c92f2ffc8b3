"""Throughput of the training engine vs a plain PyTorch loop: WRN-28-2, batch 64, 32x32 random images.

Both train the same model (same initial weights) with the same SGD optimiser on the same batches
(in-memory tensors, shuffled), interleaved in one process, alternating which goes first.  The plain
loop is the minimal correct loop: index a batch, forward, cross-entropy, zero_grad, backward, step.
The engine adds lightning-fabric, on-device metric sums (accuracy, loss), the lr schedule hook and
its per-epoch bookkeeping.

    .venv/bin/python benchmarks/train_engine.py [--steps 8] [--reps 5] [--batch 64] [--threads 1] [--device cpu]

On a shared machine, wall time includes waiting for a core; CPU time of this (single-threaded) process
measures the work each loop does, so the overhead is quoted on both.  A second table times a tiny MLP (64 -> 64 -> 10) for many steps, where a step costs well under a
millisecond, to show the engine's fixed per-step cost in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from xairepro.models import build_model
from xairepro.train import ClassifierObjective, Engine, OptimizerConfig, TrainConfig

LR, MOMENTUM, WD = 0.03, 0.9, 1e-4


def make_data(steps: int, batch: int, device: str, shape: tuple[int, ...] = (3, 32, 32)
              ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(steps * batch, *shape, generator=g)
    y = torch.randint(0, 10, (steps * batch,), generator=g)
    return x.to(device), y.to(device)


def wrn(device: str) -> torch.nn.Module:
    return build_model("wrn-28-2", num_classes=10, seed=0).to(device)


def mlp(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    return net.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop(make, x: torch.Tensor, y: torch.Tensor, batch: int, device: str) -> float:
    model = make(device)
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    model.train()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).to(device)
    for b in range(len(x) // batch):
        idx = perm[b * batch:(b + 1) * batch]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def engine_loop(make, x: torch.Tensor, y: torch.Tensor, batch: int, device: str) -> float:
    model = make(device)
    cfg = TrainConfig(epochs=1, batch_size=batch, accelerator="cuda" if device.startswith("cuda") else "cpu",
                      optimizer=OptimizerConfig(name="sgd", lr=LR, momentum=MOMENTUM, weight_decay=WD))
    engine = Engine(cfg)
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    engine.fit(model, ClassifierObjective(), (x, y))
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def compare(make, x: torch.Tensor, y: torch.Tensor, batch: int, reps: int, device: str
            ) -> dict[str, dict[str, list[float]]]:
    """Interleaved runs of both loops (alternating which goes first); wall and CPU seconds of each run."""
    warm = (x[: 2 * batch], y[: 2 * batch])
    plain_loop(make, *warm, batch, device)  # warm-up: allocator, kernels, imports
    engine_loop(make, *warm, batch, device)
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in ("plain", "engine")}
    for rep in range(reps):
        for name in (("plain", "engine") if rep % 2 == 0 else ("engine", "plain")):
            wall, cpu = (plain_loop if name == "plain" else engine_loop)(make, x, y, batch, device)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    return times


def table(title: str, times: dict[str, dict[str, list[float]]], images: int, steps: int) -> None:
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    print(title)
    print()
    print("| loop | wall s / run (median) | CPU s / run (median) | images / CPU s | CPU ms / step | wall runs (s) |")
    print("|---|---:|---:|---:|---:|---|")
    for name in ("plain", "engine"):
        runs = ", ".join(f"{t:.3f}" for t in times[name]["wall"])
        print(f"| {name} | {med[name]['wall']:.3f} | {med[name]['cpu']:.3f} | {images / med[name]['cpu']:.1f} "
              f"| {1000 * med[name]['cpu'] / steps:.2f} | {runs} |")
    ratios = {k: [e / p for e, p in zip(times["engine"][k], times["plain"][k])] for k in ("wall", "cpu")}
    print()
    for kind in ("cpu", "wall"):
        per_rep = ", ".join(f"{100 * (r - 1):+.1f}%" for r in ratios[kind])
        extra = (med["engine"][kind] - med["plain"][kind]) / steps
        print(f"engine overhead ({kind} time): median of per-repetition ratios "
              f"{100 * (statistics.median(ratios[kind]) - 1):+.1f}% (per repetition: {per_rep}); "
              f"difference of medians {1e6 * extra:+.0f} us / step")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1 is steadier on a busy machine)")
    parser.add_argument("--mlp-steps", type=int, default=400)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header = (f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), "
              f"batch {args.batch}")
    x, y = make_data(args.steps, args.batch, args.device)
    times = compare(wrn, x, y, args.batch, args.reps, args.device)
    table(f"WRN-28-2, 32x32, {args.steps} steps x {args.reps} interleaved repetitions, {header}",
          times, args.steps * args.batch, args.steps)
    x, y = make_data(args.mlp_steps, args.batch, args.device, shape=(64,))
    times = compare(mlp, x, y, args.batch, args.reps, args.device)
    table(f"Tiny MLP 64-64-10 (fixed per-step cost), {args.mlp_steps} steps x {args.reps} repetitions, {header}",
          times, args.mlp_steps * args.batch, args.mlp_steps)


if __name__ == "__main__":
    main()
