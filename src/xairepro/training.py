"""The backend of ``xairepro train``: run configs (data + model + method + ``TrainConfig``), the registry
of training methods, and one call that builds, trains, tests and saves a model.  The studies train their
models through it too (``xairepro.experiments.trained_models``).

    cfg = resolve_config(RunConfig, overrides=["data.name=digits", "data.options.size=28",
                                               "model.name=mnist-ae", "method=ae",
                                               "method_options.perturbation=noise", "train.epochs=5"])
    run = build_run(cfg)                 # model, objective, train, val, test (unpacks as a 5-tuple)
    outcome = train_run(cfg)             # fit + test metrics + out_dir/model.pt

Methods are a registry: ``register_method("lico", factory, model_kinds=("classifier",), options=LicoOptions)``
lets another package add a training method without the engine knowing it.  A method's options come from
``method_options`` (a free map on the command line) and are checked against its ``options`` dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xairepro.config import config_hash, config_to_dict, resolve_config
from xairepro.data import check_dataset_options, load
from xairepro.errors import ConfigError, UsageError
from xairepro.lico import LicoObjective
from xairepro.lico.config import LicoConfig
from xairepro.models import build_model, model_info
from xairepro.train import (
    AutoencoderObjective,
    BetaVAEObjective,
    ClassifierObjective,
    Engine,
    SimCLRObjective,
    TCVAEObjective,
    TrainConfig,
    TrainResult,
    build_augmentation,
    save_model,
)
from xairepro.train.objectives import AUTOENCODER_MASK_PROB, AUTOENCODER_NOISE_STD
from xairepro.train.simclr import SIMCLR_TEMPERATURE
from xairepro.utils import atomic_write_text, check_output_folder_path, preserved_state

__all__ = [
    "DataSection", "ModelSection", "RunConfig", "MethodContext", "MethodSpec", "BuiltRun", "RunOutcome",
    "register_method", "unregister_method", "list_methods", "get_method", "check_run_parts", "build_run",
    "run_numbers", "check_train_folder", "train_run", "DataRecord", "checkpoint_run_record",
]


@dataclass
class DataSection:
    """Which data set: ``name``, ``data_dir`` for real files, split ``seed``, loader ``options`` (size, subset ...)."""

    name: str = "digits"
    data_dir: str | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelSection:
    """Which model: a registry ``name`` and constructor ``kwargs``.

    Options the data set determines (``num_classes``, ``in_channels``, ``image_size``, and for classifiers
    the normalisation ``mean``/``std``) are filled in from the data set unless given here.
    """

    name: str = "small-cnn"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """One training run: data, model, method (+ its options), training settings and output folder."""

    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    method: str = "ce"
    method_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    out_dir: str = "runs/train"

    def validate(self) -> RunConfig:
        """Check every value that can be checked without loading data: names, options, ranges."""
        self.train.validate("train.")
        check_run_parts(self.data.name, self.data.options, self.model.name, self.method, self.method_options)
        if not self.out_dir or not str(self.out_dir).strip():
            raise ConfigError("out_dir must name a folder")
        if self.data.seed < 0:
            raise ConfigError(f"data.seed must be >= 0; got {self.data.seed!r}")
        return self


# ------------------------------------------------------------------------------------------ methods
@dataclass
class MethodContext:
    """What a method factory gets: the run config, its typed options, the built model and the data."""

    cfg: RunConfig
    options: Any
    model: nn.Module
    train: Any
    info: Any


@dataclass(frozen=True)
class MethodSpec:
    name: str
    factory: Callable[[MethodContext], Any]
    description: str
    model_kinds: tuple[str, ...] | None
    options: type | None


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, factory: Callable[[MethodContext], Any], *, description: str = "",
                    model_kinds: tuple[str, ...] | None = None, options: type | None = None,
                    replace: bool = False) -> MethodSpec:
    """Add a training method: ``factory(ctx) -> objective``; ``options`` is a dataclass for ``method_options``."""
    if name in _METHODS and not replace:
        raise ValueError(f"a training method named {name!r} is already registered")
    if options is not None and not dataclasses.is_dataclass(options):
        raise TypeError("options must be a dataclass type")
    spec = MethodSpec(name, factory, description, tuple(model_kinds) if model_kinds else None, options)
    _METHODS[name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a training method (no error if it is not registered)."""
    _METHODS.pop(name, None)


def get_method(name: str) -> MethodSpec:
    if name not in _METHODS:
        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown training method {name!r}{hint} (valid: {', '.join(sorted(_METHODS))})")
    return _METHODS[name]


def list_methods() -> list[MethodSpec]:
    """Every registered training method, sorted by name."""
    return [_METHODS[k] for k in sorted(_METHODS)]


@dataclass
class ClassifierOptions:
    label_smoothing: float = 0.0


@dataclass
class AutoencoderOptions:
    perturbation: str = "identity"
    noise_std: float = AUTOENCODER_NOISE_STD
    mask_prob: float = AUTOENCODER_MASK_PROB
    error: str = "mse"
    reduction: str = "mean"


@dataclass
class BetaVAEOptions:
    beta: float = 1.0
    likelihood: str = "bernoulli"


@dataclass
class TCVAEOptions:
    beta: float = 1.0
    alpha: float = 1.0
    gamma: float = 1.0
    likelihood: str = "bernoulli"


@dataclass
class SimCLROptions:
    temperature: float = SIMCLR_TEMPERATURE
    augment: str = "simclr"


def _kw(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)


def _simclr(ctx: MethodContext) -> SimCLRObjective:
    augment = build_augmentation(ctx.options.augment, getattr(ctx.info, "input_shape", None))
    return SimCLRObjective(augment, temperature=ctx.options.temperature)


register_method("ce", lambda ctx: ClassifierObjective(**_kw(ctx.options)), model_kinds=("classifier",),
                options=ClassifierOptions, description="classifier, cross-entropy")
register_method("ae", lambda ctx: AutoencoderObjective(**_kw(ctx.options)), model_kinds=("autoencoder",),
                options=AutoencoderOptions,
                description="autoencoder; perturbation identity (reconstruction) | noise (denoising) | mask (inpainting)")
register_method("vae", lambda ctx: BetaVAEObjective(**_kw(ctx.options)), model_kinds=("vae",),
                options=BetaVAEOptions, description="beta-VAE (Bernoulli likelihood)")
register_method("tcvae", lambda ctx: TCVAEObjective(dataset_size=len(ctx.train), **_kw(ctx.options)),
                model_kinds=("vae",), options=TCVAEOptions,
                description="beta-TCVAE, minibatch-weighted sampling")
register_method("simclr", _simclr, model_kinds=("contrastive",), options=SimCLROptions,
                description="SimCLR NT-Xent on two augmented views")


def _lico(ctx: MethodContext) -> Any:
    return LicoObjective.for_model(ctx.model, list(ctx.info.class_names or []), ctx.options,
                                   input_shape=tuple(ctx.info.input_shape), seed=ctx.cfg.train.seed)


register_method("lico", _lico, model_kinds=("classifier",), options=LicoConfig,
                description="LICO: CE + alpha MM + beta OT via a frozen text encoder; method_options = LicoConfig")


# -------------------------------------------------------------------------------------------- build
@dataclass
class BuiltRun:
    """A run ready to train; unpacks as ``model, objective, train, val, test``."""

    model: nn.Module
    objective: Any
    train: Any
    val: Any
    test: Any
    info: Any
    method: MethodSpec
    options: Any = None      # the method's resolved options (its ``options`` dataclass), recorded in run.json

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.objective, self.train, self.val, self.test))


def _load_splits(cfg: RunConfig) -> tuple[Any, Any, Any]:
    kw = dict(seed=cfg.data.seed, **dict(cfg.data.options))
    return tuple(load(cfg.data.name, split, cfg.data.data_dir, **kw) for split in ("train", "val", "test"))


def _model_options(cfg: RunConfig, info: Any, kind: str, accepted: tuple[str, ...]) -> dict[str, Any]:
    options = dict(cfg.model.kwargs)
    shape = tuple(info.input_shape)
    derived: dict[str, Any] = {}
    if kind == "classifier" and info.num_classes:
        derived["num_classes"] = int(info.num_classes)
    if len(shape) == 2:  # series (T, C)
        derived["seq_len"], derived["n_features"] = shape
    if len(shape) == 3:
        derived["in_channels"] = shape[0]
        if shape[1] == shape[2]:
            derived["image_size"] = shape[1]
    if kind in ("classifier", "contrastive") and info.mean is not None:
        derived["mean"], derived["std"] = list(info.mean), list(info.std)
    for key, value in derived.items():
        if key in accepted and key not in options:
            options[key] = value
    return options


def _check_fits(model: nn.Module, cfg: RunConfig, info: Any, example: torch.Tensor, kind: str) -> None:
    """Build-time check that the model takes the data set's inputs (one dry forward in eval mode) and, for a
    classifier, gives one logit per class of the data set."""
    shape = "x".join(str(s) for s in info.input_shape)
    try:
        check = getattr(model, "check_input", None)
        if callable(check):
            check(example)
        with preserved_state(model, eval_mode=True), torch.no_grad():
            out = model(example)
    except (UsageError, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"model {cfg.model.name!r} does not fit data set {cfg.data.name!r} "
                         f"(inputs {shape}): {reason}") from None
    classes = int(info.num_classes or 0)
    if kind == "classifier" and classes and isinstance(out, torch.Tensor) and out.ndim == 2 \
            and out.shape[1] != classes:
        raise UsageError(f"model {cfg.model.name!r} gives {out.shape[1]} logits but data set {cfg.data.name!r} has "
                         f"{classes} classes; leave model.kwargs.num_classes unset (it follows the data set)")


def _method_options(spec: MethodSpec, values: dict[str, Any]) -> Any:
    if spec.options is None:
        return dict(values)
    known = [f.name for f in dataclasses.fields(spec.options)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"method_options.{unknown[0]} is not an option of method {spec.name!r} "
                          f"(options: {', '.join(known) or 'none'})")
    try:
        return resolve_config(spec.options, values=dict(values))
    except ConfigError as exc:
        raise ConfigError(f"method_options of {spec.name!r}: {str(exc).removeprefix('invalid configuration: ')}"
                          ) from None


def check_run_parts(data: str, data_options: dict[str, Any], model: str, method: str,
                    method_options: dict[str, Any]) -> None:
    """Raise a one-line error for an unknown data set, data option, model, training method or method option,
    or a method that does not train this kind of model; nothing is loaded or built (``RunConfig.validate``
    and the studies' configs check their runs with it before the first cell runs)."""
    check_dataset_options(data, dict(data_options))
    kind = model_info(model).kind
    spec = get_method(method)
    if spec.model_kinds and kind not in spec.model_kinds:
        raise UsageError(f"method {method!r} trains {' or '.join(spec.model_kinds)} models; model "
                         f"{model!r} is of kind {kind!r}")
    _method_options(spec, dict(method_options))


def build_run(cfg: RunConfig) -> BuiltRun:
    """Load the data, build the model for its input shape, check they fit, make the objective.

    ``cfg`` is not changed; the method's resolved options are ``BuiltRun.options``.
    """
    cfg.validate()
    spec = get_method(cfg.method)
    minfo = model_info(cfg.model.name)
    train, val, test = _load_splits(cfg)
    info = train.info
    options = _model_options(cfg, info, minfo.kind, minfo.options)
    try:
        model = build_model(cfg.model.name, seed=cfg.train.seed, **options)
    except UsageError as exc:
        shape = "x".join(str(s) for s in info.input_shape)
        raise UsageError(f"model {cfg.model.name!r} for data set {cfg.data.name!r} (inputs {shape}): {exc}") from None
    example = train[0][0].unsqueeze(0)
    _check_fits(model, cfg, info, torch.cat([example, example]), minfo.kind)
    method_options = _method_options(spec, cfg.method_options)
    try:
        objective = spec.factory(MethodContext(cfg, method_options, model, train, info))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"method {cfg.method!r}: {str(exc).strip().splitlines()[0]}") from None
    return BuiltRun(model, objective, train, val, test, info, spec, method_options)


# ---------------------------------------------------------------------------------------------- run
@dataclass
class RunOutcome:
    """What ``train_run`` produced: the engine's result, test metrics and the saved model's path."""

    run: BuiltRun
    result: TrainResult
    test: dict[str, float]
    model_path: Path
    out_dir: Path

    @property
    def metrics(self) -> dict[str, float]:
        """Final metrics: last train/val record values and ``test/<metric>``."""
        final = {k: v for k, v in self.result.last.items() if k not in ("epoch", "lr")}
        final.update({f"test/{k}": v for k, v in self.test.items()})
        return final


def run_numbers(cfg: RunConfig) -> dict[str, Any]:
    """What a run's numbers depend on: the config as a dict without where things are (``out_dir``,
    ``data.data_dir``) and how fast they run (``train.progress``, ``train.num_workers``).

    The one filter behind every training hash: ``train_run``'s ``run.json`` and the studies' model cache.
    """
    numbers = config_to_dict(cfg)
    del numbers["out_dir"], numbers["data"]["data_dir"], numbers["train"]["progress"], numbers["train"]["num_workers"]
    return numbers


def _recorded(cfg: RunConfig, run: BuiltRun) -> RunConfig:
    """``cfg`` with the method's resolved options (every default spelled out), as run.json records it."""
    if run.options is None or not dataclasses.is_dataclass(run.options):
        return cfg
    return dataclasses.replace(cfg, method_options=config_to_dict(run.options))


def _read_record(path: Path) -> dict[str, Any] | None:
    """A folder's ``run.json`` as a dict (None when absent); what the file holds is checked by the caller."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    return data if isinstance(data, dict) else {}


def check_train_folder(out_dir: Path) -> None:
    """Refuse, before any work, an output folder that is not this kind of run's: a file, the results of
    ``xairepro reproduce``, or a non-empty folder without a training record.  (A folder holding another
    training run is refused by :func:`train_run` once the run's config hash is known.)"""
    where = f"output folder {str(out_dir)!r}"
    check_output_folder_path(out_dir)
    if not out_dir.is_dir():
        return
    record = _read_record(out_dir / "run.json")
    if record is None:
        if any(out_dir.iterdir()):
            raise UsageError(f"{where} is not empty and holds no xairepro training run; choose a new or empty "
                             "folder")
        return
    if "experiments" in record and "config_hash" not in record:
        raise UsageError(f"{where} holds the results of `xairepro reproduce`; choose another --out")
    if not isinstance(record.get("config_hash"), str):
        raise UsageError(f"{where} holds a run.json that is not an xairepro training record; choose another --out")


def train_run(cfg: RunConfig, *, progress: bool | None = None) -> RunOutcome:
    """Build, train (resuming from ``out_dir`` when it holds this run), test, save ``out_dir/model.pt``.

    ``cfg`` is not changed (``progress`` overrides ``cfg.train.progress`` for this call).  An ``out_dir``
    holding anything else (another training run, whether or not its resume state is still there; the
    results of ``xairepro reproduce``; other files) raises a :class:`UsageError` (:class:`ConfigError` for
    another run) before any file in it is touched.
    """
    if progress is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=progress))
    out_dir = Path(cfg.out_dir)
    check_train_folder(out_dir)
    run = build_run(cfg)
    cfg = _recorded(cfg, run)
    run_hash = config_hash(run_numbers(cfg))
    record = out_dir / "run.json"
    previous = _read_record(record)
    if previous is not None and previous.get("config_hash") != run_hash:
        raise ConfigError(f"output folder {str(out_dir)!r} holds another training run; use another --out "
                          "or delete that folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"config_hash": run_hash, "config": config_to_dict(cfg)}, indent=2))
    engine = Engine(cfg.train, out_dir)
    result = engine.fit(run.model, run.objective, run.train, run.val)
    test = engine.evaluate(run.model, run.objective, run.test)
    info = run.info
    path = save_model(out_dir / "model.pt", run.model, dataset=cfg.data.name, data_options=dict(cfg.data.options),
                      data_seed=cfg.data.seed, class_names=list(info.class_names or []),
                      mean=list(info.mean or []), std=list(info.std or []),
                      method=cfg.method, config_hash=run_hash)
    outcome = RunOutcome(run, result, test, path, out_dir)
    atomic_write_text(out_dir / "metrics.json", json.dumps({"metrics": outcome.metrics, "history": result.history},
                                                           indent=2))
    return outcome


# ------------------------------------------------------------------------------- a model's training data
@dataclass(frozen=True)
class DataRecord:
    """The data a saved model was trained on: data set ``name``, split ``seed``, loader ``options`` (as
    given to the run, ``download`` left out), and ``source``: where the seed was read ("checkpoint",
    "run.json" beside it, or "assumed" = 0 for a model saved before the seed was recorded)."""

    name: str
    seed: int
    options: dict[str, Any]
    source: str


def checkpoint_run_record(path: str | Path, metadata: dict[str, Any]) -> DataRecord | None:
    """The training data of the model saved at ``path`` (``metadata``: its ``read_model_metadata``), or
    None for a model saved outside ``train_run`` (no data set recorded).

    The split seed is the model's own ``data_seed``; models saved before it was recorded take it from the
    ``run.json`` beside them when that file records the same run (same config hash).
    """
    name = metadata.get("dataset")
    if not isinstance(name, str) or not name:
        return None
    options = {k: v for k, v in dict(metadata.get("data_options") or {}).items() if k != "download"}
    if isinstance(metadata.get("data_seed"), int):
        return DataRecord(name, int(metadata["data_seed"]), options, "checkpoint")
    record = _read_record(Path(path).with_name("run.json")) or {}
    seed = ((record.get("config") or {}).get("data") or {}).get("seed")
    if record.get("config_hash") == metadata.get("config_hash") and isinstance(seed, int):
        return DataRecord(name, seed, options, "run.json")
    return DataRecord(name, 0, options, "assumed")
