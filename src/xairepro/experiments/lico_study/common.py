"""What the four experiments of the LICO study share: the config core, the grid, references, provenance.

The dataclass defaults are the study's own settings (the ``paper`` preset: Table 7, three seeds, CLIP's
text encoder, a GPU per cell); :data:`QUICK_COMMON` holds what the ``quick`` preset changes (shapes-seg
stand-ins at 16 px, WRN-10-1, 8 epochs (16 on the limited-data stand-in), three seeds, the loss ablation on
shapes-k4 only, the offline MiniLM text encoder with 4 context tokens and 30 Sinkhorn iterations, one CPU
thread; :data:`QUICK_DEVIATION` says it in the provenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xairepro.config import config_to_dict, resolve_config
from xairepro.errors import ConfigError
from xairepro.experiments.base import Cell, Context, Experiment, Reference, Results, cell_dir
from xairepro.experiments.lico_study.references import Published, make_references
from xairepro.experiments.lico_study.sets import (
    PUBLISHED_LABELS, VARIANT_LABELS, VARIANTS, StudySet, get_study_set,
)
from xairepro.experiments.lico_study.trained_models import StudyModel, StudyTraining, run_config, trained_model
from xairepro.experiments.trained_models import model_key
from xairepro.lico.config import LicoConfig

#: The loss-ablation variants (``ablation_sets`` says where they run).
ABLATION_VARIANTS = ("mm", "ot")

__all__ = ["StudyConfig", "StudyExperiment", "QUICK_TRAINING", "QUICK_LICO", "QUICK_COMMON", "set_label",
           "cell_dir"]

#: The quick preset's training: Table 7's optimiser and schedule, with a larger batch and step size and
#: no augmentation so that a WRN-10-1 learns the 16 px stand-ins in a few epochs on one CPU thread; the
#: epochs are each stand-in's own (8, and 16 for the limited-data stand-in, see ``sets._shapes``).
QUICK_TRAINING: dict[str, Any] = {"lr": 0.1, "batch_size": 128, "augment": "none", "epochs": None}
#: The quick preset's LICO settings: the offline MiniLM encoder, 4 context tokens instead of 12 and 30 Sinkhorn
#: iterations instead of 100 (the text encoder and the Sinkhorn made a LICO step 3-4 x a CE step at 16 px).
QUICK_LICO: dict[str, Any] = {"text_encoder": "minilm", "n_ctx": 4, "ot_iters": 30}
#: What the quick preset changes besides the stand-in data sets (their references say they are stand-ins).
QUICK_DEVIATION = ("quick preset: generated shapes-seg stand-ins at 16 px (K = 4 and 8 classes, and 8 with half "
                   "the training images for the limited-data set), WRN-10-1, no augmentation, 8 epochs (16 on the "
                   "limited set), batch 128 and lr 0.1 instead of Table 7's 64 and 0.03, 3 seeds, the loss ablation "
                   "on shapes-k4 only, the offline MiniLM text encoder instead of CLIP, 4 context tokens instead of "
                   "12, 30 Sinkhorn iterations instead of 100")
#: Values every experiment's quick preset shares.
QUICK_COMMON: dict[str, Any] = {"seeds": [0, 1, 2], "training": QUICK_TRAINING, "lico": QUICK_LICO,
                                "ablation_sets": ["shapes-k4"], "cpus": 1, "gpus": 0.0}


@dataclass
class StudyConfig:
    """Grid and settings common to the study's experiments (defaults: the paper preset).

    ``lico``: ``LicoConfig`` options given to every LICO variant (the variant's own loss and temperature
    switches win).  Claims are decided by the shared rule (:mod:`~xairepro.experiments.verdict_rules`).
    ``min_skill``: a claim is inconclusive (not-learned) when a data set's baseline has a mean test accuracy
    with (acc - chance) / (100 - chance) below this (chance = 100 / K; see ``stats``).  ``cpus``/``gpus``: resources of a cell (not part of its key).
    """

    datasets: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    training: StudyTraining = field(default_factory=StudyTraining)
    lico: dict[str, Any] = field(default_factory=lambda: {"text_encoder": "clip"})
    min_skill: float = 0.15
    #: Data sets on which the MM-only / OT-only ablation variants run (None: every data set of the grid).
    ablation_sets: list[str] | None = None
    cpus: int = 4
    gpus: float = 1.0

    def validate(self) -> None:
        if not self.datasets or not self.variants or not self.seeds:
            raise ConfigError("datasets, variants and seeds must not be empty")
        for key in self.datasets:
            get_study_set(key)
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise ConfigError(f"unknown variant {bad[0]!r} (known: {', '.join(VARIANTS)})")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ConfigError(f"seeds must be distinct non-negative integers, got {list(self.seeds)}")
        for key in self.ablation_sets or []:
            get_study_set(key)
        if not 0 <= self.min_skill < 1:
            raise ConfigError(f"min_skill must be in [0, 1), got {self.min_skill}")
        if self.cpus < 1 or self.gpus < 0:
            raise ConfigError(f"cpus must be >= 1 and gpus >= 0, got {self.cpus}, {self.gpus}")
        self.training.validate()

    def sets(self) -> list[StudySet]:
        return [get_study_set(k) for k in self.datasets]

    def runs_variant(self, key: str, variant: str) -> bool:
        """Whether the grid trains ``variant`` on data set ``key`` (the ablation runs on ``ablation_sets``)."""
        return variant not in ABLATION_VARIANTS or self.ablation_sets is None or key in self.ablation_sets

    def ablation_keys(self) -> list[str]:
        """The data sets of this config on which the MM-only / OT-only variants run."""
        return [k for k in self.datasets if self.runs_variant(k, "mm")]


def set_label(key: str) -> str:
    """Display name of a study set: the published name, or the stand-in's key and what it stands for."""
    try:
        spec = get_study_set(key)
    except ConfigError:
        return key
    published = PUBLISHED_LABELS.get(spec.published, spec.published)
    return published if not spec.stand_in else f"{spec.key} ({published} stand-in)"


#: Where the paper preset departs from the seed (docs/decisions.md, "Preset deviations"), shown in provenance.
PARTIMAGENET_DEVIATION = ("PartImageNet: ResNet-18 as the seed names it, trained 90 epochs (as Imagenette) from random "
                          "initialisation; the seed gives neither its epochs nor its initialisation")
IMAGENETTE_STEP_DEVIATION = ("Imagenette insertion/deletion (lico-fact): 250 px per step at 160 x 160 px, the 10 px "
                             "step of 32 x 32 px scaled with the image area (~103 steps); the seed does not say the "
                             "step it used at 160 px (10 px would be 2,560 steps)")


def preset_deviations(cfg: Any) -> list[str]:
    """The recorded deviations from the seed that apply to this config's data sets."""
    keys = {s.key for s in cfg.sets()}
    out = []
    if "partimagenet" in keys:
        out.append(PARTIMAGENET_DEVIATION)
    if "imagenette" in keys and getattr(cfg, "saliency", None) is not None:
        out.append(IMAGENETTE_STEP_DEVIATION)
    if any(s.stand_in for s in cfg.sets()):
        out.append(QUICK_DEVIATION)
    return out


class StudyExperiment(Experiment):
    """Shared grid (data set x variant x seed), cell parameters, references and provenance."""

    study = "lico"
    #: 2: L_MM on unit-norm aggregates (issue 13): cells cached before it (in an existing output folder) are
    #: recomputed, not only the models (``trained_models.ARTEFACT_VERSION``).
    version = "2"

    def published(self) -> list[Published]:
        return []

    def reference_metrics(self) -> Sequence[str] | None:
        return None

    def stands_for(self, spec: StudySet) -> str:
        """The published data set ``spec``'s numbers are compared with in this experiment."""
        return spec.published

    def extra_params(self, cfg: Any, spec: StudySet) -> dict[str, Any]:
        """Settings besides training that a cell's result depends on (evaluation)."""
        return {}

    def cells(self, cfg: Any) -> list[Cell]:
        device = "cuda" if cfg.gpus > 0 else "cpu"
        out = []
        for spec in cfg.sets():
            for variant in (v for v in cfg.variants if cfg.runs_variant(spec.key, v)):
                for seed in cfg.seeds:
                    run = run_config(spec, variant, seed, cfg.training, cfg.lico, device=device)
                    params = {"run": model_key(run), "training": config_to_dict(cfg.training),
                              "lico": dict(cfg.lico), **self.extra_params(cfg, spec)}
                    out.append(self.cell(spec.key, variant, seed, params, num_cpus=int(cfg.cpus),
                                         num_gpus=float(cfg.gpus)))
        return out

    @staticmethod
    def settings(cell: Cell) -> tuple[StudyTraining, dict[str, Any]]:
        """The training settings and common LICO options a cell was made with."""
        return resolve_config(StudyTraining, values=dict(cell.params["training"])), dict(cell.params["lico"])

    def trained(self, cell: Cell, ctx: Context) -> StudyModel:
        """The cell's trained model: its run config resolved once (on the context's device), trained once."""
        training, lico = self.settings(cell)
        spec = get_study_set(cell.dataset)
        run = run_config(spec, cell.variant, cell.seed, training, lico, device=ctx.device)
        return trained_model(ctx, spec, run, cell.variant, cell.seed)

    def references(self, cfg: Any) -> list[Reference]:
        return make_references(self.published(), cfg.sets(), self.reference_metrics(), self.stands_for)

    def datasets(self, cfg: Any) -> list[str]:
        return sorted({spec.data for spec in cfg.sets()})

    def describe(self, cfg: Any) -> dict[str, Any]:
        sets = {s.key: {"data": s.data, "options": dict(s.options), "model": s.model,
                        "epochs": int(cfg.training.epochs or s.epochs), "stands_for": s.published,
                        "description": s.description} for s in cfg.sets()}
        lico = config_to_dict(LicoConfig(**{k: v for k, v in cfg.lico.items()}))
        return {"sets": sets, "variants": {v: VARIANT_LABELS[v] for v in cfg.variants},
                "text_encoder": lico["text_encoder"], "lico": lico,
                "training": config_to_dict(cfg.training),
                "claims_rule": "the shared rule (report: How verdicts are decided); chance guard: a claim is "
                               "inconclusive (not-learned) when a data set's baseline has (acc - chance) / "
                               f"(100 - chance) < {cfg.min_skill:g}",
                "deviations": preset_deviations(cfg)}

    @staticmethod
    def seeds_of(results: Results) -> list[int]:
        return sorted({int(s) for s in results.frame["seed"]}) if len(results) else []
