"""Benchmark: batched insertion/deletion and RISE vs a per-image reference loop and plain inference.

    python benchmarks/saliency.py [--n-images 64] [--rise-images 8] [--rise-masks 500] [--threads 0]
                                  [--models wrn-28-2,small-cnn] [--device cpu|cuda]

(a) ours (all images x steps as batched forwards) vs a straightforward per-image loop with the same
    protocol (Petsiuk: one image, one step per forward); scores must agree to 1e-5.
(b) insertion+deletion throughput in image-steps/s vs plain batched inference images/s (same model,
    same batch size); image-steps = curve points = 2 (n_steps + 1) per image.
(c) RISE masked-forward throughput (images x masks / s) vs plain batched inference images/s.
Plain inference is timed just before and just after ours; the faster of the two is the reference.
Prints one table; ratios are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from xairepro.explain import RISE
from xairepro.imaging import auto_batch_size, batched_forward, gaussian_blur
from xairepro.metrics import InsertionDeletionProtocol, insertion_deletion
from xairepro.models import build_model


def reference_insertion_deletion(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor,
                                 protocol: InsertionDeletionProtocol) -> tuple[torch.Tensor, torch.Tensor]:
    """Petsiuk-style single-image evaluation: for each image, each step is its own forward."""
    ins, dels = [], []
    with torch.no_grad():
        for i in range(x.shape[0]):
            img = x[i:i + 1]
            _, c, h, w = img.shape
            hw = h * w
            cls = int(model(img).argmax())
            order = torch.argsort(saliency[i].flatten(), descending=True, stable=True)
            step = protocol.step_pixels(hw)
            n = math.ceil(hw / step)
            blurred = gaussian_blur(img, protocol.blur_kernel, protocol.blur_sigma)
            curves = []
            for start, finish in ((img, torch.zeros_like(img)), (blurred, img)):
                cur = start.clone().view(1, c, hw)
                fin = finish.view(1, c, hw)
                scores = []
                for k in range(n + 1):
                    if k > 0:
                        idx = order[(k - 1) * step:k * step]
                        cur[:, :, idx] = fin[:, :, idx]
                    scores.append(torch.softmax(model(cur.view(1, c, h, w)), 1)[0, cls])
                s = torch.stack(scores)
                curves.append((s.sum() - (s[0] + s[-1]) / 2) / n)
            dels.append(curves[0])
            ins.append(curves[1])
    return torch.stack(ins), torch.stack(dels)


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> tuple[float, object]:
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def plain_inference(model: nn.Module, x: torch.Tensor, batch_size: int, total: int) -> tuple[Callable[[], None], int]:
    """Forward ``total`` images (rounded up to whole batches of ``batch_size``, tiled from x); -> (run, n).

    Uses the library's ``batched_forward`` (the same memory layout as ours), so (b) and (c) measure
    everything ours does beyond the forwards themselves.
    """
    batch = x.repeat(math.ceil(batch_size / x.shape[0]), 1, 1, 1)[:batch_size]
    reps = math.ceil(total / batch_size)

    def run() -> None:
        with torch.inference_mode():
            for _ in range(reps):
                batched_forward(model, batch)
    return run, reps * batch_size


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, object]]:
    """Interleaved repeats (plain, ours, reference, ...); each ratio is the median of per-repeat ratios."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=10).to(device).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(args.n_images, 3, 32, 32, generator=gen).to(device)
    sal = torch.rand(args.n_images, 32, 32, generator=gen).to(device)
    proto = InsertionDeletionProtocol.petsiuk()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    plain_inference(model, x, args.batch_size, 1)[0]()                 # warm-up

    n_points = proto.replaced_counts(32 * 32).numel()
    image_steps = args.n_images * 2 * n_points
    plain_run, n_plain = plain_inference(model, x, args.batch_size, image_steps)
    rise = RISE(model, n_masks=args.rise_masks, cell_size=8, p1=0.1, batch_size=args.batch_size, seed=0)
    rise.masks_for((32, 32), device)                                   # masks drawn once, outside the timing
    xr = x[:args.rise_images]
    rise_forwards = xr.shape[0] * args.rise_masks
    plain_rise_run, n_plain_rise = plain_inference(model, x, args.batch_size, rise_forwards)

    t = {k: [] for k in ("plain", "ours", "ref", "plain_rise", "rise")}
    diff = 0.0
    for _ in range(args.repeats):
        t["plain"].append(timed(plain_run, sync)[0] / n_plain)                      # s per image
        dt, ours = timed(lambda: insertion_deletion(model, x, sal, proto, batch_size=args.batch_size), sync)
        t["ours"].append(dt / image_steps)                                           # s per image-step
        dt, ref = timed(lambda: reference_insertion_deletion(model, x, sal, proto), sync)
        t["ref"].append(dt / image_steps)
        diff = max(diff, float((ours.insertion - ref[0]).abs().max()), float((ours.deletion - ref[1]).abs().max()))
        t["plain_rise"].append(timed(plain_rise_run, sync)[0] / n_plain_rise)
        t["rise"].append(timed(lambda: rise(xr), sync)[0] / rise_forwards)
    med = statistics.median

    def ratio(num: str, den: str) -> float:
        return med(a / b for a, b in zip(t[num], t[den]))

    reps = f"median of {args.repeats} interleaved repeats"
    return [
        {"model": name, "measure": "(a) ins+del: ours vs per-image loop", "ours": f"{med(t['ours']) * image_steps:.2f} s",
         "reference": f"{med(t['ref']) * image_steps:.2f} s", "ratio": ratio("ref", "ours"),
         "note": f"max |score diff| {diff:.1e}; {reps}"},
        {"model": name, "measure": "(b) ins+del image-steps/s vs plain inference img/s",
         "ours": f"{1 / med(t['ours']):,.0f}/s", "reference": f"{1 / med(t['plain']):,.0f}/s",
         "ratio": ratio("plain", "ours"), "note": f"{image_steps} image-steps ({n_points} points x 2); {reps}"},
        {"model": name, "measure": "(c) RISE masked forwards/s vs plain inference img/s",
         "ours": f"{1 / med(t['rise']):,.0f}/s", "reference": f"{1 / med(t['plain_rise']):,.0f}/s",
         "ratio": ratio("plain_rise", "rise"), "note": f"{xr.shape[0]} images x {args.rise_masks} masks; {reps}"},
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--rise-images", type=int, default=8, help="images explained by RISE in (c)")
    ap.add_argument("--rise-masks", type=int, default=500, help="RISE masks in (c) (the method's default is 4000)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--batch-size", type=int, default=0, help="images per forward (0: the library's default "
                    "for the device, 32 on the CPU, 256 on a GPU)")
    ap.add_argument("--models", default="wrn-28-2,small-cnn")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; ratios are medians")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.batch_size <= 0:
        args.batch_size = auto_batch_size(device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name.strip(), args, device)
    print(f"device: {device} ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads); {args.n_images} images 32x32, batch {args.batch_size}, "
          f"protocol petsiuk")
    header = f"| {'model':<10} | {'measure':<52} | {'ours':>12} | {'reference':>12} | {'ratio':>6} | note"
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|---|")
    for r in rows:
        print(f"| {r['model']:<10} | {r['measure']:<52} | {r['ours']:>12} | {r['reference']:>12} | "
              f"{r['ratio']:>6.2f} | {r['note']}")


if __name__ == "__main__":
    main()
