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
    "FeatureSet", "REPLACEMENTS", "BASELINES", "PREFIX", "variant_name", "cell_sets", "attribution_baseline", "N_SHOWN",
    "MASKED_EXAMPLES", "UNIT_MAPS", "PRETEXT_EXAMPLES",
    "ExampleSet", "LissaSettings", "EXAMPLE_METHODS", "LOSS_BASED", "MOST", "LEAST",
    "PretextSet", "PERTURBATIONS", "task_setup",
    "VaeSet", "VAE_TYPES", "vae_setup", "VAE_METHODS",
    "RoarSet", "ROAR_PREFIX",
]

# ------------------------------------------------------------------ feature consistency (Figure 1)
REPLACEMENTS = ("zeros", "mean", "blur", "road")
#: Attribution baselines (``road`` imputes from the kept features: a removal, not a baseline).
BASELINES = ("zeros", "mean", "blur")
#: Record name prefix: ``latent_shift@5%``.
PREFIX = "latent_shift"

#: Explained test examples a qualitative figure shows (the seed's Figure 3 shows 4 test images), and the
#: files the cells keep them in (in the cell's own folder, ``ctx.cache_dir``) for the figures: the masked
#: images of feature consistency, the VAEs' per-unit maps, the pretext tasks' maps and top examples.
N_SHOWN = 4
MASKED_EXAMPLES = "masked_examples.pt"
UNIT_MAPS = "unit_maps.pt"
PRETEXT_EXAMPLES = "pretext_examples.pt"


@dataclass
class FeatureSet:
    """One data set of the check: its model, how features are replaced, the attribution baseline.

    ``replacements``: the first is the study's masking (claims are decided on every one listed); each is
    computed by the cell of its attribution baseline (:func:`cell_sets`).  ``baseline``: zeros | mean (the mean training example) | blur,
    the attribution baseline of the first replacement.  ``n_test``: test examples explained
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


def attribution_baseline(fs: FeatureSet, replacement: str) -> str:
    """The baseline of the attributions scored under ``replacement``: the set's own for the first replacement
    and for a removal that is no baseline (road); a further replacement that can be a baseline is its own
    (the reproduction's black-pixel variant masked and attributed with black pixels, its Figure 5b)."""
    if replacement == fs.replacements[0] or replacement not in BASELINES:
        return fs.baseline
    return replacement


def cell_sets(fs: FeatureSet) -> list[FeatureSet]:
    """The set as the cells that compute it: one per attribution baseline, each with the replacements scored
    under that baseline's attributions (in the set's order).  The first holds the first replacement and the
    set's baseline: the same parameters as a set of only those replacements."""
    groups: dict[str, list[str]] = {}
    for r in fs.replacements:
        groups.setdefault(attribution_baseline(fs, r), []).append(r)
    return [replace(fs, replacements=rs, baseline=b) for b, rs in groups.items()]


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
#: Attribution methods of the unit maps: the study's GradientShap (Figure 4) and its Integrated Gradients
#: extension (Figure 14).
VAE_METHODS = ("gradient_shap", "integrated_gradients")


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


# ---------------------------------------------------------------------------------------- ROAR (Figure 9)
#: Record name prefix: ``test_loss@10%`` (the retrained autoencoder's loss on the unmodified test set).
ROAR_PREFIX = "test_loss"


@dataclass
class RoarSet:
    """One data set of ROAR: the autoencoder explained (its setup: trained once, through the model cache)
    and retrained on the training examples with features removed, ``retrain_epochs`` per retraining
    (None: the setup's epochs); the training examples whose features are removed and the test examples
    scored (seeded subsets; None = the whole split)."""

    model: ModelSetup = field(default_factory=ModelSetup)
    retrain_epochs: int | None = None
    n_train: int | None = None
    n_test: int | None = None

    def validate(self, key: str = "roar_set") -> None:
        self.model.validate(f"{key}.model")
        if self.model.method != "ae":
            raise ConfigError(f"{key}: ROAR retrains an autoencoder (model.method 'ae'), got {self.model.method!r}")
        for name in ("retrain_epochs", "n_train", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{key}.{name} must be >= 1 or null, got {value}")
