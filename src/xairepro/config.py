"""Typed configuration: omegaconf structured dataclasses are the one source of defaults.

    cfg = resolve_config(TrainConfig, file="exp.yaml", overrides=["epochs=5", "optim.lr=0.1"])

returns a plain ``TrainConfig`` instance.  Unknown keys, wrong types and unparsable values
raise :class:`~xairepro.errors.ConfigError` with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xairepro.errors import ConfigError

T = TypeVar("T")

__all__ = ["MISSING", "resolve_config", "config_to_dict", "config_hash", "config_has_key", "parse_overrides"]


def parse_overrides(overrides: Sequence[str]) -> list[str]:
    """Check ``key=value`` syntax of CLI overrides; return them unchanged."""
    out = []
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        out.append(item)
    return out


def _one_line(exc: OmegaConfBaseException) -> str:
    msg = str(exc).strip().splitlines()[0]
    key = getattr(exc, "full_key", None)
    if key and key not in msg:
        msg = f"{key}: {msg}"
    return msg


def _open_free_dicts(node: DictConfig) -> None:
    """Let ``dict[str, Any]`` fields (free option maps such as model kwargs) take new keys under struct mode."""
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            if child._metadata.object_type in (dict, None):
                OmegaConf.set_struct(child, False)
            else:
                _open_free_dicts(child)


def _node_at(cfg: DictConfig, key: str) -> Any:
    """The node of dotted ``key`` in ``cfg`` (None when a part is missing); never raises."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node._get_node(part)
    return node


def _override_error(cfg: DictConfig, item: str, exc: Exception) -> ConfigError:
    """``--set key=value`` that does not fit the schema, explained in the schema's terms."""
    key, _, value = (part.strip() for part in item.partition("="))
    target = _node_at(cfg, key)
    parent = _node_at(cfg, key.rpartition(".")[0]) if "." in key else None
    if isinstance(target, ListConfig) and not value.startswith("["):
        reason = f"{key} is a list; write it as {key}=[0,1] (got {value!r})"
    elif isinstance(target, DictConfig) and not value.startswith("{"):
        reason = f"{key} is a section; set one of its keys, e.g. {key}.{next(iter(target.keys()), 'KEY')}=..."
    elif isinstance(parent, ListConfig):
        reason = f"{key.rpartition('.')[0]} is a list; write it whole, e.g. {key.rpartition('.')[0]}=[0,1]"
    elif isinstance(exc, OmegaConfBaseException):
        reason = _one_line(exc)
    else:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"invalid configuration: --set {item}: {reason}")


def _load_yaml(path: Path) -> DictConfig:
    """A YAML config file as a DictConfig; syntax errors name the file, line and column."""
    import yaml

    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        loaded = OmegaConf.load(path)
    except yaml.MarkedYAMLError as exc:
        def at(mark: Any) -> str:
            return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"

        context = f" ({exc.context} from {at(exc.context_mark)})" if exc.context else ""
        raise ConfigError(f"config file {str(path)!r}: YAML syntax error at {at(exc.problem_mark)}: "
                          f"{exc.problem}{context}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not readable YAML ({type(exc).__name__})") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys (such as 'train:'), "
                          f"not a {type(loaded).__name__.removesuffix('Config').lower()}")
    return loaded


def resolve_config(
    schema: type[T] | T,
    *,
    file: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> T:
    """Merge defaults (``schema``), a YAML ``file``, a mapping of ``values`` and dotted ``overrides``.

    Later sources win.  Returns an instance of the schema's dataclass with every field typed.
    """
    try:
        cfg: DictConfig = OmegaConf.structured(schema)
        OmegaConf.set_struct(cfg, True)
        _open_free_dicts(cfg)
        if file is not None:
            path = Path(file)
            loaded = _load_yaml(path)
            try:
                cfg = OmegaConf.merge(cfg, loaded)
            except OmegaConfBaseException as exc:
                raise ConfigError(f"invalid configuration in {str(path)!r}: {_one_line(exc)}") from None
        if values:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(dict(values)))
        for item in parse_overrides(overrides):  # one at a time: an error names its --set item
            try:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
            except (OmegaConfBaseException, ValueError, TypeError) as exc:
                raise _override_error(cfg, item, exc) from None
        obj = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid configuration: {_one_line(exc)}") from None
    except Exception as exc:  # yaml syntax errors and the like
        raise ConfigError(f"invalid configuration: {str(exc).strip().splitlines()[0]}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj  # type: ignore[return-value]


def config_has_key(schema: Any, key: str) -> bool:
    """Whether dotted ``key`` names a value of ``schema`` (a dataclass type or instance); every key below
    a free map (a ``dict[str, Any]`` field such as model kwargs) counts."""
    node: Any = OmegaConf.structured(schema)
    for part in key.strip().split("."):
        if not isinstance(node, DictConfig):
            return False
        if part not in node:
            return node._metadata.object_type in (dict, None)
        node = node._get_node(part)
    return True


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config (enums as their values, paths as strings)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        raw = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    elif isinstance(cfg, DictConfig):
        raw = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    elif isinstance(cfg, Mapping):
        raw = dict(cfg)
    else:
        raise TypeError(f"cannot turn {type(cfg).__name__} into a config dict")
    return json.loads(json.dumps(raw, default=str, sort_keys=True))


def config_hash(cfg: Any, length: int = 16) -> str:
    """Stable hex hash of a config's resolved values (key order and Python hash seed do not matter)."""
    blob = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
