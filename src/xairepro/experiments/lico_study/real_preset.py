"""The ``real`` preset of the LICO study: real Fashion-MNIST images, an extension beyond the seed (issue 17).

None of the seed's data sets (CIFAR-10/100, Imagenette, PartImageNet) nor CLIP's weights can be had here;
Fashion-MNIST can (``xairepro data fetch fashion-mnist``).  So this preset trains the study's variants
(baseline, MM only, OT only, LICO, LICO with a fixed tau) on real images whose real class names
("T-shirt/top", "Trouser", ...) go through the offline text encoder, and judges the study's claims on
them with the very claim functions of the stand-ins (``accuracy_claims``, ``interpretability_claim``,
``tau_claim``).  It is **not** a seed table: no published number is compared (no table of the seed has
Fashion-MNIST), and its label says so.

Budget (<= 60 minutes on 2 CPU cores, one thread per model): 15 models (5 variants x 3 seeds) of a
WRN-10-1 on a seeded 10% of the training split (5,700 images, 300 for validation) for 5 epochs; the full
10,000-image test split for accuracy; insertion/deletion of the first 50 test images under both
protocols with RISE at 500 masks.
"""

from __future__ import annotations

from typing import Any

from xairepro.experiments.lico_study.sets import PUBLISHED_LABELS, STUDY_SETS, StudySet, register_study_set

__all__ = ["FASHION_SET", "REAL_COMMON", "REAL_SALIENCY", "DEVIATIONS", "EXTENSION_LABEL"]

EXTENSION_LABEL = "Fashion-MNIST (extension, not a seed table)"
#: A fraction: ``subset`` cuts the training and validation splits alike (57,000 / 3,000 -> 5,700 / 300).
TRAIN_SUBSET = 0.1
EPOCHS = 5

FASHION_SET = StudySet(
    "fashion-mnist", "fashion-mnist", "fashion-mnist", 10, "wrn-10-1", EPOCHS, {"subset": TRAIN_SUBSET},
    description="real Fashion-MNIST, a seeded 5,700-image training subset (10%), the full 10,000-image test "
                f"split, WRN-10-1, {EPOCHS} epochs; an extension of the study (no published numbers)")
if STUDY_SETS.get(FASHION_SET.key) != FASHION_SET:
    register_study_set(FASHION_SET, replace=True)
PUBLISHED_LABELS.setdefault(FASHION_SET.published, EXTENSION_LABEL)

#: Table 7's optimiser and schedule (SGD lr 0.03, batch 64, LICO cosine), no augmentation (Fashion-MNIST
#: has none), the offline MiniLM text encoder (CLIP's weights are not reachable), one CPU thread per cell.
REAL_COMMON: dict[str, Any] = {
    "datasets": [FASHION_SET.key], "seeds": [0, 1, 2], "training": {"augment": "none", "epochs": None},
    "lico": {"text_encoder": "minilm"}, "cpus": 1, "gpus": 0.0,
}
#: Both insertion/deletion protocols on the first 50 test images, RISE with 500 masks, no retrain-free metrics.
REAL_SALIENCY: dict[str, Any] = {"n_images": 50, "rise_masks": 500, "faithfulness": []}

DEVIATIONS: list[str] = [
    "an extension, not a seed table: real Fashion-MNIST (not in the study), compared between variants only",
    "a seeded 5,700-image training subset (10%, 300 validation) and {EPOCHS} epochs of a WRN-10-1 (the study: CIFAR/Imagenette, "
    "WRN-28-2/8, 200/90 epochs)",
    "the offline MiniLM text encoder with the real class names (the study: CLIP ViT-B/32)",
    "no augmentation; CPU, one thread per cell",
    "insertion/deletion on the first 50 test images (the study: 1,000), RISE 500 masks (the study: 4,000), "
    "no retrain-free metrics",
]
