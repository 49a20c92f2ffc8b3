"""ROAR for label-free explanations: remove the top-p% features of the training data and retrain.

For each attribution method and fraction p, the training inputs have their top-p% positions (ranked by
summed |attribution|, as in ``feature_consistency``) replaced, a copy of the model is retrained from
the same initial weights through ``xairepro.train.Engine``, and its loss on the unmodified test set
is reported.  If the explanations found the informative features, the test loss rises faster than
for Random removal.  Fraction 0 (no removal) and fraction 1 (every feature removed: the same training
data whatever the ranking) are each trained once and shared by all methods.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.metrics.consistency import (
    _channel_dim,
    _replacement,
    _scores_for,
    check_fractions,
    mask_inputs,
    n_masked,
    random_attributions,
    rank_positions,
)

#: The original ROAR test's fractions of removed pixels, plus 0 (the unmodified training set).
ROAR_FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.5, 0.7, 1.0)


@dataclass
class RoarResult:
    """Test loss per method and fraction removed: ``test_loss[method]`` is aligned with ``fractions``."""

    fractions: list[float]
    test_loss: dict[str, list[float]]
    metric: str = "loss"
    histories: dict[str, list[list[dict[str, float]]]] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows: ``{"method", "fraction", "test_loss"}``."""
        return [{"method": m, "fraction": f, "test_loss": v}
                for m, losses in self.test_loss.items() for f, v in zip(self.fractions, losses)]


def removed_inputs(x: Tensor, attributions: Tensor, fraction: float,
                   replacement: str | Tensor | float = "zeros") -> Tensor:
    """``x`` with its top-``fraction`` positions (by summed |attribution|) replaced; a new tensor."""
    scores = _scores_for(x, attributions)
    ranks = rank_positions(scores)
    dim = _channel_dim(x.ndim)
    spatial = [s for i, s in enumerate(x.shape[1:], start=1) if i != dim]
    masks = (ranks < n_masked(fraction, scores.shape[1])).reshape(x.shape[0], *spatial)
    return mask_inputs(x, masks, _replacement(x, replacement))


def roar(model: nn.Module, objective: Any, x_train: Tensor, x_test: Tensor,
         attributions: Mapping[str, Tensor | str], fractions: Sequence[float] = ROAR_FRACTIONS, *,
         train_config: Any = None, initial_state: Mapping[str, Tensor] | None = None,
         y_train: Tensor | None = None, y_test: Tensor | None = None,
         replacement: str | Tensor | float = "zeros", out_dir: str | Path | None = None,
         seed: int | None = 0, metric: str = "loss") -> RoarResult:
    """Retrain from ``initial_state`` on training data with the top-p% features removed; test loss.

    ``attributions``: method name -> attributions of ``x_train`` (shaped like it or like its positions),
    or ``"random"`` for the Random control (drawn with ``seed``).  ``initial_state``: the weights every
    retraining starts from (default: ``model``'s current weights); ``model`` itself is not modified.
    ``train_config``: an ``xairepro.train.TrainConfig``; ``out_dir``: one engine folder per run
    (``<method>/p<percent>``), so an interrupted ROAR resumes.  ``metric``: the key of
    ``Engine.evaluate`` reported.  Returns a ``RoarResult``.
    """
    from xairepro.train import Engine, TrainConfig  # lazy: importing xairepro.metrics must not load lightning

    values = check_fractions(fractions)
    if not attributions:
        raise UsageError("attributions is empty; give at least one method, e.g. {'Random': 'random'}")
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0:
            raise UsageError(f"{name} must be a non-empty batch tensor")
    if tuple(x_train.shape[1:]) != tuple(x_test.shape[1:]):
        raise UsageError(f"x_train examples are {tuple(x_train.shape[1:])} but x_test examples are "
                         f"{tuple(x_test.shape[1:])}")
    cfg = train_config if train_config is not None else TrainConfig()
    start = {k: v.detach().clone() for k, v in (initial_state or model.state_dict()).items()}
    test_data = (x_test,) if y_test is None else (x_test, y_test)
    scores = {name: _scores_for(x_train, random_attributions(x_train, seed) if isinstance(a, str) and
                                a == "random" else _check_attr(name, a)) for name, a in attributions.items()}

    def train_and_test(x: Tensor, folder: str) -> tuple[float, list[dict[str, float]]]:
        net = copy.deepcopy(model)
        net.load_state_dict(start)
        engine = Engine(cfg, out_dir=Path(out_dir) / folder if out_dir is not None else None)
        result = engine.fit(net, objective, (x,) if y_train is None else (x, y_train))
        metrics = engine.evaluate(net, objective, test_data)
        if metric not in metrics:
            raise UsageError(f"the objective reports {sorted(metrics)}, not {metric!r}")
        return float(metrics[metric]), result.history

    losses: dict[str, list[float]] = {name: [] for name in attributions}
    histories: dict[str, list[list[dict[str, float]]]] = {name: [] for name in attributions}
    shared: dict[str, tuple[float, list[dict[str, float]]]] = {}   # "unmodified", "all-removed"
    for name, method_scores in scores.items():
        ranks = rank_positions(method_scores)
        dim = _channel_dim(x_train.ndim)
        spatial = [s for i, s in enumerate(x_train.shape[1:], start=1) if i != dim]
        repl = _replacement(x_train, replacement)
        for fraction in values:
            m = n_masked(fraction, method_scores.shape[1])
            if m == 0:
                if "unmodified" not in shared:
                    shared["unmodified"] = train_and_test(x_train, "unmodified")
                loss, history = shared["unmodified"]
            elif m == method_scores.shape[1]:
                if "all-removed" not in shared:
                    masks = torch.ones(x_train.shape[0], *spatial, dtype=torch.bool, device=x_train.device)
                    shared["all-removed"] = train_and_test(mask_inputs(x_train, masks, repl), "all-removed")
                loss, history = shared["all-removed"]
            else:
                masks = (ranks < m).reshape(x_train.shape[0], *spatial)
                folder = f"{_safe(name)}/p{round(100 * fraction, 3):g}"
                loss, history = train_and_test(mask_inputs(x_train, masks, repl), folder)
            losses[name].append(loss)
            histories[name].append(history)
    return RoarResult(fractions=values, test_loss=losses, metric=metric, histories=histories)


def _check_attr(name: str, a: Any) -> Tensor:
    if not isinstance(a, Tensor):
        raise UsageError(f"attributions[{name!r}] must be a tensor or 'random', got {a!r}")
    return a


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "method"


__all__ = ["ROAR_FRACTIONS", "RoarResult", "roar", "removed_inputs"]
