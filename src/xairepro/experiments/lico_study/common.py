"""What the four experiments of the LICO study share: the config core, the grid, references, provenance.

The dataclass defaults are the study's own settings (the ``paper`` preset: Table 7, three seeds, CLIP's
text encoder, a GPU per cell); :data:`QUICK` holds what the ``quick`` preset changes (shapes-seg
stand-ins at 16 px, WRN-10-1, 3 epochs (8 on the limited-data stand-in), two seeds, the offline MiniLM encoder, one CPU thread).
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
from xairepro.experiments.verdict_rules import RULE
from xairepro.lico.config import LicoConfig

__all__ = ["StudyConfig", "StudyExperiment", "QUICK_TRAINING", "QUICK_COMMON", "set_label", "cell_dir"]

#: The quick preset's training: Table 7's optimiser and schedule, with a larger batch and step size and
#: no augmentation so that a WRN-10-1 learns the 16 px stand-ins in a few epochs on one CPU thread; the
#: epochs are each stand-in's own (3, and 8 for the limited-data stand-in, see ``sets._shapes``).
QUICK_TRAINING: dict[str, Any] = {"lr": 0.1, "batch_size": 128, "augment": "none", "epochs": None}
#: Values every experiment's quick preset shares.
QUICK_COMMON: dict[str, Any] = {"seeds": [0, 1], "training": QUICK_TRAINING, "lico": {"text_encoder": "minilm"},
                                "cpus": 1, "gpus": 0.0}


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
        if not 0 <= self.min_skill < 1:
            raise ConfigError(f"min_skill must be in [0, 1), got {self.min_skill}")
        if self.cpus < 1 or self.gpus < 0:
            raise ConfigError(f"cpus must be >= 1 and gpus >= 0, got {self.cpus}, {self.gpus}")
        self.training.validate()

    def sets(self) -> list[StudySet]:
        return [get_study_set(k) for k in self.datasets]


def set_label(key: str) -> str:
    """Display name of a study set: the published name, or the stand-in's key and what it stands for."""
    try:
        spec = get_study_set(key)
    except ConfigError:
        return key
    published = PUBLISHED_LABELS.get(spec.published, spec.published)
    return published if not spec.stand_in else f"{spec.key} ({published} stand-in)"


class StudyExperiment(Experiment):
    """Shared grid (data set x variant x seed), cell parameters, references and provenance."""

    study = "lico"

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
            for variant in cfg.variants:
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
                "claims_rule": f"{RULE} Chance guard: a claim is inconclusive (not-learned) when a data set's "
                               f"baseline has (acc - chance) / (100 - chance) < {cfg.min_skill:g}."}

    @staticmethod
    def seeds_of(results: Results) -> list[int]:
        return sorted({int(s) for s in results.frame["seed"]}) if len(results) else []
