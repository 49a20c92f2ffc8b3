"""Saliency evaluation of the study's trained models: insertion/deletion (Tables 1, 4, 6) and soft IoU (Table 5),
and, not in the study, the retrain-free faithfulness metrics of the same maps (issue 15's verdict robustness).

Scores are cached next to the models (``ctx.models``) under a key made of the model's key and every
evaluation setting, so two experiments scoring the same model the same way (Tables 4 and 6 share the
CIFAR-10 baseline and LICO models) compute the maps once.  Insertion, deletion and Overall are reported
as AUC x 100, the unit of the study's tables.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xairepro.config import config_to_dict
from xairepro.errors import ConfigError
from xairepro.experiments.lico_study.sets import StudySet
from xairepro.experiments.lico_study.trained_models import StudyModel, load_images
from xairepro.explain.rise import CELL_SIZE, N_MASKS, P1
from xairepro.metrics import (
    FAITHFULNESS_METRICS, PROTOCOL_PRESETS, FaithfulnessSuite, InsertionDeletionProtocol, retrain_free_scores, soft_iou,
)
from xairepro.saliency import evaluate_saliency
from xairepro.utils import atomic_torch_save, atomic_write_text, report_progress

__all__ = [
    "SaliencySettings", "METHOD_LABELS", "STUDY_PROTOCOLS", "SCORES", "insdel_metric", "study_protocol", "saliency_scores", "iou_scores",
    "EXAMPLES_FILE", "example_indices",
]

#: The study's saliency methods (names of ``xairepro.explain.SALIENCY_METHODS``) and how its tables name them.
METHOD_LABELS = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "rise": "RISE"}
#: The study's insertion/deletion protocols (``PROTOCOL_PRESETS`` names), the first deciding the claims.
STUDY_PROTOCOLS = ("lico-fact", "petsiuk")
SCORES = ("insertion", "deletion", "overall")
#: lico-fact's step: 10 pixels per step at 32 x 32 (SPEC 5), i.e. 10 px per 1,024 px of image area.
LICO_FACT_STEP, LICO_FACT_AREA = 10, 32 * 32
EXAMPLES_FILE = "saliency_examples.pt"
_VERSION = 1
#: 2: the kept examples are one image per class (Figure 2), and n_examples is part of the key.
_INSDEL_VERSION = 2


@dataclass
class SaliencySettings:
    """How saliency maps are made and scored (Tables 1, 4, 5, 6).

    ``n_images``: the first N images of each test split are explained.  ``protocols``: insertion/deletion
    presets, the first being the one claims are decided on (``lico-fact``, the study's code).  For
    ``lico-fact``, ``pixels_per_step = None`` keeps its 10 px steps up to 32 x 32 images and scales the
    step with the image area above (10 px per 1,024 px: 250 px at 160 px), so larger images keep ~103
    steps.  ``rise_*`` are RISE's settings (SPEC 5 defaults: 4,000 masks, 8 x 8 grid, p1 = 0.1).
    ``n_examples``: how many explained images keep their maps for the report's Figure 2, one per class
    (the first explained image of each class, classes in order; see :func:`example_indices`).
    ``faithfulness``: retrain-free metrics (``metrics.FAITHFULNESS_METRICS`` names) scored on the maps
    the first protocol scores, for the first ``faithfulness_images`` explained images (ROAD's linear
    systems run on the CPU); none by default.
    """

    methods: list[str] = field(default_factory=lambda: list(METHOD_LABELS))
    protocols: list[str] = field(default_factory=lambda: list(STUDY_PROTOCOLS))
    n_images: int = 1000
    pixels_per_step: int | None = None
    rise_masks: int = N_MASKS
    rise_cell_size: int = CELL_SIZE
    rise_p1: float = P1
    batch_size: int | None = None
    n_examples: int = 10
    faithfulness: list[str] = field(default_factory=list)
    faithfulness_images: int = 100

    def validate(self) -> None:
        for key, values, allowed in (("methods", self.methods, METHOD_LABELS),
                                     ("protocols", self.protocols, PROTOCOL_PRESETS)):
            if not values or any(v not in allowed for v in values):
                raise ConfigError(f"saliency.{key} must be a non-empty list of {', '.join(allowed)}; got {values}")
        for key in ("n_images", "rise_masks", "rise_cell_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"saliency.{key} must be >= 1, got {getattr(self, key)}")
        if self.n_examples < 0:
            raise ConfigError(f"saliency.n_examples must be >= 0, got {self.n_examples}")
        bad = [m for m in self.faithfulness if m not in FAITHFULNESS_METRICS]
        if bad or len(set(self.faithfulness)) != len(self.faithfulness):
            raise ConfigError(f"saliency.faithfulness must be distinct names of {', '.join(FAITHFULNESS_METRICS)}; "
                              f"got {self.faithfulness}")
        if self.faithfulness_images < 1:
            raise ConfigError(f"saliency.faithfulness_images must be >= 1, got {self.faithfulness_images}")


def insdel_metric(method: str, score: str, protocol: str, primary: str) -> str:
    """Record name: ``gradcam.insertion`` for the primary protocol, ``petsiuk.gradcam.insertion`` else."""
    return f"{method}.{score}" if protocol == primary else f"{protocol}.{method}.{score}"


def study_protocol(name: str, height: int, width: int, pixels_per_step: int | None = None) -> Any:
    """The insertion/deletion protocol ``name`` for images of ``height`` x ``width``.

    ``lico-fact`` keeps its 10 px steps up to 32 x 32 and above scales the step with the area (see
    :class:`SaliencySettings`); ``pixels_per_step`` overrides it.
    """
    proto = InsertionDeletionProtocol.preset(name)
    if proto.name == "lico-fact":
        step = pixels_per_step or max(LICO_FACT_STEP, round(LICO_FACT_STEP * height * width / LICO_FACT_AREA))
        proto = dataclasses.replace(proto, pixels_per_step=int(step))
    return proto


def example_indices(labels: torch.Tensor, k: int) -> list[int]:
    """Positions of the first image of each class in ``labels`` (N,), classes in ascending order, at most
    ``k`` of them: Figure 2 shows one test image per class."""
    first: dict[int, int] = {}
    for i, c in enumerate(labels.tolist()):
        first.setdefault(int(c), i)
    return [first[c] for c in sorted(first)][:max(int(k), 0)]


def _mean(values: torch.Tensor) -> float:
    v = values.double()
    v = v[~torch.isnan(v)]
    return float(v.mean()) if v.numel() else math.nan


def saliency_scores(ctx: Any, trained: StudyModel, spec: StudySet, seed: int,
                    settings: SaliencySettings) -> tuple[dict[str, float], Path]:
    """Insertion/deletion/Overall (x 100) of every method and protocol for one trained model (cached).

    The first ``settings.n_images`` test images are explained.  A protocol scoring the label class
    (lico-fact) explains the label; one scoring the predicted class (petsiuk) explains the prediction
    (the maps are shared where they coincide).  RISE's masks are drawn from ``seed``.  Keys are
    :func:`insdel_metric` names, plus ``explained_accuracy`` (%) and ``n_images``.  Also returns the
    artefact folder, which holds ``EXAMPLES_FILE`` (the first images and their maps).
    """
    key = {"kind": "lico-study-insdel", "version": _INSDEL_VERSION, "model": trained.key, "seed": int(seed),
           "settings": {k: v for k, v in config_to_dict(settings).items() if k != "batch_size"}}

    def build(folder: Path) -> None:
        device = torch.device(ctx.device)
        model = trained.load(device)
        x, y, _ = load_images(spec, ctx.data_dir, settings.n_images)
        x, y = x.to(device), y.to(device)
        h, w = x.shape[-2:]
        protocols = {p: study_protocol(p, h, w, settings.pixels_per_step) for p in settings.protocols}
        rise = {"n_masks": settings.rise_masks, "cell_size": settings.rise_cell_size, "p1": settings.rise_p1}
        finished: list[str] = []

        def method_done(method: str) -> None:  # the running cell's progress (shown by xairepro reproduce)
            finished.append(method)
            report_progress(f"saliency methods on {x.shape[0]} images", len(finished), len(settings.methods))

        ev = evaluate_saliency(model, x, y, settings.methods, protocols, batch_size=settings.batch_size, seed=seed,
                               options={"rise": rise}, progress=method_done)
        scores: dict[str, float] = {"n_images": float(x.shape[0]),
                                    "explained_accuracy": 100 * float((ev.predictions == y).float().mean())}
        primary = settings.protocols[0]
        for method, results in ev.scores.items():
            for name, r in results.items():
                insertion, deletion = r.insertion.cpu(), r.deletion.cpu()
                values = {"insertion": _mean(insertion), "deletion": _mean(deletion),
                          "overall": _mean(insertion - deletion)}
                for score, value in values.items():
                    scores[insdel_metric(method, score, name, primary)] = 100 * value
        if settings.faithfulness:      # the maps the primary protocol scores, the class they explain
            target = protocols[primary].target
            n = min(settings.faithfulness_images, x.shape[0])
            for method, maps in ev.maps.items():
                extra = retrain_free_scores(model, x[:n], maps[target][:n], ev.classes(target)[:n],
                                            settings.faithfulness, FaithfulnessSuite(seed=seed),
                                            batch_size=settings.batch_size)
                scores.update({f"{method}.{score}": _mean(v.cpu()) for score, v in extra.items()})
        keep = torch.as_tensor(example_indices(y.cpu(), settings.n_examples), dtype=torch.long)
        examples = {m: maps[protocols[primary].target].cpu()[keep] for m, maps in ev.maps.items()}
        atomic_torch_save({"images": x.cpu()[keep], "labels": y.cpu()[keep], "predictions": ev.predictions.cpu()[keep],
                           "indices": keep, "maps": examples}, folder / EXAMPLES_FILE)
        record = {"scores": scores, "protocols": {n: p.to_dict() for n, p in protocols.items()}}
        atomic_write_text(folder / "scores.json", json.dumps(record, indent=2, sort_keys=True))

    folder = ctx.models.get_or_create(key, build, name=f"insdel-{Path(trained.folder).name}")
    scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))["scores"]
    return {k: float(v) for k, v in scores.items()}, folder


def iou_scores(ctx: Any, trained: StudyModel, spec: StudySet, n_images: int, batch: int) -> dict[str, float]:
    """Soft IoU of Grad-CAM maps (predicted class) with the test masks of ``spec`` (cached).

    ``soft_iou_batch``: the reproduction's choice, soft IoU of each batch of ``batch`` images pooled,
    averaged over batches; ``soft_iou_image``: per image, averaged (images with empty masks skipped).
    """
    key = {"kind": "lico-study-iou", "version": _VERSION, "model": trained.key, "n_images": int(n_images),
           "batch": int(batch)}

    def build(folder: Path) -> None:
        device = torch.device(ctx.device)
        model = trained.load(device)
        x, _, seg = load_images(spec, ctx.data_dir, n_images, masks=True)
        ev = evaluate_saliency(model, x.to(device), None, ["gradcam"], {}, masks=seg)
        maps = ev.maps["gradcam"]["predicted"].cpu()
        per_image = ev.iou["gradcam"]["predicted"].cpu()
        per_batch = torch.stack([soft_iou(maps[i:i + batch], seg[i:i + batch], reduction="batch")
                                 for i in range(0, maps.shape[0], batch)])
        scores = {"soft_iou_batch": _mean(per_batch), "soft_iou_image": _mean(per_image),
                  "n_images": float(maps.shape[0])}
        atomic_write_text(folder / "scores.json", json.dumps({"scores": scores}, indent=2, sort_keys=True))

    folder = ctx.models.get_or_create(key, build, name=f"iou-{Path(trained.folder).name}")
    scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))["scores"]
    return {k: float(v) for k, v in scores.items()}
