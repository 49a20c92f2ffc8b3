"""Explain images with saliency methods and score the maps, in one call: insertion/deletion, the retrain-free
faithfulness metrics and soft IoU.

    ev = evaluate_saliency(model, images, labels, ["gradcam", "rise"], ["petsiuk", "lico-fact"], masks=seg,
                           metrics=["road", "pixel-flipping"])
    ev.maps["gradcam"]["label"]                    # (N, H, W) in [0, 1]: the label class explained
    ev.scores["gradcam"]["petsiuk"].insertion      # (N,) AUC per image (an InsertionDeletionResult)
    ev.faithfulness["gradcam"]["label"]["road_morf"]   # (N,) per image (``metrics.retrain_free_scores``)
    ev.iou["gradcam"]["predicted"]                 # (N,) soft IoU of the maps with the masks
    ev.rows()                                      # one dict per (image, method, protocol)

The library side of ``xairepro saliency`` and of the LICO study's saliency tables.  A protocol scoring the
label class (``lico-fact``) is given maps of the label; one scoring the predicted class (``petsiuk``) maps of
the prediction; when both are asked for, the label maps are reused where the prediction is right and only
the misclassified images are explained again.  Explainers and ``insertion_deletion`` batch their own
forwards (``batch_size``), so every method sees all images in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import method_name, saliency_method
from xairepro.imaging import auto_batch_size, check_images, resolve_targets
from xairepro.metrics import (
    FaithfulnessSuite, InsertionDeletionProtocol, InsertionDeletionResult, insertion_deletion, retrain_free_scores,
    soft_iou,
)
from xairepro.metrics.faithfulness import check_names
from xairepro.utils import preserved_state

__all__ = ["SaliencyEvaluation", "evaluate_saliency", "BATCHED_METHODS"]

#: Methods whose constructor takes ``batch_size`` (forwards of perturbed images) and gets the evaluation's.
BATCHED_METHODS = ("rise", "groupcam", "scorecam")


@dataclass
class SaliencyEvaluation:
    """What :func:`evaluate_saliency` computed, on the images' device.

    ``maps[method][target]`` (N, H, W) for each target needed (``label``, ``predicted``);
    ``scores[method][protocol]`` the insertion/deletion result of that protocol's maps;
    ``faithfulness[method][target]`` {score name: (N,)} of the retrain-free metrics asked for;
    ``iou[method][target]`` (N,) soft IoU per image (NaN where a mask is empty) when masks were given;
    ``explainers[method]`` each explainer's settings (its repr).
    """

    labels: torch.Tensor | None
    predictions: torch.Tensor
    protocols: dict[str, InsertionDeletionProtocol]
    maps: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    scores: dict[str, dict[str, InsertionDeletionResult]] = field(default_factory=dict)
    iou: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    faithfulness: dict[str, dict[str, dict[str, torch.Tensor]]] = field(default_factory=dict)
    explainers: dict[str, str] = field(default_factory=dict)

    def classes(self, target: str) -> torch.Tensor:
        """The class explained per image for a target kind: the labels or the predictions, (N,)."""
        if target == "label":
            if self.labels is None:
                raise UsageError("no labels were given")
            return self.labels
        return self.predictions

    def rows(self) -> list[dict[str, Any]]:
        """One row per (image, method, protocol): label, target class, insertion, deletion, overall, the
        retrain-free scores and, with masks, the soft IoU of the maps the protocol scored.  Without
        protocols: one row per (image, method, target kind explained), ``protocol`` None."""
        rows: list[dict[str, Any]] = []
        for method, maps in self.maps.items():
            results = self.scores.get(method, {})
            keys = [(name, self.protocols[name].target) for name in results] or [(None, t) for t in maps]
            for name, target in keys:
                r = results.get(name) if name is not None else None
                classes = r.targets if r is not None else self.classes(target)
                columns: dict[str, torch.Tensor] = {}
                if r is not None:
                    columns.update(insertion=r.insertion, deletion=r.deletion, overall=r.overall)
                columns.update(self.faithfulness.get(method, {}).get(target, {}))
                if target in self.iou.get(method, {}):
                    columns["soft_iou"] = self.iou[method][target]
                values = {k: v.detach().cpu().tolist() for k, v in columns.items()}
                for i in range(len(classes)):
                    row = {"image": i, "label": None if self.labels is None else int(self.labels[i]),
                           "target": int(classes[i]), "method": method, "protocol": name}
                    row.update({k: float(v[i]) for k, v in values.items()})
                    rows.append(row)
        return rows


def _protocols(protocols: Mapping[str, InsertionDeletionProtocol | str] | Sequence[InsertionDeletionProtocol | str]
               ) -> dict[str, InsertionDeletionProtocol]:
    items = protocols.items() if isinstance(protocols, Mapping) else [(None, p) for p in protocols]
    out: dict[str, InsertionDeletionProtocol] = {}
    for name, p in items:
        proto = InsertionDeletionProtocol.preset(p) if isinstance(p, str) else p
        if not isinstance(proto, InsertionDeletionProtocol):
            raise UsageError(f"protocols must be presets or InsertionDeletionProtocol, got {type(p).__name__}")
        key = name or (p if isinstance(p, str) else proto.name)
        if key in out:
            raise UsageError(f"protocol {key!r} is given twice; name them with a mapping {{name: protocol}}")
        out[key] = proto
    return out


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with preserved_state(model, eval_mode=True):
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])


def evaluate_saliency(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | Sequence[int] | None,
                      methods: Sequence[str],
                      protocols: Mapping[str, InsertionDeletionProtocol | str] | Sequence[InsertionDeletionProtocol | str],
                      masks: torch.Tensor | None = None, *, batch_size: int | None = None, seed: int | None = 0,
                      target_layer: nn.Module | str | None = None,
                      options: Mapping[str, Mapping[str, Any]] | None = None,
                      progress: Callable[[str], None] | None = None, metrics: Sequence[str] = (),
                      suite: FaithfulnessSuite | None = None, explain: Sequence[str] | None = None
                      ) -> SaliencyEvaluation:
    """Maps of every method, their insertion/deletion under every protocol, and their soft IoU with ``masks``.

    ``images`` (N, C, H, W) in [0, 1]; ``targets`` the labels (N,) (needed when a protocol scores the label
    class); ``methods`` names of :data:`~xairepro.explain.SALIENCY_METHODS`; ``protocols`` presets by name,
    protocols, or a mapping name -> protocol (the names key the scores); none: maps and IoU only (of the
    prediction).  ``masks`` (N, H, W) bool segmentation masks.  ``batch_size``: forwards per batch (None: 32
    on the CPU, 256 on a GPU), also given to RISE, Group-CAM and Score-CAM; ``seed`` draws RISE's masks;
    ``options[method]`` go to that method's constructor (e.g. ``{"rise": {"n_masks": 200}}``).
    ``progress(method)`` is called after each method.  ``metrics``: names of the retrain-free faithfulness
    metrics (``metrics.FAITHFULNESS_METRICS``) scored on every map, the class explained being the
    target (``suite``: their settings).  ``explain``: the target kinds to explain ("label", "predicted")
    when no protocol says (default: the prediction).  The model is left as it was.
    """
    check_images(images, "evaluate_saliency")
    x = images.detach()
    n, device = x.shape[0], x.device
    batch_size = batch_size or auto_batch_size(device)
    protos = _protocols(protocols)
    metrics = check_names(metrics) if metrics else []
    names = list(dict.fromkeys(method_name(m) for m in methods))
    if not names:
        raise UsageError("no saliency method given")
    needed = list(dict.fromkeys(p.target for p in protos.values())) or list(explain or ["predicted"])
    bad = [t for t in needed if t not in ("label", "predicted")]
    if bad:
        raise UsageError(f"explain must name 'label' or 'predicted', got {bad[0]!r}")
    labels = None if targets is None else resolve_targets(targets, None, n, device)
    if labels is None and "label" in needed:
        raise UsageError("a protocol scoring the label class needs the labels: pass targets=")
    if masks is not None and tuple(masks.shape) != (n, *x.shape[2:]):
        raise UsageError(f"masks have shape {tuple(masks.shape)} but images are {n} x {x.shape[2]} x {x.shape[3]}")
    pred = _predict(model, x, batch_size)
    ev = SaliencyEvaluation(labels, pred, protos)
    for method in names:
        kwargs: dict[str, Any] = {"batch_size": batch_size} if method in BATCHED_METHODS else {}
        if method == "rise":
            kwargs["seed"] = seed
        kwargs.update((options or {}).get(method, {}))
        explain = saliency_method(method, model, target_layer, **kwargs)
        maps: dict[str, torch.Tensor] = {}
        for target in needed:
            if target == "label":
                maps[target] = explain(x, target=labels)
            elif "label" in maps:  # explain the prediction only where it differs from the label
                m, wrong = maps["label"].clone(), (pred != labels).nonzero().flatten()
                if wrong.numel():
                    m[wrong] = explain(x[wrong], target=pred[wrong])
                maps[target] = m
            else:
                maps[target] = explain(x, target=None)
        ev.maps[method] = maps
        ev.scores[method] = {name: insertion_deletion(model, x, maps[p.target], p, labels=labels, batch_size=batch_size)
                             for name, p in protos.items()}
        if metrics:
            ev.faithfulness[method] = {t: retrain_free_scores(model, x, m, ev.classes(t), metrics, suite,
                                                              batch_size=batch_size) for t, m in maps.items()}
        if masks is not None:
            ev.iou[method] = {t: soft_iou(m, masks.to(m.device), reduction="image") for t, m in maps.items()}
        ev.explainers[method] = repr(explain)
        if progress is not None:
            progress(method)
    return ev
