"""Metrics: insertion/deletion, ROAD, pixel flipping, faithfulness correlation, confidence change, model
randomisation, soft IoU, similarity rates, consistency curves, ROAR, map statistics, and ground truth for
training-data attribution (linear datamodeling score, corrupted-example detection).

Each score states whether higher is better (``HIGHER_IS_BETTER``; :func:`higher_is_better` reads a record's
metric name): the report's arrows and the studies' claim rules take the direction from here.  The
submodules are imported here (they need nothing beyond torch and scipy), so ``xairepro.metrics.roar`` is
always the function even where the submodule of the same name was imported first.
"""

from __future__ import annotations

from xairepro.metrics.attribution_eval import (
    datamodel_subsets,
    detection_auc,
    linear_datamodeling_score,
    rank_correlation,
    representation_shift,
)
from xairepro.metrics.confidence_change import ConfidenceChangeResult, ConfidenceChangeSettings, confidence_change
from xairepro.metrics.consistency import feature_consistency, topk_masks
from xairepro.metrics.correlation import (
    active_units,
    attribution_entropy,
    cosine_offdiagonal,
    pearson_matrix,
    pearson_offdiagonal,
    spearman_offdiagonal,
)
from xairepro.metrics.faithfulness import FAITHFULNESS_METRICS, FaithfulnessSuite, retrain_free_scores
from xairepro.metrics.faithfulness_correlation import (
    FaithfulnessCorrelationResult,
    FaithfulnessCorrelationSettings,
    faithfulness_correlation,
)
from xairepro.metrics.insertion_deletion import (
    PROTOCOL_PRESETS,
    InsertionDeletionProtocol,
    InsertionDeletionResult,
    insertion_deletion,
)
from xairepro.metrics.iou import soft_iou
from xairepro.metrics.model_randomisation import (
    ModelRandomisationResult,
    ModelRandomisationSettings,
    model_randomisation,
    randomised_models,
)
from xairepro.metrics.pixel_flipping import PixelFlippingResult, PixelFlippingSettings, pixel_flipping
from xairepro.metrics.road import RoadResult, RoadSettings, noisy_linear_imputation, road
from xairepro.metrics.roar import roar
from xairepro.metrics.similarity import similarity_rates

#: Direction of every named score, for tables and claims (Quantus-style metadata); the keys are the score
#: names records use (``gradcam.overall`` and ``petsiuk.rise.deletion`` are scores ``overall`` and ``deletion``).
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "insertion": True,
    "deletion": False,
    "overall": True,
    "road_morf": False,
    "road_lerf": True,
    "pixel_flipping": False,
    "faithfulness_correlation": True,
    "average_drop": False,
    "increase_in_confidence": True,
    "average_gain": True,
    "model_randomisation": False,
    "soft_iou": True,
    "similarity_most": True,
    "similarity_least": False,
    "latent_shift": True,
    "test_loss": False,
    "lds": True,
    "detection_auc": True,
}


def higher_is_better(metric: str) -> bool | None:
    """Direction of a record's metric: its score is the last dotted part without an ``@P%`` suffix, or the
    longest known score it starts with (``soft_iou_batch`` -> ``soft_iou``); None when none is known."""
    score = metric.rpartition(".")[2].partition("@")[0]
    if score in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[score]
    known = sorted((k for k in HIGHER_IS_BETTER if score.startswith(k + "_")), key=len, reverse=True)
    return HIGHER_IS_BETTER[known[0]] if known else None


__all__ = [
    "insertion_deletion", "InsertionDeletionProtocol", "InsertionDeletionResult", "PROTOCOL_PRESETS", "soft_iou",
    "similarity_rates", "feature_consistency", "topk_masks", "roar", "pearson_offdiagonal", "pearson_matrix",
    "spearman_offdiagonal", "cosine_offdiagonal", "attribution_entropy", "active_units", "HIGHER_IS_BETTER",
    "higher_is_better", "road", "RoadResult", "RoadSettings", "noisy_linear_imputation", "pixel_flipping",
    "PixelFlippingResult", "PixelFlippingSettings", "faithfulness_correlation", "FaithfulnessCorrelationResult",
    "FaithfulnessCorrelationSettings", "confidence_change", "ConfidenceChangeResult", "ConfidenceChangeSettings",
    "model_randomisation", "ModelRandomisationResult", "ModelRandomisationSettings", "randomised_models",
    "retrain_free_scores", "FaithfulnessSuite", "FAITHFULNESS_METRICS", "linear_datamodeling_score",
    "datamodel_subsets", "detection_auc", "rank_correlation", "representation_shift",
]
