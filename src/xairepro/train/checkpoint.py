"""Checkpoint files: atomic writes, ``weights_only=True`` loads, errors in the user's terms.

Three kinds, each a dict of tensors and plain containers with a ``format`` tag:

- ``xairepro-model`` (``save_model``/``load_model``): the model's ``config`` (to rebuild it through
  ``xairepro.models.model_from_config``), its ``state_dict`` and free ``metadata`` (data set, class
  names, normalisation, method ...);
- ``xairepro-epoch`` (``out_dir/checkpoints/epoch_XXXX.pt``): ``model`` weights after that epoch (the
  training trajectory TracIn reads), ``epoch``, ``lr``, and ``ema`` weights when EMA is on;
- ``xairepro-train-state`` (``out_dir/last.pt``): everything the engine needs to resume.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xairepro.errors import CheckpointError, UsageError
from xairepro.models import model_from_config
from xairepro.utils import atomic_torch_save

__all__ = [
    "load_checkpoint", "save_model", "load_model", "read_model_metadata", "checkpoint_weights",
    "MODEL_FORMAT", "EPOCH_FORMAT", "STATE_FORMAT",
]

MODEL_FORMAT = "xairepro-model"
EPOCH_FORMAT = "xairepro-epoch"
STATE_FORMAT = "xairepro-train-state"
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value: Any, where: str) -> Any:
    """Return ``value`` with tuples kept; raise ``TypeError`` for anything ``weights_only`` cannot load."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {str(k): _check_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_check_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold only tensors, numbers, strings, "
                    "lists and dicts")


def load_checkpoint(path: str | os.PathLike[str], *, expect: str | None = None,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; any failure is a :class:`CheckpointError`.

    ``expect``: the ``format`` tag it must carry (``None``: any xairepro checkpoint).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: the error says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling, zip and EOF errors all mean "corrupted"
        raise CheckpointError(_load_failure(path, exc)) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("format"), str):
        raise CheckpointError(f"checkpoint {str(path)!r} is not an xairepro checkpoint")
    if expect is not None and obj["format"] != expect:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {obj['format']!r}, expected a {expect!r}")
    return obj


def _load_failure(path: Path, exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a line.

    PyTorch's own message advises retrying with ``weights_only=False``: for a file of unknown origin that
    is the unsafe choice (it runs whatever code the file holds), so that advice is not passed on.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"checkpoint {str(path)!r} holds Python objects ({found.group(1)}) that a safe load refuses; "
                "xairepro checkpoints hold only tensors, numbers, strings, lists and dicts")
    if "weights only load failed" in text.lower() or "unpickl" in text.lower():
        detail = "unreadable pickle data"
    elif "zip archive" in text or "central directory" in text:
        detail = "damaged or truncated zip archive"
    else:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        detail = first[:160]
    return f"checkpoint {str(path)!r} is corrupted or not a PyTorch checkpoint ({detail})"


def checkpoint_weights(path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
                       ) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` stored in an epoch checkpoint, a model file or a resume state."""
    obj = load_checkpoint(path, map_location=map_location)
    key = "state_dict" if obj["format"] == MODEL_FORMAT else "model"
    weights = obj.get(key)
    if not isinstance(weights, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no model weights")
    return weights


def save_model(path: str | os.PathLike[str], model: nn.Module, **metadata: Any) -> Path:
    """Write ``model`` (its ``config`` and weights) and ``metadata`` to ``path`` atomically.

    ``model.config`` (set by ``xairepro.models.build_model``) must be present; metadata values must be
    numbers, strings, lists, dicts or tensors.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping) or "name" not in config:
        raise UsageError(f"cannot save a {type(model).__name__}: it has no model.config; build it with "
                         "xairepro.models.build_model so that it can be rebuilt")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {
        "format": MODEL_FORMAT,
        "version": 1,
        "config": _check_plain(dict(config), "model.config"),
        "state_dict": state,
        "metadata": _check_plain(dict(metadata), "metadata"),
    }
    return atomic_torch_save(obj, path)


def read_model_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata`` and ``config`` of a saved model, without building it."""
    obj = load_checkpoint(path, expect=MODEL_FORMAT)
    return {"config": dict(obj["config"]), **dict(obj.get("metadata") or {})}


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model`, load its weights; returned in eval mode.

    The saved metadata is available as ``model.metadata`` (a dict).
    """
    obj = load_checkpoint(path, expect=MODEL_FORMAT, map_location=map_location)
    try:
        model = model_from_config(obj["config"])
    except UsageError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} describes a model that cannot be built: {exc}") from None
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"checkpoint {str(path)!r} does not match its model "
                              f"{obj['config'].get('name')!r}: {first[1].strip() if len(first) > 1 else first[0]}"
                              ) from None
    model.to(map_location)
    model.eval()
    model.metadata = dict(obj.get("metadata") or {})
    return model
