"""What the cells of the Label-Free XAI study are made of: one typed set per data set and experiment.

The experiments (``feature_consistency.py`` ...) expand these into cells and decide claims; the cell
computations (``*_cells.py``) read them back from the cell parameters.  Both import this module; it
imports neither (light: dataclasses and the model setup only).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from xairepro.errors import ConfigError
from xairepro.experiments.labelfree_study.common import ModelSetup

__all__ = [
    "FeatureSet", "REPLACEMENTS", "BASELINES", "PREFIX", "variant_name",
    "ExampleSet", "LissaSettings", "EXAMPLE_METHODS", "LOSS_BASED", "MOST", "LEAST",
    "PretextSet", "PERTURBATIONS", "task_setup",
    "VaeSet", "VAE_TYPES", "vae_setup",
]

# ------------------------------------------------------------------ feature consistency (Figure 1)
REPLACEMENTS = ("zeros", "mean", "blur", "road")
#: Attribution baselines (``road`` imputes from the kept features: a removal, not a baseline).
BASELINES = ("zeros", "mean", "blur")
#: Record name prefix: ``latent_shift@5%``.
PREFIX = "latent_shift"


@dataclass
class FeatureSet:
    """One data set of the check: its model, how features are replaced, the attribution baseline.

    ``replacements``: the first is the study's masking (claims are decided on every one listed).
    ``baseline``: zeros | mean (the mean training example) | blur.  ``n_test``: test examples explained
    (a seeded subset; None = the whole test split).
    """

    model: ModelSetup = field(default_factory=ModelSetup)
    replacements: list[str] = field(default_factory=lambda: ["zeros"])
    baseline: str = "zeros"
    n_test: int | None = None

    def validate(self, key: str = "feature_set") -> None:
        self.model.validate(f"{key}.model")
        bad = [r for r in self.replacements if r not in REPLACEMENTS]
        if not self.replacements or bad or len(set(self.replacements)) != len(self.replacements):
            raise ConfigError(f"{key}.replacements must be distinct values of {', '.join(REPLACEMENTS)}; "
                              f"got {self.replacements}")
        if self.baseline not in BASELINES:
            raise ConfigError(f"{key}.baseline must be one of {', '.join(BASELINES)}; got {self.baseline!r}")
        if self.n_test is not None and self.n_test < 1:
            raise ConfigError(f"{key}.n_test must be >= 1 or null, got {self.n_test}")


def variant_name(method: str, replacement: str, primary: str) -> str:
    """The record variant: the method, plus the replacement when it is not the data set's primary one."""
    return method if replacement == primary else f"{method} ({replacement})"


# ------------------------------------------------------------------ example consistency (Figure 2)
EXAMPLE_METHODS = ("influence_functions", "tracin", "simplex", "dknn")
LOSS_BASED = ("influence_functions", "tracin")
#: Record name prefixes: ``similarity_most@5%``, ``similarity_least@5%``.
MOST, LEAST = "similarity_most", "similarity_least"


@dataclass
class LissaSettings:
    """LiSSA of the influence functions: v <- g + v - (H_t + damping·I) v / scale, ``depth`` iterations on
    batches of ``hessian_batch_size`` training examples drawn with replacement.  The study's setting
    (depth 100, the original's damp 1e-3 with scale 1000 = damping 1.0 in our convention, batch 200) is
    ``xairepro.explain.influence.SEED003_LISSA``."""

    depth: int = 100
    damping: float = 1.0
    scale: float = 1000.0
    hessian_batch_size: int = 200

    def validate(self) -> None:
        if self.depth < 1 or self.hessian_batch_size < 1 or self.scale <= 0 or self.damping < 0:
            raise ConfigError(f"lissa: depth and hessian_batch_size must be >= 1, scale > 0, damping >= 0; "
                              f"got {self}")


@dataclass
class ExampleSet:
    """One data set of the check: its model, the methods run on it, the explained examples."""

    model: ModelSetup = field(default_factory=ModelSetup)
    methods: list[str] = field(default_factory=lambda: list(EXAMPLE_METHODS))
    n_train: int = 1000
    n_test: int = 1000
    balance_train: bool = True
    balance_test: bool = True

    def validate(self, key: str = "example_set") -> None:
        self.model.validate(f"{key}.model")
        bad = [m for m in self.methods if m not in EXAMPLE_METHODS]
        if not self.methods or bad or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"{key}.methods must be distinct values of {', '.join(EXAMPLE_METHODS)}; "
                              f"got {self.methods}")
        if self.model.method not in ("ae",) and any(m in LOSS_BASED for m in self.methods):
            raise ConfigError(f"{key}: influence_functions and tracin need an autoencoder's per-example loss; "
                              f"model method {self.model.method!r} has none (use simplex, dknn)")
        if self.n_train < 1 or self.n_test < 1:
            raise ConfigError(f"{key}: n_train and n_test must be >= 1")


# ------------------------------------------------------------------------ pretext tasks (Table 3)
#: The autoencoders' perturbation per pretext task (``clas`` is the classifier).
PERTURBATIONS = {"rec": "identity", "den": "noise", "inp": "mask"}


@dataclass
class PretextSet:
    """One data set of the pretext study: the autoencoders' setup (its perturbation is set per task),
    the classifier's, and the explained examples (None = the whole split)."""

    autoencoder: ModelSetup = field(default_factory=ModelSetup)
    classifier: ModelSetup = field(default_factory=ModelSetup)
    n_test: int | None = None
    n_train: int = 1000
    balance_train: bool = True

    def validate(self, key: str = "pretext_set") -> None:
        self.autoencoder.validate(f"{key}.autoencoder")
        self.classifier.validate(f"{key}.classifier")
        if self.autoencoder.method != "ae" or self.classifier.method != "ce":
            raise ConfigError(f"{key}: autoencoder.method must be 'ae' and classifier.method 'ce'")
        if self.autoencoder.data != self.classifier.data:
            raise ConfigError(f"{key}: the autoencoders and the classifier must use the same data set")
        if (self.n_test is not None and self.n_test < 1) or self.n_train < 1:
            raise ConfigError(f"{key}: n_test (or null) and n_train must be >= 1")


def task_setup(ps: PretextSet, task: str) -> ModelSetup:
    """The model setup of ``task`` (rec, den, inp: the autoencoder with that perturbation; clas)."""
    if task == "clas":
        return ps.classifier
    options = {**ps.autoencoder.method_options, "perturbation": PERTURBATIONS[task]}
    return replace(ps.autoencoder, method_options=options)


# ---------------------------------------------------------------------- disentangled VAEs (Figure 4)
#: VAE type -> training method of ``xairepro.training``.
VAE_TYPES = {"beta-vae": "vae", "tc-vae": "tcvae"}


@dataclass
class VaeSet:
    """One data set of the study: the VAE's setup (method and beta are set per cell) and the test images
    explained (a seeded subset; None = the whole test split)."""

    model: ModelSetup = field(default_factory=ModelSetup)
    n_test: int | None = None

    def validate(self, key: str = "vae_set") -> None:
        self.model.validate(f"{key}.model")
        if self.n_test is not None and self.n_test < 1:
            raise ConfigError(f"{key}.n_test must be >= 1 or null, got {self.n_test}")


def vae_setup(vs: VaeSet, vae_type: str, beta: float) -> ModelSetup:
    """The set's model trained as ``vae_type`` with ``beta``."""
    return replace(vs.model, method=VAE_TYPES[vae_type], method_options={**vs.model.method_options, "beta": beta})
