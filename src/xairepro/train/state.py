"""The engine's resumable state: what ``out_dir/last.pt`` holds and how it is written and read back.

``last.pt`` (format ``xairepro-train-state``): completed ``epoch``, ``model``, ``optimizer``, ``ema``,
``objective`` and its ``extras`` modules, ``history``, ``early_stopping``, ``stopped``, the names of the
kept ``checkpoints`` and the hash of the training config.  No RNG state is needed: the engine derives
every epoch's randomness from (seed, epoch).  ``best.pt`` holds the best evaluated weights when early
stopping restores them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xairepro.config import config_to_dict
from xairepro.errors import CheckpointError
from xairepro.train.checkpoint import EPOCH_FORMAT, STATE_FORMAT, load_checkpoint
from xairepro.train.config import TrainConfig
from xairepro.train.early_stopping import EarlyStopping
from xairepro.train.ema import EMA
from xairepro.utils import atomic_torch_save

__all__ = ["RunState", "resume_hash", "save_run_state", "load_run_state", "save_epoch_checkpoint", "save_best"]

#: Config fields that do not change the numbers of a run, so a resume may differ in them.
_NOT_HASHED = ("progress", "num_workers")


@dataclass
class RunState:
    """Mutable state of one run (what ``last.pt`` stores besides the model and optimiser)."""

    ema: EMA | None = None
    stopper: EarlyStopping | None = None
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    stopped: bool = False
    best_state: dict[str, Tensor] | None = None


def resume_hash(cfg: TrainConfig) -> str:
    """Hash of the config fields that change the numbers (all but ``progress`` and ``num_workers``)."""
    values = {k: v for k, v in config_to_dict(cfg).items() if k not in _NOT_HASHED}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _cpu(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in state.items()}


def _extras_of(objective: Any) -> dict[str, Any]:
    return objective.state_dict() if callable(getattr(objective, "state_dict", None)) else {}


def save_run_state(out_dir: Path, cfg: TrainConfig, run: RunState, model: nn.Module, optimizer: torch.optim.Optimizer,
                   objective: Any, extras: list[nn.Module]) -> Path:
    """Write ``out_dir/last.pt`` atomically."""
    obj = {
        "format": STATE_FORMAT,
        "version": 1,
        "config_hash": resume_hash(cfg),
        "model_config": dict(getattr(model, "config", {}) or {}),
        "objective_type": type(objective).__qualname__,
        "epoch": run.epoch,
        "model": _cpu(model.state_dict()),
        "optimizer": optimizer.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "objective": _extras_of(objective),
        "extras": [_cpu(m.state_dict()) for m in extras],
        "history": list(run.history),
        "early_stopping": run.stopper.state_dict() if run.stopper is not None else None,
        "stopped": run.stopped,
        "checkpoints": list(run.checkpoints),
    }
    return atomic_torch_save(obj, out_dir / "last.pt")


def load_run_state(out_dir: Path, cfg: TrainConfig, run: RunState, model: nn.Module, optimizer: torch.optim.Optimizer,
                   objective: Any, extras: list[nn.Module]) -> None:
    """Restore a run from ``out_dir/last.pt`` into ``run``, the model, optimiser and objective.

    A checkpoint from another training config, model or objective raises :class:`CheckpointError`
    (the run is not silently restarted).
    """
    path = out_dir / "last.pt"
    obj = load_checkpoint(path, expect=STATE_FORMAT)
    where = f"{str(out_dir)!r}"
    if obj.get("config_hash") != resume_hash(cfg):
        raise CheckpointError(f"{where} holds a run with a different training config; resume it with the same "
                              "config, or use another output folder (or delete last.pt to start over)")
    saved_model = obj.get("model_config") or {}
    current = dict(getattr(model, "config", {}) or {})
    if saved_model and current and saved_model != current:
        raise CheckpointError(f"{where} holds a run of model {saved_model.get('name')!r} with other options than "
                              f"the model given ({current.get('name')!r}); use another output folder")
    if obj.get("objective_type") != type(objective).__qualname__:
        raise CheckpointError(f"{where} holds a run trained with {obj.get('objective_type')!r}, not "
                              f"{type(objective).__qualname__!r}; use another output folder")
    try:
        model.load_state_dict(obj["model"])
        optimizer.load_state_dict(obj["optimizer"])
        for module, sd in zip(extras, obj.get("extras") or []):
            module.load_state_dict(sd)
        if callable(getattr(objective, "load_state_dict", None)):
            objective.load_state_dict(obj.get("objective") or {})
        if run.ema is not None:
            if obj.get("ema") is None:
                raise KeyError("no EMA state")
            run.ema.load_state_dict(obj["ema"])
        if run.stopper is not None and obj.get("early_stopping") is not None:
            run.stopper.load_state_dict(obj["early_stopping"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{str(path)!r} does not match this model/optimiser: {first[:200]}") from None
    run.epoch = int(obj["epoch"])
    run.history = [dict(r) for r in obj.get("history") or []]
    run.checkpoints = list(obj.get("checkpoints") or [])
    run.stopped = bool(obj.get("stopped"))
    if run.stopper is not None and run.stopper.best_epoch is not None and cfg.early_stopping.restore_best:
        best = load_checkpoint(out_dir / "best.pt", expect=EPOCH_FORMAT)
        run.best_state = best["model"]


def save_epoch_checkpoint(out_dir: Path, epoch: int, model: nn.Module, lr: float, ema: EMA | None) -> str:
    """Write ``checkpoints/epoch_XXXX.pt`` (weights after ``epoch``, kept for TracIn); return its name."""
    name = f"epoch_{epoch:04d}.pt"
    obj = {"format": EPOCH_FORMAT, "version": 1, "epoch": epoch, "lr": float(lr), "model": _cpu(model.state_dict()),
           "ema": ema.state_dict() if ema is not None else None}
    atomic_torch_save(obj, out_dir / "checkpoints" / name)
    return name


def save_best(out_dir: Path, epoch: int, weights: dict[str, Tensor]) -> Path:
    """Write ``best.pt``: the best evaluated weights so far."""
    obj = {"format": EPOCH_FORMAT, "version": 1, "epoch": epoch, "lr": 0.0, "model": _cpu(weights), "ema": None}
    return atomic_torch_save(obj, out_dir / "best.pt")
