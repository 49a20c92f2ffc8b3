"""The model registry: ``build_model(name, **kwargs)``, ``list_models()``, ``register_model``.

    model = build_model("wrn-28-2", num_classes=10, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26])
    model.config            # {"name": "wrn-28-2", "num_classes": 10, ...}: every constructor option
    same = model_from_config(model.config)   # identical architecture; load_state_dict(strict=True) works

A name is either fixed (``"resnet18"``) or a pattern whose numbers become options (``"wrn-D-K"``:
any ``wrn-28-2``, ``wrn-40-4`` ...).  Unknown names and options raise :class:`UsageError`.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from xairepro.errors import UsageError

__all__ = ["ModelInfo", "register_model", "build_model", "list_models", "model_info", "model_from_config"]

KINDS = ("classifier", "autoencoder", "vae", "contrastive")

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """What the listing shows about one registered model.

    ``input_shape``: one example's default shape, (C, H, W) for images or (T, C) for series.
    ``example``: a name ``build_model`` accepts (differs from ``name`` for patterns like ``wrn-D-K``).
    ``options``: keyword options of ``build_model`` for this model; ``aliases``: other accepted names.
    """

    name: str
    kind: str
    description: str
    input_shape: tuple[int, ...] | None
    example: str
    options: tuple[str, ...]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    factory: Callable[..., nn.Module]
    pattern: re.Pattern[str] | None


_REGISTRY: dict[str, _Entry] = {}
_ALIASES: dict[str, str] = {}


def register_model(name: str, *, kind: str, description: str, input_shape: tuple[int, ...] | None,
                   pattern: str | None = None, example: str | None = None,
                   aliases: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorator registering ``factory(**options) -> nn.Module`` under ``name``.

    ``pattern``: a regular expression with named integer groups; a name matching it builds the model
    with those groups as options (e.g. ``r"wrn-(?P<depth>\\d+)-(?P<widen_factor>\\d+)"``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    key = name.lower()

    def decorate(factory: F) -> F:
        taken = [n for n in (key, *(a.lower() for a in aliases)) if n in _REGISTRY or n in _ALIASES]
        if taken:
            raise ValueError(f"a model named {taken[0]!r} is already registered")
        compiled = re.compile(pattern) if pattern is not None else None
        fixed = set(compiled.groupindex) if compiled is not None else set()
        options = tuple(p for p in inspect.signature(factory).parameters if p not in fixed)
        info = ModelInfo(name=name, kind=kind, description=description,
                         input_shape=tuple(input_shape) if input_shape is not None else None,
                         example=example or key, options=options, aliases=tuple(a.lower() for a in aliases))
        _REGISTRY[key] = _Entry(info=info, factory=factory, pattern=compiled)
        _ALIASES.update({a.lower(): key for a in aliases})
        return factory

    return decorate


def list_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    return [_REGISTRY[k].info for k in sorted(_REGISTRY)]


def _lookup(name: object) -> tuple[str, _Entry, dict[str, int]]:
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"a model name must be a non-empty string, got {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _REGISTRY and _REGISTRY[key].pattern is None:
        return key, _REGISTRY[key], {}
    for entry in _REGISTRY.values():
        if entry.pattern is not None:
            match = entry.pattern.fullmatch(key)
            if match:
                return key, entry, {k: int(v) for k, v in match.groupdict().items()}
    choices = [e.info.example for e in _REGISTRY.values()] + list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    valid = ", ".join(_REGISTRY[k].info.name for k in sorted(_REGISTRY))
    raise UsageError(f"unknown model {name!r}{hint} (valid models: {valid})")


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a model name (patterns resolved: ``"wrn-28-2"`` -> the ``wrn-D-K`` entry)."""
    return _lookup(name)[1].info


def _plain(value: Any) -> Any:
    """Config values as plain JSON/YAML types: tuples -> lists, tensors/numpy -> lists or numbers."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def build_model(name: str, *, seed: int | None = None, **options: Any) -> nn.Module:
    """Build a registered model; ``model.config`` records ``name`` and every option (defaults included).

    ``seed``: initialise the weights from this seed without touching the global RNG (``None``: use
    the global RNG as torch does).  Same seed, same weights.
    """
    key, entry, parsed = _lookup(name)
    allowed = entry.info.options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        fixed = [u for u in unknown if u in parsed]
        if fixed:
            raise UsageError(f"model {key!r}: {', '.join(fixed)} is set by the name, not as an option")
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"model {key!r} has no option {unknown[0]!r}{hint}; "
                         f"options: {', '.join(allowed) or 'none'}")
    bound = inspect.signature(entry.factory).bind(**parsed, **options)
    bound.apply_defaults()
    with _seeded(seed):
        model = entry.factory(*bound.args, **bound.kwargs)
    config = {"name": key}
    config.update({k: _plain(v) for k, v in bound.arguments.items() if k not in parsed})
    model.config = config
    return model


def model_from_config(config: Mapping[str, Any], *, seed: int | None = None) -> nn.Module:
    """Rebuild a model from its ``model.config`` (a mapping with ``name`` and the options)."""
    if not isinstance(config, Mapping):
        try:
            config = dict(config)  # e.g. an omegaconf DictConfig
        except (TypeError, ValueError):
            raise UsageError(f"a model config must be a mapping, got {type(config).__name__}") from None
    if "name" not in config:
        raise UsageError("a model config needs a 'name' (e.g. {'name': 'wrn-28-2', 'num_classes': 10})")
    options = {str(k): _plain(v) for k, v in config.items() if k != "name"}
    return build_model(config["name"], seed=seed, **options)
