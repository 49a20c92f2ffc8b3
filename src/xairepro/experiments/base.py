"""The experiment interface every study plugs into the runner with.

An experiment reproduces one table or figure of a seed study:

- ``config_class``: a dataclass, the single source of defaults; ``presets`` maps ``"quick"`` /
  ``"paper"`` to the values that differ from those defaults (``make_config`` merges them with
  ``--set key=value`` overrides through :func:`xairepro.config.resolve_config`);
- ``cells(cfg)``: the grid (data set x variant x seed ...) as :class:`Cell` objects, each carrying the
  resolved parameters it depends on (their hash is the cache key);
- ``run_cell(cell, ctx)``: compute one cell, return tidy :class:`Record` rows;
- ``references(cfg)``: published numbers (:class:`Reference`, the source table named);
- ``claims(cfg)``: checks over the aggregated :class:`Results` giving a :class:`Verdict`;
- ``figures(results, out_dir)``: PNG files with captions (:class:`Figure`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from xairepro.config import config_hash, config_to_dict, resolve_config
from xairepro.errors import UsageError

if TYPE_CHECKING:  # pandas and numpy are imported lazily: listing experiments stays cheap
    import numpy as np
    import pandas as pd

__all__ = [
    "Cell", "Context", "Record", "Reference", "Claim", "Verdict", "VerdictStatus", "VERDICT_STATUSES",
    "INCONCLUSIVE_CAUSES", "agreement", "Figure",
    "MetricSpec", "TableSpec", "Results", "ModelStore", "Experiment", "RECORD_FIELDS", "PRESET_DESCRIPTIONS",
    "cell_dir",
]

#: Columns of ``results.csv``, in order.
RECORD_FIELDS: tuple[str, ...] = ("experiment", "dataset", "variant", "seed", "metric", "value", "config_hash")

VerdictStatus = Literal["holds", "fails", "partly", "inconclusive"]
#: Every verdict status: ``partly`` = the claim holds for some of its subjects (e.g. methods) and fails for others.
VERDICT_STATUSES: tuple[str, ...] = ("holds", "fails", "partly", "inconclusive")
#: Why a verdict is ``inconclusive``: the compared models did not learn (chance guard, collapsed latent units),
#: the evidence is within noise (no significant result either way, or a single run), or the run lacks what the
#: claim compares (failed cells, data sets or variants not in the run, a check that could not run).
INCONCLUSIVE_CAUSES: tuple[str, ...] = ("not-learned", "within-noise", "not-run")

#: What the presets every experiment offers mean (``xairepro list presets``).
PRESET_DESCRIPTIONS: dict[str, str] = {
    "quick": "bundled or generated stand-ins of the data, small models, CPU, minutes",
    "paper": "the studies' own settings: real data sets, their models and epochs, a GPU per cell",
    "real": "Fashion-MNIST, ECG5000, mnist-10k (a subset) at the studies' settings, capped for 2 CPU cores",
}


@dataclass(frozen=True)
class Record:
    """One tidy result row: the value of ``metric`` for (experiment, dataset, variant, seed)."""

    experiment: str
    dataset: str
    variant: str
    seed: int
    metric: str
    value: float
    config_hash: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Cell:
    """One unit of work of an experiment's grid.

    ``params`` holds every resolved setting the cell's result depends on (JSON-ready values); the cache
    key is ``config_hash`` of (experiment, version, dataset, variant, seed, params), so changing a
    setting invalidates exactly the cells whose ``params`` contain it.  ``num_cpus``/``num_gpus`` are
    the resources the Ray executor reserves for the cell.
    """

    experiment: str
    dataset: str
    variant: str
    seed: int
    params: Mapping[str, Any] = field(default_factory=dict)
    version: str = "1"
    num_cpus: int = 1
    num_gpus: float = 0.0

    def __hash__(self) -> int:  # params is a dict: hash the cell by its key
        return hash(self.key)

    @property
    def key(self) -> str:
        """The cache key: a hash of everything that determines the cell's result."""
        return config_hash({
            "experiment": self.experiment, "version": self.version, "dataset": self.dataset,
            "variant": self.variant, "seed": int(self.seed), "params": dict(self.params),
        })

    @property
    def label(self) -> str:
        return f"{self.experiment}/{self.dataset}/{self.variant}/seed={self.seed}"

    def record(self, metric: str, value: float, *, dataset: str | None = None,
               variant: str | None = None) -> Record:
        """A :class:`Record` of this cell (dataset/variant may be refined, e.g. one model, many methods)."""
        return Record(self.experiment, self.dataset if dataset is None else dataset,
                      self.variant if variant is None else variant, int(self.seed), metric,
                      float(value), self.key)


class ModelStore(Protocol):
    """Trained models cached by the hash of their training config, shared between experiments."""

    def get_or_create(self, config: Any, build: Callable[[Path], Any], *, name: str = "model") -> Path:
        """The folder holding the artefacts of ``config``; ``build(folder)`` fills it once if missing."""
        ...


@dataclass(frozen=True)
class Context:
    """What ``run_cell`` gets besides its cell: where to put files, where data is, which device."""

    cache_dir: Path          # this cell's own folder (kept between runs: partial work may resume)
    data_dir: Path | None    # real data sets live here; None = bundled/generated data only
    device: str              # "cpu" or "cuda"
    seed: int                # = cell.seed
    models: ModelStore       # trained-model cache shared by all experiments of the output folder
    download: bool = False   # the user asked (--download) to fetch missing real data sets; pass it to load()


@dataclass(frozen=True)
class Reference:
    """A published number, in the unit of our metric, with the table it comes from."""

    dataset: str
    variant: str
    metric: str
    value: float
    std: float | None = None
    source: str = ""         # e.g. "seed 000, Table 6"
    note: str = ""           # e.g. "published on CIFAR-10; quick preset compares the shapes-seg stand-in"


@dataclass(frozen=True)
class Verdict:
    """The outcome of a claim check and the numbers that decided it.

    ``cause`` says why an ``inconclusive`` verdict is one (one of :data:`INCONCLUSIVE_CAUSES`); it is
    empty for the other statuses.
    """

    status: VerdictStatus
    reason: str
    numbers: Mapping[str, float] = field(default_factory=dict)
    cause: str = ""

    def __post_init__(self) -> None:
        if self.status not in VERDICT_STATUSES:
            raise ValueError(f"verdict status must be one of {', '.join(VERDICT_STATUSES)}, not {self.status!r}")
        if self.status == "inconclusive" and self.cause not in INCONCLUSIVE_CAUSES:
            raise ValueError(f"an inconclusive verdict needs a cause ({', '.join(INCONCLUSIVE_CAUSES)}), "
                             f"got {self.cause!r}")
        if self.status != "inconclusive" and self.cause:
            raise ValueError(f"only an inconclusive verdict has a cause, not {self.status!r}")

    @classmethod
    def inconclusive(cls, cause: str, reason: str, numbers: Mapping[str, float] | None = None) -> Verdict:
        return cls("inconclusive", reason, dict(numbers or {}), cause)

    @property
    def label(self) -> str:
        """The status as shown: ``inconclusive (within-noise)`` etc."""
        return f"{self.status} ({self.cause})" if self.cause else self.status

    @classmethod
    def decide(cls, condition: bool, reason: str, **numbers: float) -> Verdict:
        """``holds`` when ``condition`` is true, else ``fails``; ``inconclusive`` (not-run) if a number is NaN."""
        if any(isinstance(v, float) and math.isnan(v) for v in numbers.values()):
            return cls("inconclusive", f"{reason} (a value is missing)", numbers, "not-run")
        return cls("holds" if condition else "fails", reason, numbers)


def agreement(ours: str, study: str) -> str:
    """Our verdict beside the study's own: ``agrees`` / ``disagrees``, ``undecided`` when ours is
    inconclusive, ``""`` when the claim carries no study verdict."""
    if not study:
        return ""
    if ours == "inconclusive":
        return "undecided"
    return "agrees" if ours == study else "disagrees"


@dataclass(frozen=True)
class Claim:
    """A claim of the study, checked over the aggregated results of one experiment.

    ``study``: the study's own verdict on it (``holds`` / ``fails`` / ``partly``, read from the seed text,
    quoted in ``study_quote``); empty for checks that are not study claims (the smoke run).  ``sanity``: a
    check that cannot fail at any plausible value (shown, not counted among the tests of the study).
    """

    id: str
    text: str
    check: Callable[[Results], Verdict]
    source: str = ""
    study: str = ""
    study_quote: str = ""
    sanity: bool = False

    def __post_init__(self) -> None:
        if self.study and self.study not in ("holds", "fails", "partly"):
            raise ValueError(f"a study's verdict is holds, fails or partly, not {self.study!r}")


@dataclass(frozen=True)
class Figure:
    """A figure file written by ``Experiment.figures`` (path relative to the output folder or absolute)."""

    path: Path
    caption: str


@dataclass(frozen=True)
class MetricSpec:
    """How to show a metric: its label and whether higher is better (None: neither)."""

    label: str
    higher_is_better: bool | None = None


@dataclass(frozen=True)
class TableSpec:
    """A table of the report: a title and the metrics it shows (in order)."""

    title: str
    metrics: tuple[str, ...]
    source: str = ""


def cell_dir(figures_dir: Path, experiment: str, key: str) -> Path:
    """A cell's work folder (its ``ctx.cache_dir``), from the folder ``figures()`` is given (under
    ``<out>/figures/``), so a figure can draw what a cell kept beside its records.

    The runner keeps each cell's folder at ``<out>/cells/<experiment>/<key>`` (runner/run.py, store.py).
    """
    return Path(figures_dir).parents[1] / "cells" / experiment / key


class Results:
    """Tidy records of one experiment (a ``results.csv`` slice) with small accessors for claims."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def select(self, metric: str, dataset: str | None = None, variant: str | None = None) -> pd.DataFrame:
        f = self.frame[self.frame["metric"] == metric]
        if dataset is not None:
            f = f[f["dataset"] == dataset]
        if variant is not None:
            f = f[f["variant"] == variant]
        return f

    def values(self, metric: str, dataset: str | None = None, variant: str | None = None) -> np.ndarray:
        """The values over seeds (float64, seed order); empty when nothing matched."""
        return self.select(metric, dataset, variant).sort_values("seed")["value"].to_numpy(dtype="float64")

    def mean(self, metric: str, dataset: str | None = None, variant: str | None = None) -> float:
        """Mean over seeds (NaN when nothing matched)."""
        v = self.values(metric, dataset, variant)
        return float(v.mean()) if v.size else float("nan")

    def std(self, metric: str, dataset: str | None = None, variant: str | None = None) -> float:
        """Sample standard deviation over seeds (ddof=1; NaN with fewer than two seeds)."""
        v = self.values(metric, dataset, variant)
        return float(v.std(ddof=1)) if v.size > 1 else float("nan")

    def __len__(self) -> int:
        return len(self.frame)


class Experiment:
    """Base class of experiments; subclasses set the class attributes and override the methods."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    study: ClassVar[str] = ""             # group name accepted by ``xairepro reproduce STUDY``
    reproduces: ClassVar[str] = ""        # e.g. "seed 000, Table 6"
    version: ClassVar[str] = "1"          # bump when the code changes results: cached cells invalidated
    run_by_default: ClassVar[bool] = True  # False: runs only when named (``xairepro reproduce NAME``)
    config_class: ClassVar[type]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: Per preset, how it deviates from the seed study (one sentence each); the report's provenance shows them.
    preset_deviations: ClassVar[Mapping[str, Sequence[str]]] = {}
    metrics: ClassVar[Mapping[str, MetricSpec]] = {}
    tables: ClassVar[Sequence[TableSpec]] = ()

    def make_config(self, preset: str, overrides: Sequence[str] = ()) -> Any:
        """Resolve the config: dataclass defaults < preset values < ``key=value`` overrides."""
        if preset not in self.presets:
            known = ", ".join(sorted(self.presets)) or "none"
            raise UsageError(f"experiment {self.name!r} has no preset {preset!r} (presets: {known})")
        return resolve_config(self.config_class, values=dict(self.presets[preset]), overrides=list(overrides))

    def cells(self, cfg: Any) -> list[Cell]:
        raise NotImplementedError

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        raise NotImplementedError

    def references(self, cfg: Any) -> list[Reference]:
        return []

    def claims(self, cfg: Any) -> list[Claim]:
        return []

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        return []

    def describe(self, cfg: Any) -> dict[str, Any]:
        """Extra provenance (protocols, text encoder, ...); JSON-ready."""
        return {}

    def datasets(self, cfg: Any) -> list[str]:
        """Names of the data sets the cells use (for provenance: bundled stand-in or real files)."""
        return sorted({c.dataset for c in self.cells(cfg)})

    def config_dict(self, cfg: Any) -> dict[str, Any]:
        return config_to_dict(cfg)

    def cell(self, dataset: str, variant: str, seed: int, params: Mapping[str, Any] | None = None,
             **resources: Any) -> Cell:
        """Build a :class:`Cell` of this experiment (params made JSON-ready)."""
        clean = config_to_dict(dict(params or {}))
        return Cell(self.name, dataset, variant, int(seed), clean, str(self.version), **resources)

    def __repr__(self) -> str:
        return f"<experiment {self.name!r}>"
