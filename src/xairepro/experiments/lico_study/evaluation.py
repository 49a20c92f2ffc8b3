"""Saliency evaluation of the study's trained models: insertion/deletion (Tables 1, 4, 6) and soft IoU (Table 5).

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
from torch import nn

from xairepro.config import config_to_dict
from xairepro.errors import ConfigError
from xairepro.experiments.lico_study.sets import StudySet
from xairepro.experiments.lico_study.trained_models import StudyModel, load_images
from xairepro.utils import atomic_torch_save, atomic_write_text

__all__ = [
    "SaliencySettings", "METHOD_LABELS", "SCORES", "CHUNK", "insdel_metric", "study_protocol", "saliency_scores", "iou_scores",
    "EXAMPLES_FILE",
]

METHOD_LABELS = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "rise": "RISE"}
SCORES = ("insertion", "deletion", "overall")
#: Images explained and scored together.
CHUNK = 64
#: lico-fact's step: 10 pixels per step at 32 x 32 (SPEC 5), i.e. 10 px per 1,024 px of image area.
LICO_FACT_STEP, LICO_FACT_AREA = 10, 32 * 32
EXAMPLES_FILE = "saliency_examples.pt"
_VERSION = 1


@dataclass
class SaliencySettings:
    """How saliency maps are made and scored (Tables 1, 4, 5, 6).

    ``n_images``: the first N images of each test split are explained.  ``protocols``: insertion/deletion
    presets, the first being the one claims are decided on (``lico-fact``, the study's code).  For
    ``lico-fact``, ``pixels_per_step = None`` keeps its 10 px steps up to 32 x 32 images and scales the
    step with the image area above (10 px per 1,024 px: 250 px at 160 px), so larger images keep ~103
    steps.  ``rise_*`` are RISE's settings (SPEC 5 defaults: 4,000 masks, 8 x 8 grid, p1 = 0.1).
    """

    methods: list[str] = field(default_factory=lambda: ["gradcam", "gradcampp", "rise"])
    protocols: list[str] = field(default_factory=lambda: ["lico-fact", "petsiuk"])
    n_images: int = 1000
    pixels_per_step: int | None = None
    rise_masks: int = 4000
    rise_cell_size: int = 8
    rise_p1: float = 0.1
    batch_size: int | None = None
    n_examples: int = 4

    def validate(self) -> None:
        allowed = ("gradcam", "gradcampp", "rise")
        bad = [m for m in self.methods if m not in allowed]
        if bad or not self.methods:
            raise ConfigError(f"saliency.methods must be a non-empty list of {', '.join(allowed)}; got {self.methods}")
        bad = [p for p in self.protocols if p not in ("lico-fact", "petsiuk")]
        if bad or not self.protocols:
            raise ConfigError(f"saliency.protocols must be a non-empty list of lico-fact, petsiuk; got {self.protocols}")
        for key in ("n_images", "rise_masks", "rise_cell_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"saliency.{key} must be >= 1, got {getattr(self, key)}")
        if self.n_examples < 0:
            raise ConfigError(f"saliency.n_examples must be >= 0, got {self.n_examples}")


def insdel_metric(method: str, score: str, protocol: str, primary: str) -> str:
    """Record name: ``gradcam.insertion`` for the primary protocol, ``petsiuk.gradcam.insertion`` else."""
    return f"{method}.{score}" if protocol == primary else f"{protocol}.{method}.{score}"


def study_protocol(name: str, height: int, width: int, pixels_per_step: int | None = None) -> Any:
    """The insertion/deletion protocol ``name`` for images of ``height`` x ``width``.

    ``lico-fact`` keeps its 10 px steps up to 32 x 32 and above scales the step with the area (see
    :class:`SaliencySettings`); ``pixels_per_step`` overrides it.
    """
    from xairepro.metrics import InsertionDeletionProtocol

    proto = InsertionDeletionProtocol.preset(name)
    if proto.name == "lico-fact":
        step = pixels_per_step or max(LICO_FACT_STEP, round(LICO_FACT_STEP * height * width / LICO_FACT_AREA))
        proto = dataclasses.replace(proto, pixels_per_step=int(step))
    return proto


def _explainer(method: str, model: nn.Module, settings: SaliencySettings, seed: int, batch_size: int) -> Any:
    from xairepro.explain import RISE, GradCAM, GradCAMPlusPlus

    if method == "gradcam":
        return GradCAM(model)
    if method == "gradcampp":
        return GradCAMPlusPlus(model)
    return RISE(model, n_masks=settings.rise_masks, cell_size=settings.rise_cell_size, p1=settings.rise_p1,
                batch_size=batch_size, seed=seed)


def _maps(explain: Any, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.cat([explain(x[i:i + CHUNK], target=target[i:i + CHUNK]) for i in range(0, x.shape[0], CHUNK)])


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])


def _mean(values: torch.Tensor) -> float:
    v = values.double()
    v = v[~torch.isnan(v)]
    return float(v.mean()) if v.numel() else math.nan


def _score_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, protocol: Any,
                batch_size: int) -> dict[str, float]:
    from xairepro.metrics import insertion_deletion

    ins, dele = [], []
    for i in range(0, x.shape[0], CHUNK):
        r = insertion_deletion(model, x[i:i + CHUNK], maps[i:i + CHUNK], protocol, labels=y[i:i + CHUNK],
                               batch_size=batch_size)
        ins.append(r.insertion.cpu())
        dele.append(r.deletion.cpu())
    insertion, deletion = torch.cat(ins), torch.cat(dele)
    return {"insertion": 100 * _mean(insertion), "deletion": 100 * _mean(deletion),
            "overall": 100 * _mean(insertion - deletion)}


def saliency_scores(ctx: Any, trained: StudyModel, spec: StudySet, seed: int,
                    settings: SaliencySettings) -> tuple[dict[str, float], Path]:
    """Insertion/deletion/Overall (x 100) of every method and protocol for one trained model (cached).

    The first ``settings.n_images`` test images are explained.  A protocol scoring the label class
    (lico-fact) explains the label; one scoring the predicted class (petsiuk) explains the prediction
    (the maps are shared where they coincide).  RISE's masks are drawn from ``seed``.  Keys are
    :func:`insdel_metric` names, plus ``explained_accuracy`` (%) and ``n_images``.  Also returns the
    artefact folder, which holds ``EXAMPLES_FILE`` (the first images and their maps).
    """
    key = {"kind": "lico-study-insdel", "version": _VERSION, "model": trained.key, "seed": int(seed),
           "settings": {k: v for k, v in config_to_dict(settings).items() if k not in ("batch_size", "n_examples")}}

    def build(folder: Path) -> None:
        from xairepro.imaging import auto_batch_size

        device = torch.device(ctx.device)
        batch = settings.batch_size or auto_batch_size(device)
        model = trained.load(device)
        x, y, _ = load_images(spec, ctx.data_dir, settings.n_images)
        x, y = x.to(device), y.to(device)
        pred = _predict(model, x, batch)
        h, w = x.shape[-2:]
        protocols = {p: study_protocol(p, h, w, settings.pixels_per_step) for p in settings.protocols}
        scores: dict[str, float] = {"n_images": float(x.shape[0]),
                                    "explained_accuracy": 100 * float((pred == y).float().mean())}
        examples: dict[str, torch.Tensor] = {}
        for method in settings.methods:
            explain = _explainer(method, model, settings, seed, batch)
            maps: dict[str, torch.Tensor] = {}
            for target in dict.fromkeys(p.target for p in protocols.values()):
                if target == "label":
                    maps[target] = _maps(explain, x, y)
                elif "label" in maps:  # explain the prediction only where it differs from the label
                    m, wrong = maps["label"].clone(), (pred != y).nonzero().flatten()
                    if wrong.numel():
                        m[wrong] = _maps(explain, x[wrong], pred[wrong])
                    maps[target] = m
                else:
                    maps[target] = _maps(explain, x, pred)
            for name, proto in protocols.items():
                for score, value in _score_maps(model, x, y, maps[proto.target], proto, batch).items():
                    scores[insdel_metric(method, score, name, settings.protocols[0])] = value
            examples[method] = maps[protocols[settings.protocols[0]].target][:settings.n_examples].cpu()
        k = settings.n_examples
        atomic_torch_save({"images": x[:k].cpu(), "labels": y[:k].cpu(), "predictions": pred[:k].cpu(),
                           "maps": examples}, folder / EXAMPLES_FILE)
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
        from xairepro.explain import GradCAM
        from xairepro.metrics import soft_iou

        device = torch.device(ctx.device)
        model = trained.load(device)
        x, _, seg = load_images(spec, ctx.data_dir, n_images, masks=True)
        x = x.to(device)
        cam = GradCAM(model)
        maps = torch.cat([cam(x[i:i + CHUNK]) for i in range(0, x.shape[0], CHUNK)]).cpu()
        per_image = soft_iou(maps, seg, reduction="image")
        per_batch = torch.stack([soft_iou(maps[i:i + batch], seg[i:i + batch], reduction="batch")
                                 for i in range(0, maps.shape[0], batch)])
        scores = {"soft_iou_batch": _mean(per_batch), "soft_iou_image": _mean(per_image),
                  "n_images": float(maps.shape[0])}
        atomic_write_text(folder / "scores.json", json.dumps({"scores": scores}, indent=2, sort_keys=True))

    folder = ctx.models.get_or_create(key, build, name=f"iou-{Path(trained.folder).name}")
    scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))["scores"]
    return {k: float(v) for k, v in scores.items()}
