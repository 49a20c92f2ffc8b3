"""The LICO reproducibility study's published numbers (seed 000), as typed data with their tables named.

Units are the study's: accuracy and insertion/deletion/Overall in % (AUC x 100), soft IoU as a fraction.
Where two tables of the study print different numbers for the same setting, the value kept is named in
``PUBLISHED_NOTES`` and the other one is quoted there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from xairepro.experiments.base import Reference
from xairepro.experiments.lico_study.sets import PUBLISHED_LABELS, StudySet

__all__ = [
    "Published", "TABLE2_ACCURACY", "TABLE3_ACCURACY", "TABLE4_INSDEL", "TABLE5_IOU", "TABLE6",
    "PUBLISHED_NOTES", "accuracy_published", "insdel_published", "make_references",
]


@dataclass(frozen=True)
class Published:
    """One published number: (data set, variant, metric) -> value ± std, from ``source``."""

    dataset: str
    variant: str
    metric: str
    value: float
    std: float | None
    source: str


#: Table 2: test accuracy (%) over 3 runs, baseline vs LICO.
TABLE2_ACCURACY: dict[tuple[str, str], tuple[float, float]] = {
    ("imagenette", "baseline"): (87.3, 0.74), ("cifar10", "baseline"): (93.9, 0.13),
    ("cifar100", "baseline"): (78.1, 0.66), ("cifar100-2500", "baseline"): (28.5, 0.39),
    ("imagenette", "lico"): (86.8, 1.58), ("cifar10", "lico"): (93.6, 0.29),
    ("cifar100", "lico"): (77.3, 0.90), ("cifar100-2500", "lico"): (18.6, 1.64),
}

#: Table 3: test accuracy (%) of the loss ablation over 3 runs.
TABLE3_ACCURACY: dict[tuple[str, str], tuple[float, float]] = {
    ("imagenette", "baseline"): (87.3, 0.74), ("cifar10", "baseline"): (93.9, 0.13),
    ("cifar100", "baseline"): (77.7, 0.08), ("cifar100-2500", "baseline"): (28.5, 0.39),
    ("imagenette", "ot"): (83.8, 1.58), ("cifar10", "ot"): (93.6, 0.35),
    ("cifar100", "ot"): (78.0, 0.38), ("cifar100-2500", "ot"): (23.6, 1.96),
    ("imagenette", "mm"): (88.0, 0.26), ("cifar10", "mm"): (93.9, 0.11),
    ("cifar100", "mm"): (78.6, 0.33), ("cifar100-2500", "mm"): (26.1, 1.10),
    ("imagenette", "lico"): (86.8, 1.58), ("cifar10", "lico"): (93.6, 0.29),
    ("cifar100", "lico"): (77.0, 1.08), ("cifar100-2500", "lico"): (18.6, 1.64),
}

_METHODS = ("gradcam", "gradcampp", "rise")
_SCORES = ("insertion", "deletion", "overall")


def _rows(table: Mapping[tuple[str, str], tuple[float, ...]]) -> dict[tuple[str, str, str], float]:
    """(dataset, variant) -> 9 numbers in the order Grad-CAM, Grad-CAM++, RISE x Ins, Del, Ovr."""
    out = {}
    for (dataset, variant), values in table.items():
        for i, method in enumerate(_METHODS):
            for j, score in enumerate(_SCORES):
                out[(dataset, variant, f"{method}.{score}")] = values[3 * i + j]
    return out


#: Table 4 (includes Table 1's baseline and LICO): Grad-CAM, Grad-CAM++, RISE x Ins, Del, Ovr (%).
TABLE4_INSDEL: dict[tuple[str, str, str], float] = _rows({
    ("cifar10", "baseline"): (63.0, 37.3, 25.8, 53.8, 43.8, 9.9, 73.3, 31.8, 41.5),
    ("cifar10", "mm"): (59.3, 39.5, 19.8, 51.5, 46.4, 2.6, 72.8, 30.9, 41.9),
    ("cifar10", "ot"): (63.0, 36.8, 26.2, 53.5, 44.4, 9.1, 73.9, 30.4, 43.5),
    ("cifar10", "lico"): (63.6, 35.4, 28.2, 48.7, 46.9, 1.7, 72.4, 30.0, 42.4),
    ("cifar100", "baseline"): (44.0, 19.2, 26.2, 34.1, 27.6, 6.5, 54.3, 13.4, 40.9),
    ("cifar100", "mm"): (41.0, 21.2, 19.8, 31.8, 29.2, 2.6, 55.0, 13.3, 41.7),
    ("cifar100", "ot"): (41.3, 20.8, 20.5, 32.9, 27.5, 5.4, 55.1, 13.3, 41.8),
    ("cifar100", "lico"): (43.4, 19.8, 23.6, 32.8, 28.6, 4.2, 54.2, 14.3, 39.9),
    ("imagenette", "baseline"): (77.1, 23.0, 54.1, 60.2, 36.9, 23.3, 70.9, 36.2, 34.7),
    ("imagenette", "mm"): (75.9, 27.0, 48.9, 60.4, 39.0, 21.4, 69.1, 38.0, 31.1),
    ("imagenette", "ot"): (71.7, 27.3, 44.4, 57.3, 38.3, 19.0, 64.7, 37.8, 26.9),
    ("imagenette", "lico"): (74.5, 25.5, 49.0, 59.2, 38.3, 21.0, 70.3, 35.8, 34.5),
})

#: Table 5: soft IoU of Grad-CAM maps with PartImageNet masks over 3 runs.
TABLE5_IOU: dict[str, tuple[float, float]] = {"baseline": (0.185, 0.005), "lico": (0.141, 0.008)}

#: Table 6 (CIFAR-10): accuracy ± std, then Grad-CAM, Grad-CAM++, RISE x Ins, Del, Ovr (%).
TABLE6: dict[str, tuple[tuple[float, float], tuple[float, ...]]] = {
    "baseline": ((93.6, 0.09), (63.9, 38.0, 25.8, 56.0, 44.1, 11.8, 69.7, 34.0, 35.7)),
    "lico": ((93.5, 0.08), (66.8, 36.6, 30.1, 50.1, 47.9, 2.2, 68.5, 34.5, 34.0)),
    "lico-tau-fixed": ((93.4, 0.08), (65.2, 36.5, 28.7, 49.2, 49.2, 0.0, 67.7, 36.2, 31.4)),
}

#: Where the study's tables disagree: which value is kept, and why.
PUBLISHED_NOTES: dict[tuple[str, str, str], str] = {
    ("cifar100", "baseline", "accuracy"): "Table 3 prints 77.7 ± 0.08 for the same setting",
    ("cifar100", "lico", "accuracy"): "Table 3 prints 77.0 ± 1.08 for the same setting",
    ("cifar10", "baseline", "gradcam.overall"): "Table 4 prints 25.4; Table 1's 25.8 matches 63.0 - 37.3",
    ("cifar100", "lico", "gradcampp.insertion"): "Table 1 prints 33.8; Table 4's 32.8 matches 4.2 + 28.6",
    ("cifar10", "mm", "gradcampp.overall"): "as printed in Table 4, although its insertion - deletion is 5.1",
    ("cifar100", "baseline", "gradcam.overall"): "as printed in Tables 1 and 4, although its insertion - deletion "
                                                 "is 24.8",
}


def accuracy_published() -> list[Published]:
    """Tables 2 (baseline, LICO) and 3 (MM only, OT only)."""
    out = [Published(d, v, "accuracy", m, s, "seed 000, Table 2") for (d, v), (m, s) in TABLE2_ACCURACY.items()]
    out += [Published(d, v, "accuracy", m, s, "seed 000, Table 3") for (d, v), (m, s) in TABLE3_ACCURACY.items()
            if v in ("mm", "ot")]
    return out


def insdel_published() -> list[Published]:
    """Tables 1 and 4: insertion, deletion, Overall of Grad-CAM, Grad-CAM++ and RISE."""
    out = []
    for (d, v, metric), value in TABLE4_INSDEL.items():
        source = "seed 000, Tables 1 and 4" if v in ("baseline", "lico") else "seed 000, Table 4"
        out.append(Published(d, v, metric, value, None, source))
    return out


def iou_published() -> list[Published]:
    return [Published("partimagenet", v, "soft_iou_batch", m, s, "seed 000, Table 5") for v, (m, s) in TABLE5_IOU.items()]


def tau_published() -> list[Published]:
    out = []
    for variant, ((acc, acc_std), values) in TABLE6.items():
        out.append(Published("cifar10", variant, "accuracy", acc, acc_std, "seed 000, Table 6"))
        for i, method in enumerate(_METHODS):
            for j, score in enumerate(_SCORES):
                out.append(Published("cifar10", variant, f"{method}.{score}", values[3 * i + j], None,
                                     "seed 000, Table 6"))
    return out


def _stand_in_note(spec: StudySet, stands_for: str) -> str:
    published = PUBLISHED_LABELS.get(stands_for, stands_for)
    return (f"quick preset: the stand-in {spec.key} is compared with the number published on {published}; "
            "only directions of differences between variants carry over")


def make_references(published: Iterable[Published], sets: Iterable[StudySet],
                    metrics: Iterable[str] | None = None,
                    stands_for: Callable[[StudySet], str] | None = None) -> list[Reference]:
    """References keyed by this run's data sets: each set takes the numbers of the published data set it is
    (or stands in for, with a note saying so); published data sets this run has nothing for are left out.
    ``metrics`` keeps only those metrics (None: all); ``stands_for(set)`` names the published data set a
    set is compared with (default: ``set.published``)."""
    by_published: dict[str, list[StudySet]] = {}
    for spec in sets:
        by_published.setdefault(stands_for(spec) if stands_for else spec.published, []).append(spec)
    keep = None if metrics is None else set(metrics)
    out: list[Reference] = []
    for p in published:
        if keep is not None and p.metric not in keep:
            continue
        extra = PUBLISHED_NOTES.get((p.dataset, p.variant, p.metric), "")
        for spec in by_published.get(p.dataset, []):
            note = "; ".join(n for n in (_stand_in_note(spec, p.dataset) if spec.stand_in else "", extra) if n)
            out.append(Reference(spec.key, p.variant, p.metric, p.value, p.std, p.source, note))
    return out
