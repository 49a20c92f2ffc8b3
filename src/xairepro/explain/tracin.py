"""TracIn (Pruthi et al. 2020), label-free: score = sum_c lr_c · G_test^c (G_train^c)ᵀ.

G^c = per-example gradients (N, P) of the label-free loss w.r.t. the chosen (encoder) parameters at
checkpoint c, computed with the checkpoint's weights substituted functionally: the caller's model is
never loaded into or modified.  Each checkpoint costs two batched gradient passes and one matrix product.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from xairepro.errors import CheckpointError, UsageError
from xairepro.explain.per_example_grads import (
    DEFAULT_BATCH_SIZE,
    LabelFreeLoss,
    LossFn,
    ParamsArg,
    compute_gradients,
    random_projection,
)
from xairepro.utils import preserved_state, progress

Checkpoint = Mapping[str, Tensor] | str | os.PathLike[str]

__all__ = ["TracIn", "load_state_dict"]

#: Keys under which training checkpoints commonly nest the model's state dict.
_NESTED_KEYS = ("model", "state_dict", "model_state", "model_state_dict")


def load_state_dict(checkpoint: Checkpoint) -> dict[str, Tensor]:
    """A model state dict from a state dict or a checkpoint file (plain, or nested under 'model' etc.)."""
    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {str(path)!r} does not exist")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
            raise CheckpointError(f"cannot load checkpoint {str(path)!r}: {str(exc).splitlines()[0]}") from None
        where = str(path)
    else:
        obj, where = checkpoint, "checkpoint"
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} is a {type(obj).__name__}, not a state dict")
    if obj and not all(isinstance(v, Tensor) for v in obj.values()):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                return dict(inner)
        raise CheckpointError(f"{where} holds no model state dict (looked at the top level and under "
                              f"{', '.join(repr(k) for k in _NESTED_KEYS)})")
    return dict(obj)


class TracIn:
    """TracIn scores over training checkpoints.

    ``checkpoints``: state dicts or checkpoint files of ``model`` (at least one; every parameter and
    buffer of the model must be present).  ``learning_rates``: one weight per checkpoint (default 1).
    ``projection_dim``: optional random projection of the gradients (same sketch for test and train).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, params: ParamsArg = None,
                 checkpoints: Sequence[Checkpoint] | None = None, learning_rates: Sequence[float] | None = None, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, projection_dim: int | None = None, seed: int | None = 0,
                 show_progress: bool = False) -> None:
        if checkpoints is None or isinstance(checkpoints, (str, os.PathLike, Mapping)):
            checkpoints = [] if checkpoints is None else [checkpoints]
        checkpoints = list(checkpoints)
        if not checkpoints:
            raise UsageError("TracIn needs at least one checkpoint (state dict or file); got none "
                             "(train with checkpoints, e.g. out_dir/checkpoints/epoch_*.pt)")
        if learning_rates is None:
            learning_rates = [1.0] * len(checkpoints)
        learning_rates = [float(lr) for lr in learning_rates]
        if len(learning_rates) != len(checkpoints):
            raise UsageError(f"learning_rates has {len(learning_rates)} values but there are "
                             f"{len(checkpoints)} checkpoints")
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.loss_fn = loss_fn
        self.names = LabelFreeLoss(model, loss_fn, params).names  # validates params now
        self.checkpoints = checkpoints
        self.learning_rates = learning_rates
        self.batch_size = batch_size
        self.projection_dim = projection_dim
        self.seed = seed
        self.show_progress = show_progress

    def _state(self, checkpoint: Checkpoint, index: int) -> dict[str, Tensor]:
        state = load_state_dict(checkpoint)
        expected = set(self.model.state_dict())
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise CheckpointError(f"checkpoint #{index} does not match the model: {detail}")
        return state

    def attribute(self, x_test: Tensor, x_train: Tensor) -> Tensor:
        """Scores (n_test, n_train) on ``x_test``'s device."""
        for x, what in ((x_test, "x_test"), (x_train, "x_train")):
            if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] == 0:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise UsageError(f"{what} has no examples ({shape}); n must be >= 1")
        scores: Tensor | None = None
        with preserved_state(self.model, eval_mode=True):
            pairs = list(zip(self.checkpoints, self.learning_rates))
            for c, (checkpoint, lr) in enumerate(progress(pairs, enabled=self.show_progress, desc="TracIn")):
                loss = LabelFreeLoss(self.model, self.loss_fn, self.names, state=self._state(checkpoint, c))
                proj = None
                if self.projection_dim is not None:
                    proj = random_projection(loss.n_params, self.projection_dim, self.seed, device=loss.device,
                                             dtype=loss.point()[self.names[0]].dtype)
                g_train = compute_gradients(loss, x_train, batch_size=self.batch_size, projection=proj)
                g_train = g_train.to(loss.device)
                part = torch.cat([compute_gradients(loss, x_test[i:i + self.batch_size], batch_size=self.batch_size,
                                                    projection=proj).to(loss.device) @ g_train.T
                                  for i in range(0, x_test.shape[0], self.batch_size)])
                scores = lr * part if scores is None else scores + lr * part
        assert scores is not None
        return scores.to(x_test.device)
