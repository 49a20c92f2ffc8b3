"""Benchmark: retrain-free faithfulness metrics vs Quantus 0.6 / pytorch-grad-cam, and vs plain inference.

    python benchmarks/faithfulness.py [--n-images 32] [--model small-cnn] [--repeats 3] [--threads 1]
                                      [--metrics road,pixel-flipping,region,fc,confidence,mprt]

Every row runs ours and the reference on the same model, images, maps and settings, interleaved in
one process, and checks the scores agree (max |difference| in the note); the ratio is reference time /
our time (median of per-repeat ratios).  Then our forwards/s vs plain batched inference images/s.

    ROAD        Quantus ROAD (noise 0, greyscale: Quantus 0.6 cannot remove pixels of RGB images) and
                pytorch-grad-cam ROAD{Most,Least}RelevantFirst (noise-free imputer, RGB); ours "linear"
    pixel-flip  Quantus PixelFlipping, 3 * 48 channel-features per step = 48 whole pixels (27 steps); images
                are 36 x 36 because Quantus wants the step (in C*H*W features) to divide H*W
    region      Quantus RegionPerturbation, 4 x 4 patches, all 81 regions
    fc          Quantus FaithfulnessCorrelation, 100 subsets of 224 pixels (greyscale, replayed draws)
    confidence  pytorch-grad-cam DropInConfidence + IncreaseInConfidence (Quantus 0.6 has no Average Drop)
    mprt        Quantus MPRT (cascading, Spearman) with the same Grad-CAM explainer; scores differ
                because the re-initialised weights are drawn from different seeds (same layers, same
                similarity: see tests/test_model_randomisation.py for the exact comparison)
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from xairepro.explain import GradCAM
from xairepro.imaging import auto_batch_size, batched_forward
from xairepro.metrics import confidence_change, faithfulness_correlation, model_randomisation, pixel_flipping, road
from xairepro.models import build_model

warnings.filterwarnings("ignore")  # Quantus' and numpy's deprecation chatter
SIZE = 36


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def plain_rate(model: nn.Module, x: torch.Tensor, batch_size: int, total: int = 512) -> float:
    """Plain batched inference, images per second (the library's forward, same batch size)."""
    batch = x.repeat(math.ceil(batch_size / x.shape[0]), 1, 1, 1)[:batch_size]
    reps = max(1, total // batch_size)
    with torch.inference_mode():
        t, _ = timed(lambda: [batched_forward(model, batch) for _ in range(reps)])
    return reps * batch_size / t


def distinct_maps(n: int, h: int, w: int) -> torch.Tensor:
    """Uniform random maps in float64 rounded to float32: no ties between pixels or between region sums
    (Quantus breaks ties in its own order), almost surely."""
    return torch.rand(n, h, w, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()


class Case:
    """One comparison: ours() and reference() return comparable numpy arrays; forwards = our forward count."""

    def __init__(self, name: str, ours: Callable[[], np.ndarray], reference: Callable[[], np.ndarray],
                 forwards: int, model: nn.Module, x: torch.Tensor, note: str = "") -> None:
        self.name, self.ours, self.reference, self.forwards = name, ours, reference, forwards
        self.model, self.x, self.note = model, x, note


def road_cases(rgb: nn.Module, grey: nn.Module, x3: torch.Tensor, x1: torch.Tensor, maps: torch.Tensor,
               y: torch.Tensor) -> list[Case]:
    import quantus
    from pytorch_grad_cam.metrics.perturbation_confidence import (AveragerAcrossThresholds,
                                                                  PerturbationConfidenceMetric,
                                                                  RemoveMostRelevantFirst)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    b, h, w = maps.shape
    pcts = list(range(10, 100, 10))
    q = quantus.ROAD(percentages=pcts, noise=0.0, normalise=False, abs=False, disable_warnings=True)

    def quantus_road() -> np.ndarray:
        out = q(model=grey, x_batch=x1.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(), device="cpu",
                channel_first=True)
        return np.array([out[p] for p in pcts])

    # pytorch-grad-cam's percentile q removes #(cam >= percentile(cam, q)) pixels: give ours the same counts
    cam_pcts = [100 * int((maps[0].numpy() >= np.percentile(maps[0].numpy(), p)).sum()) / (h * w) for p in pcts]

    class NoiselessMoRF(PerturbationConfidenceMetric):
        def __init__(self, percentile: float) -> None:
            super().__init__(RemoveMostRelevantFirst(percentile, NoisyLinearImputer(noise=0.0)))

    cam_metric = AveragerAcrossThresholds(NoiselessMoRF, pcts)
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in y]
    forwards = b * (len(pcts) + 1)
    return [
        Case("ROAD MoRF vs Quantus (grey)", lambda: road(grey, x1, maps, y, pcts, imputation="linear").accuracy.numpy(),
             quantus_road, forwards, grey, x1, "accuracy per percentage"),
        Case("ROAD MoRF vs pytorch-grad-cam (RGB)",
             lambda: (lambda r: (r.scores - r.original[:, None]).mean(1).numpy())(
                 road(rgb, x3, maps, y, cam_pcts, imputation="linear")),
             lambda: cam_metric(x3, maps.numpy(), targets, rgb), forwards, rgb, x3, "mean score change"),
    ]


def perturbation_cases(rgb: nn.Module, grey: nn.Module, x3: torch.Tensor, x1: torch.Tensor, maps: torch.Tensor,
                       y: torch.Tensor, wanted: set[str]) -> list[Case]:
    import quantus

    b, h, w = maps.shape
    cases = []
    if "pixel-flipping" in wanted:
        step = 48           # Quantus needs 3 * step to divide H * W: 144 | 1296 at 36 px (27 steps)
        pf = quantus.PixelFlipping(features_in_step=3 * step, perturb_baseline=0.0, normalise=False, abs=False,
                                   disable_warnings=True)
        cases.append(Case(
            "pixel flipping vs Quantus", lambda: pixel_flipping(rgb, x3, maps, y, regions_per_step=step).curve[:, 1:]
            .numpy(), lambda: np.asarray(pf(model=rgb, x_batch=x3.numpy(), y_batch=y.numpy(),
                                            a_batch=maps[:, None].numpy(), device="cpu", channel_first=True)),
            b * (math.ceil(h * w / step) + 1), rgb, x3, f"{step} px per step"))
    if "region" in wanted:
        n_regions = math.ceil(h / 4) * math.ceil(w / 4)
        rp = quantus.RegionPerturbation(patch_size=4, regions_evaluation=n_regions, perturb_baseline=0.0,
                                        normalise=False, abs=False, disable_warnings=True)
        cases.append(Case(
            "region perturbation vs Quantus",
            lambda: (lambda c: (c[:, :1] - c[:, 1:]).numpy())(
                pixel_flipping(rgb, x3, maps, y, region_size=4, regions_per_step=1).curve),
            lambda: np.asarray(rp(model=rgb, x_batch=x3.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                                  device="cpu", channel_first=True)),
            b * (n_regions + 1), rgb, x3, f"{n_regions} regions of 4 x 4"))
    if "fc" in wanted:
        runs, size = 100, 224
        np.random.seed(7)
        draws = np.array([[np.random.choice(h * w, size, replace=False) for _ in range(b)] for _ in range(runs)])
        subsets = torch.as_tensor(draws).permute(1, 0, 2).contiguous()
        fc = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline=0.0, normalise=False,
                                             abs=False, return_aggregate=False, disable_warnings=True)

        def quantus_fc() -> np.ndarray:
            np.random.seed(7)
            return np.asarray(fc(model=grey, x_batch=x1.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                                 device="cpu", channel_first=True))
        cases.append(Case("faithfulness correlation vs Quantus (grey)",
                          lambda: faithfulness_correlation(grey, x1, maps, y, subsets=subsets).correlation.numpy(),
                          quantus_fc, b * (runs + 1), grey, x1, f"{runs} subsets of {size} px"))
    if "confidence" in wanted:
        from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

        targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in y]
        cases.append(Case(
            "confidence change vs pytorch-grad-cam",
            lambda: (lambda r: np.stack([(r.drop * r.original).numpy(), r.increase.float().numpy()]))(
                confidence_change(rgb, x3, maps, y)),
            lambda: np.stack([DropInConfidence()(x3, maps.numpy(), targets, rgb),
                              IncreaseInConfidence()(x3, maps.numpy(), targets, rgb)]),
            2 * b, rgb, x3, "drop and increase"))
    return cases


def mprt_case(rgb: nn.Module, x3: torch.Tensor, y: torch.Tensor) -> Case:
    import quantus

    layer = "features"

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        return GradCAM(model, model.get_submodule(layer))(torch.as_tensor(inputs), torch.as_tensor(targets))[:, None] \
            .numpy()

    q = quantus.MPRT(layer_order="top_down", abs=False, normalise=False, disable_warnings=True)
    ours = lambda: model_randomisation(rgb, lambda m: GradCAM(m, layer), x3, y).similarity.numpy()  # noqa: E731

    def reference() -> np.ndarray:
        out = q(model=rgb, x_batch=x3.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=explain, device="cpu",
                channel_first=True)
        return np.array([out[k] for k in out if k != "original"])
    n_layers = len(ours())
    return Case("model randomisation vs Quantus MPRT", ours, reference, 0, rgb, x3,
                f"{n_layers} layers, Grad-CAM; different random weights")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; ratios are medians")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--metrics", default="road,pixel-flipping,region,fc,confidence,mprt")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    wanted = set(args.metrics.split(","))
    rgb = build_model(args.model, num_classes=10, seed=0).eval()
    grey = build_model(args.model, num_classes=10, in_channels=1, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x3 = torch.rand(args.n_images, 3, SIZE, SIZE, generator=g)
    x1 = x3.mean(dim=1, keepdim=True)
    maps = distinct_maps(args.n_images, SIZE, SIZE)
    with torch.inference_mode():
        y = rgb(x3).argmax(1)
    cases = road_cases(rgb, grey, x3, x1, maps, y) if "road" in wanted else []
    cases += perturbation_cases(rgb, grey, x3, x1, maps, y, wanted)
    if "mprt" in wanted:
        cases.append(mprt_case(rgb, x3, y))
    batch = auto_batch_size("cpu")
    rows = []
    for case in cases:
        t_ours, t_ref, t_plain = [], [], []
        diff = float("nan")
        for _ in range(args.repeats):
            t_plain.append(1 / plain_rate(case.model, case.x, batch))
            dt, a = timed(case.ours)
            t_ours.append(dt)
            dt, r = timed(case.reference)
            t_ref.append(dt)
            diff = float(np.nanmax(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(r, dtype=np.float64))))
        med = statistics.median
        speedup = med(r / o for r, o in zip(t_ref, t_ours))
        rate = case.forwards / med(t_ours) if case.forwards else float("nan")
        plain = 1 / med(t_plain)
        rows.append((case.name, med(t_ours), med(t_ref), speedup, rate, plain, rate / plain, diff, case.note))
    print(f"device: cpu ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads); model {args.model}, {args.n_images} images {SIZE}x{SIZE}, batch {batch}, "
          f"median of {args.repeats} interleaved repeats")
    print("| metric | ours (s) | reference (s) | speed-up | our forwards/s | plain img/s | ratio | max abs diff | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, o, r, s, rate, plain, ratio, diff, note in rows:
        print(f"| {name} | {o:.3f} | {r:.3f} | {s:.1f}x | {rate:,.0f} | {plain:,.0f} | {ratio:.2f} | {diff:.1e} | "
              f"{note} |")


if __name__ == "__main__":
    main()
