"""Benchmark: label-free feature importance and consistency masks.

1. Label-free Integrated Gradients (``LabelFreeAttribution``, anchor f(x) passed through captum) vs
   captum's IntegratedGradients on the same encoder's summed output f(x~).sum(), same inputs, same
   n_steps: the label-free wrapper should cost at most ~10% more (one extra forward for the anchors).
2. Top-M masks for all fractions (one stable sort + scatter) vs the original per-pixel Python loop.
3. (--bug-effect N) the latent shift of the original GradientShap anchor tiling vs the fixed pairing.

Run: .venv/bin/python benchmarks/labelfree_features.py [--n 256] [--repeats 5] [--threads 1] [--bug-effect 200]
Times are the median of interleaved repeats (ours, reference, ours, ...) in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from captum.attr import IntegratedGradients

from xairepro.explain import LabelFreeAttribution
from xairepro.metrics.consistency import FRACTIONS, n_masked, topk_masks
from xairepro.models import build_model


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(a, b, repeats: int) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(a))
        tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)


def loop_masks(attr: torch.Tensor, fractions) -> list[torch.Tensor]:
    """The original way: topk, then one Python assignment per masked pixel and example."""
    n = attr.shape[0]
    scores = attr.abs().sum(1).reshape(n, -1)
    out = []
    for f in fractions:
        m = n_masked(f, scores.shape[1])
        masks = torch.ones_like(scores)
        top = torch.topk(scores, m)[1]
        for example in range(n):
            for feature in range(m):
                masks[example, top[example, feature]] = 0
        out.append(masks)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="images for the IG comparison")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mask-n", type=int, default=100, help="images for the mask comparison")
    parser.add_argument("--bug-effect", type=int, default=0, metavar="N",
                        help="also train the digits AE and compare fixed vs bug-compatible GradientShap on N images")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides (1 keeps a shared, loaded machine fair)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    encoder = build_model("mnist-ae", seed=0).encoder.eval()
    x = torch.rand(args.n, 1, 28, 28)
    lf = LabelFreeAttribution(encoder, "integrated_gradients")
    ig = IntegratedGradients(lambda t: encoder(t).sum(-1))
    ours = lambda: lf.attribute(x, n_steps=args.steps)  # noqa: E731
    ref = lambda: ig.attribute(x, n_steps=args.steps)  # noqa: E731
    ours(), ref()  # warm-up
    t_lf, t_ig = interleaved(ours, ref, args.repeats)

    attr = torch.rand(args.mask_n, 1, 28, 28)
    fast = lambda: topk_masks(attr, FRACTIONS)  # noqa: E731
    slow = lambda: loop_masks(attr, FRACTIONS)  # noqa: E731
    fast_masks, slow_masks = fast(), slow()
    same = all(torch.equal(fm.flatten(1), sm == 0) for fm, sm in zip(fast_masks, slow_masks))
    t_fast = statistics.median(timed(fast) for _ in range(max(3, args.repeats)))
    t_slow = statistics.median(timed(slow) for _ in range(2))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"{'measurement':52s} {'ours (s)':>10s} {'reference (s)':>14s} {'ratio':>10s}")
    print(f"{'label-free IG vs captum IG on f(x).sum(), ' + str(args.n) + ' x 28x28':52s} "
          f"{t_lf:10.3f} {t_ig:14.3f} {t_lf / t_ig:9.2f}x")
    print(f"{'masks, 6 fractions, ' + str(args.mask_n) + ' x 28x28 (identical: ' + str(same) + ')':52s} "
          f"{t_fast:10.4f} {t_slow:14.3f} {t_slow / t_fast:9.0f}x faster")
    if args.bug_effect:
        bug_effect(args.bug_effect)


def bug_effect(n_test: int) -> None:
    """Latent shift of fixed vs bug-compatible label-free GradientShap on an AE trained on digits (28 px).

    Same recipe as the test fixture: mnist-ae d=4, denoising, Adam 3e-3, batch 32, 8 epochs, seed 0.
    """
    from xairepro.data import load
    from xairepro.metrics import feature_consistency
    from xairepro.train import AutoencoderObjective, Engine, OptimizerConfig, TrainConfig

    x_train, _ = load("digits", "train", size=28, seed=0).tensors()
    x_test, _ = load("digits", "test", size=28, seed=0).tensors()
    model = build_model("mnist-ae", latent_dim=4, seed=0)
    cfg = TrainConfig(epochs=8, batch_size=32, seed=0, accelerator="cpu",
                      optimizer=OptimizerConfig(name="adam", lr=3e-3))
    Engine(cfg).fit(model, AutoencoderObjective("noise"), (x_train,))
    enc, x = model.encoder.eval(), x_test[:n_test]
    rows = {
        "Integrated Gradients": LabelFreeAttribution(enc, "integrated_gradients").attribute(x, batch_size=64),
        "Gradient Shap (fixed)": LabelFreeAttribution(enc, "gradient_shap").attribute(x),
        "Gradient Shap (bug-compatible)": LabelFreeAttribution(enc, "gradient_shap",
                                                               bug_compatible=True).attribute(x),
        "Saliency": LabelFreeAttribution(enc, "saliency").attribute(x),
        "Random": "random",
    }
    print(f"\nlatent shift on {n_test} digits test images (batch {n_test}), % of pixels set to 0")
    print(f"{'method':32s}" + "".join(f"{100 * f:>8.0f}" for f in FRACTIONS))
    for name, attr in rows.items():
        shift = feature_consistency(enc, x, attr, FRACTIONS, seed=0)
        print(f"{name:32s}" + "".join(f"{v:8.3f}" for v in shift.tolist()))


if __name__ == "__main__":
    main()
