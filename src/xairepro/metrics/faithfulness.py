"""The retrain-free faithfulness metrics by name, for callers that score many maps the same way.

    scores = retrain_free_scores(model, images, maps, targets, ["road", "pixel-flipping"])
    scores["road_morf"], scores["road_lerf"], scores["pixel_flipping"]   # (B,) per image

Names (as the ``xairepro saliency --metrics`` list): ``road`` (-> road_morf, road_lerf),
``pixel-flipping`` (-> pixel_flipping, the MoRF AUC), ``faithfulness-correlation`` (->
faithfulness_correlation), ``confidence-change`` (-> average_drop, increase_in_confidence,
average_gain, per image in percent so their means are the papers' figures).  Every output key is in
``metrics.HIGHER_IS_BETTER``.  One :class:`FaithfulnessSuite` holds every setting; its defaults are
the metrics' own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.metrics._perturbation import Settings, check_positive_int
from xairepro.metrics.road import DEFAULT_PERCENTAGES

__all__ = ["FAITHFULNESS_METRICS", "FaithfulnessSuite", "retrain_free_scores", "OUTPUTS"]

#: Metric names accepted by :func:`retrain_free_scores`, with what each scores (the one list: the CLI and
#: ``xairepro list saliency`` read it).
FAITHFULNESS_METRICS: dict[str, str] = {
    "road": "ROAD (Rong et al. 2022): mean target score after removing 10..90% of the pixels, most and least "
            "relevant first, noisy linear imputation",
    "pixel-flipping": "pixel flipping (Bach et al. 2015): AUC of the target score as the most relevant pixels "
                      "turn black, 28 steps",
    "faithfulness-correlation": "faithfulness correlation (Bhatt et al. 2020): Pearson between the saliency of "
                                "100 random pixel subsets and the logit drop when they turn black",
    "confidence-change": "Average Drop, Increase in Confidence, Average Gain of the saliency-masked image "
                         "(Grad-CAM++)",
}
#: The per-image scores each name produces.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "road": ("road_morf", "road_lerf"),
    "pixel-flipping": ("pixel_flipping",),
    "faithfulness-correlation": ("faithfulness_correlation",),
    "confidence-change": ("average_drop", "increase_in_confidence", "average_gain"),
}


@dataclass(frozen=True)
class FaithfulnessSuite(Settings):
    """Settings of every retrain-free metric scored by name (recorded with the scores)."""

    road_percentages: tuple[float, ...] = DEFAULT_PERCENTAGES
    road_imputation: str = "noisy-linear"
    pixel_flipping_steps: int = 28
    pixel_flipping_baseline: str = "zeros"
    faithfulness_subsets: int = 100
    faithfulness_subset_size: int | None = None
    score: str = "softmax"
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int("pixel_flipping_steps", self.pixel_flipping_steps)
        check_positive_int("faithfulness_subsets", self.faithfulness_subsets, minimum=2)


def check_names(names: Sequence[str]) -> list[str]:
    """Names as a list, each in ``FAITHFULNESS_METRICS`` (a one-line error naming the choices)."""
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in FAITHFULNESS_METRICS]
    if bad:
        raise UsageError(f"unknown faithfulness metric {bad[0]!r}; choose from {', '.join(FAITHFULNESS_METRICS)}")
    return list(dict.fromkeys(names))


def retrain_free_scores(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, targets: object = None,
                        names: Sequence[str] = tuple(FAITHFULNESS_METRICS), suite: FaithfulnessSuite | None = None, *,
                        batch_size: int | None = None, show_progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-image scores (B,) of ``saliency`` (B, H, W) for every output of every metric in ``names``.

    ``targets``: None (predicted class), int or LongTensor (B,); resolved once, so every metric scores
    the same classes.  Faithfulness correlation scores the raw logit, as its reference (Quantus) does.
    """
    from xairepro.metrics.confidence_change import confidence_change
    from xairepro.metrics.faithfulness_correlation import faithfulness_correlation
    from xairepro.metrics.pixel_flipping import pixel_flipping
    from xairepro.metrics.road import road

    names = check_names(names)
    suite = FaithfulnessSuite() if suite is None else suite
    common = {"batch_size": batch_size, "show_progress": show_progress}
    out: dict[str, torch.Tensor] = {}
    for name in names:
        if name == "road":
            for order in ("morf", "lerf"):
                r = road(model, images, saliency, targets, suite.road_percentages, order, suite.road_imputation,
                         suite.seed, score=suite.score, **common)
                out[f"road_{order}"], targets = r.score, r.targets
        elif name == "pixel-flipping":
            p = pixel_flipping(model, images, saliency, targets, n_steps=suite.pixel_flipping_steps,
                               baseline=suite.pixel_flipping_baseline, score=suite.score, seed=suite.seed, **common)
            out["pixel_flipping"], targets = p.auc, p.targets
        elif name == "faithfulness-correlation":
            f = faithfulness_correlation(model, images, saliency, targets, n_subsets=suite.faithfulness_subsets,
                                         subset_size=suite.faithfulness_subset_size, seed=suite.seed, **common)
            out["faithfulness_correlation"], targets = f.correlation, f.targets
        else:
            c = confidence_change(model, images, saliency, targets, batch_size=batch_size)
            out.update(average_drop=100 * c.drop, increase_in_confidence=100 * c.increase.float(),
                       average_gain=100 * c.gain)
            targets = c.targets
    return out
