"""The data sets and training variants of the LICO study (seed 000), and their quick-preset stand-ins.

A *study set* is a data set as the study used it: which ``xairepro.data`` set with which options, which
model (Section 3.3: WRN-28-2 on CIFAR-10, WRN-28-8 on CIFAR-100 and Imagenette, ResNet-18 on
PartImageNet), how many epochs (Table 7), and which published data set its numbers are compared with.
The quick preset's stand-ins are generated ``shapes-seg`` sets that play the same role on a CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xairepro.errors import ConfigError
from xairepro.lico.config import LicoConfig

__all__ = [
    "StudySet", "STUDY_SETS", "register_study_set", "unregister_study_set", "get_study_set",
    "PUBLISHED_LABELS", "VARIANTS", "VARIANT_LABELS", "variant_method",
]

#: Display names of the seed's data sets (the keys of the published tables).
PUBLISHED_LABELS: dict[str, str] = {
    "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "cifar100-2500": "CIFAR-100 (2,500 examples)",
    "imagenette": "Imagenette", "partimagenet": "PartImageNet",
}


@dataclass(frozen=True)
class StudySet:
    """One data set of the study as trained and evaluated (or its stand-in).

    ``options`` go to ``xairepro.data.load``; ``subset`` there cuts every split, so test-time evaluation
    drops it (:meth:`eval_options`): the limited-data models are tested on the full test split.
    ``published`` names the seed's data set whose numbers this set is compared with; ``limited_of`` the
    full-data set a limited-data set is a subset (or stand-in subset) of.
    """

    key: str
    data: str
    published: str
    num_classes: int
    model: str
    epochs: int
    options: Mapping[str, Any] = field(default_factory=dict)
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    limited_of: str | None = None
    description: str = ""

    @property
    def stand_in(self) -> bool:
        """True when this is not the published data set itself (a quick-preset stand-in)."""
        return self.key != self.published

    def eval_options(self) -> dict[str, Any]:
        """Loader options for test-time evaluation: the training options without ``subset``."""
        return {k: v for k, v in self.options.items() if k != "subset"}


def _shapes(key: str, published: str, k: int, *, n: int = 1500, test_size: float = 0.2, epochs: int = 3,
            subset: float | None = None, limited_of: str | None = None) -> StudySet:
    """A shapes-seg stand-in; ``subset`` (a fraction) keeps that part of the training split (the test
    split stays whole at evaluation), as ``cifar100-2500`` keeps 2,500 of CIFAR-100's training images."""
    options: dict[str, Any] = {"num_classes": k, "size": 16, "n": n, "test_size": test_size}
    train = round(n * (1 - test_size) * 0.95)
    if subset is not None:
        options["subset"] = subset
        train = round(train * subset)
    return StudySet(key, "shapes-seg", published, k, "wrn-10-1", epochs, options, limited_of=limited_of,
                    description=f"shapes-seg, K = {k} classes at 16 px, ~{train} training images, WRN-10-1")


#: Every study set by key: the seed's own (paper preset) and the stand-ins (quick preset).
STUDY_SETS: dict[str, StudySet] = {s.key: s for s in (
    StudySet("cifar10", "cifar10", "cifar10", 10, "wrn-28-2", 200,
             description="CIFAR-10, 47,500 / 2,500 / 10,000, WRN-28-2"),
    StudySet("cifar100", "cifar100", "cifar100", 100, "wrn-28-8", 200,
             description="CIFAR-100, 47,500 / 2,500 / 10,000, WRN-28-8"),
    StudySet("cifar100-2500", "cifar100", "cifar100-2500", 100, "wrn-28-8", 200, {"subset": 2500},
             limited_of="cifar100", description="CIFAR-100 limited to 2,500 training examples, WRN-28-8"),
    StudySet("imagenette", "imagenette", "imagenette", 10, "wrn-28-8", 90,
             description="Imagenette 160 px, 9,000 / 475 / 3,925, WRN-28-8"),
    StudySet("partimagenet", "partimagenet", "partimagenet", 158, "resnet18", 90,
             description="PartImageNet 224 px with part masks (every part is foreground), ResNet-18"),
    _shapes("shapes-k4", "cifar10", 4, n=1500, epochs=8),
    _shapes("shapes-k8", "cifar100", 8, n=3000, epochs=8),
    _shapes("shapes-k8-limited", "cifar100-2500", 8, n=3000, subset=0.5, epochs=16, limited_of="shapes-k8"),
)}

_BUILTIN_SETS = frozenset(STUDY_SETS)


def register_study_set(spec: StudySet, *, replace: bool = False) -> StudySet:
    """Add a study set (e.g. a tiny stand-in for tests); ``replace`` to overwrite one."""
    if spec.key in STUDY_SETS and not replace:
        raise ValueError(f"a study set named {spec.key!r} exists (pass replace=True)")
    if spec.key in _BUILTIN_SETS:
        raise ValueError(f"study set {spec.key!r} is built in and cannot be replaced")
    STUDY_SETS[spec.key] = spec
    return spec


def unregister_study_set(key: str) -> None:
    """Remove a study set added with :func:`register_study_set` (built-in ones stay)."""
    if key not in _BUILTIN_SETS:
        STUDY_SETS.pop(key, None)


def get_study_set(key: str) -> StudySet:
    """The study set called ``key``; ``ConfigError`` listing the known keys otherwise."""
    if key not in STUDY_SETS:
        raise ConfigError(f"unknown LICO-study data set {key!r} (known: {', '.join(STUDY_SETS)})")
    return STUDY_SETS[key]


#: Training variants: (training method, LicoConfig options the variant fixes).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": ("ce", {}),
    "mm": ("lico", {"losses": "mm"}),
    "ot": ("lico", {"losses": "ot"}),
    "lico": ("lico", {"losses": "mm+ot"}),
    "lico-tau-fixed": ("lico", {"losses": "mm+ot", "temperature": "fixed"}),
    # the authors' code where it departs from the paper (seed 000, Section 5.2; issue 14's variant grid)
    "lico-prompt-official": ("lico", {"losses": "mm+ot", "prompt_mode": "official"}),
    "lico-mm-official": ("lico", {"losses": "mm+ot", "mm_sign": "official"}),
    "lico-ot-nograd": ("lico", {"losses": "mm+ot", "ot_grad": "none"}),
    "lico-tau-clamped": ("lico", {"losses": "mm+ot", "temperature": "learnable-clamped"}),
}

VARIANT_LABELS: dict[str, str] = {
    "baseline": "Baseline (CE)", "mm": "MM only", "ot": "OT only", "lico": "LICO (MM + OT)",
    "lico-tau-fixed": "LICO (tau fixed)",
    "lico-prompt-official": "LICO, code's prompts (per-class contexts, EOT only)",
    "lico-mm-official": "LICO, code's MM sign (softmax of +D/tau)",
    "lico-ot-nograd": "LICO, OT without gradient",
    "lico-tau-clamped": "LICO, tau learnable and clamped",
}


def variant_method(variant: str, lico: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(method, method_options) of ``variant``: the common ``lico`` options, then the variant's own.

    The baseline trains with plain cross-entropy (method ``ce``, no text branch).
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown LICO-study variant {variant!r} (known: {', '.join(VARIANTS)})")
    method, own = VARIANTS[variant]
    if method != "lico":
        return method, {}
    known = {f.name for f in dataclasses.fields(LicoConfig)}
    unknown = sorted(set(lico) - known)
    if unknown:
        raise ConfigError(f"lico.{unknown[0]} is not a LICO option (options: {', '.join(sorted(known))})")
    return method, {**dict(lico), **own}
