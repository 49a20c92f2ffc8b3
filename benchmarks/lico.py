"""Benchmark: the cost of LICO's training step and of the batched Sinkhorn.

(a) One SGD step (forward, backward, update) on WRN-28-2, batch 64, 32 px, K = 10 (CIFAR-10 names):
    LICO (``LicoObjective.for_model``, as ``xairepro train --set method=lico``: paper mode, minilm text
    encoder, MM + OT, 100 Sinkhorn iterations) vs plain cross-entropy, the same initial weights;
    target LICO / CE <= 1.3. The text branch and the Sinkhorn are also timed alone.
(b) ``sinkhorn`` on B = 64 problems of 128 x 13 (the WRN-28-2 OT shape), eps = 0.1, 100 iterations,
    batched in one call vs POT's ``ot.sinkhorn(..., method="sinkhorn_log")`` solving them one by one
    with the same fixed iteration count; the plans must agree (max |difference| printed); target >= 10x.

Run: .venv/bin/python benchmarks/lico.py [--batch 64] [--repeats 5] [--threads 1]
Times are medians of interleaved repeats (ours, reference, ours, ...) in one process.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import ot
import torch
import torch.nn.functional as F

from xairepro.lico import LicoConfig, LicoObjective, image_tokens, load_text_encoder, sinkhorn
from xairepro.lico.sinkhorn import squared_distances
from xairepro.models import build_model
from xairepro.train import ClassifierObjective

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turns so that machine load hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def sgd_step(model: torch.nn.Module, objective, batch) -> Callable[[], None]:
    params = [p for m in (model, *objective.modules()) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        loss, _ = objective.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_step(batch_size: int, repeats: int) -> list[tuple[str, float, str]]:
    load_text_encoder("minilm")
    gen = torch.Generator().manual_seed(0)
    batch = (torch.rand(batch_size, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch_size,), generator=gen))
    plain = build_model("wrn-28-2", num_classes=10, seed=0)
    model = build_model("wrn-28-2", num_classes=10, seed=0)
    objective = LicoObjective.for_model(model, CIFAR10, LicoConfig(), input_shape=(3, 32, 32))  # = method=lico
    alignment = objective.alignment
    plain.train()
    model.train()

    def text_branch() -> None:  # forward + backward of the prompt learner alone
        alignment.text_tokens().sum().backward()

    tokens = image_tokens(model.forward_features(batch[0]).detach())
    text = alignment.text_tokens().detach()[batch[1]]
    cost = squared_distances(tokens, text)
    t = interleaved({
        "ce": sgd_step(plain, ClassifierObjective(), batch),
        "lico": sgd_step(model, objective, batch),
        "text": text_branch,
        "sinkhorn": lambda: sinkhorn(cost, 0.1, 100),
    }, repeats)
    return [
        ("(a) CE step, WRN-28-2", t["ce"], ""),
        ("(a) LICO step (MM + OT, paper, minilm)", t["lico"], f"LICO / CE = {t['lico'] / t['ce']:.2f}"),
        ("    of which text branch fwd + bwd", t["text"], f"{t['text'] / t['ce']:.1%} of a CE step"),
        ("    of which Sinkhorn (64 x 128 x 13)", t["sinkhorn"], f"{t['sinkhorn'] / t['ce']:.1%} of a CE step"),
    ]


def bench_sinkhorn(batch_size: int, repeats: int) -> list[tuple[str, float, str]]:
    gen = torch.Generator().manual_seed(1)
    x = F.normalize(torch.randn(batch_size, 128, 64, generator=gen, dtype=torch.float64), dim=-1)
    y = F.normalize(torch.randn(batch_size, 13, 64, generator=gen, dtype=torch.float64), dim=-1)
    cost64 = squared_distances(x, y)
    cost32 = cost64.float()
    costs_np = [c.numpy() for c in cost64]
    a, b = np.full(128, 1 / 128), np.full(13, 1 / 13)

    def pot_one_by_one() -> list[np.ndarray]:
        return [ot.sinkhorn(a, b, c, 0.1, method="sinkhorn_log", numItermax=100, stopThr=0.0, warn=False)
                for c in costs_np]

    t = interleaved({
        "ours64": lambda: sinkhorn(cost64, 0.1, 100),
        "ours32": lambda: sinkhorn(cost32, 0.1, 100),
        "pot": pot_one_by_one,
    }, repeats)
    ref = np.stack(pot_one_by_one())
    diff64 = np.abs(sinkhorn(cost64, 0.1, 100).numpy() - ref).max()
    diff32 = np.abs(sinkhorn(cost32, 0.1, 100).double().numpy() - ref).max()
    return [
        (f"(b) POT sinkhorn_log, {batch_size} problems one by one (float64)", t["pot"], ""),
        ("(b) ours batched, float64", t["ours64"], f"{t['pot'] / t['ours64']:.1f}x faster, max |dP| {diff64:.1e}"),
        ("(b) ours batched, float32", t["ours32"], f"{t['pot'] / t['ours32']:.1f}x faster, max |dP| {diff32:.1e}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = bench_step(args.batch, args.repeats) + bench_sinkhorn(args.batch, args.repeats)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), batch {args.batch}, median of {args.repeats} interleaved repeats")
    print(f"| {'what':<62} | {'seconds':>8} | ratio |")
    print(f"|{'-' * 64}|{'-' * 10}|-------|")
    for name, seconds, note in rows:
        print(f"| {name:<62} | {seconds:8.4f} | {note} |")


if __name__ == "__main__":
    main()
