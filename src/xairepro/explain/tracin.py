"""TracIn (Pruthi et al. 2020), label-free: score = sum_c lr_c · G_test^c (G_train^c)ᵀ.

G^c = per-example gradients (N, P) of the label-free loss w.r.t. the chosen (encoder) parameters at
checkpoint c, computed with the checkpoint's weights substituted functionally: the caller's model is
never loaded into or modified.  Each checkpoint costs two batched gradient passes and one matrix product.
Sign and scale: a positive score means the SGD steps on the training example lowered the test loss;
lr_c · g_test·g_train is that first-order decrease for one step of batch size 1 at checkpoint c.
``attribute_to_file`` keeps the (projected) gradients in stores on disk and writes the scores in blocks:
sum_c lr_c Φ_test^c Φ_train^cᵀ = [lr_c Φ_test^c]_c · [Φ_train^c]_cᵀ, one product over the checkpoints' stores.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from xairepro.errors import CheckpointError, UsageError
from xairepro.explain.examples import Examples, check_examples, count, device_of, fingerprint, take
from xairepro.explain.per_example_grads import (
    DEFAULT_BATCH_SIZE,
    LabelFreeLoss,
    LossFn,
    ParamsArg,
    compute_gradients,
)
from xairepro.explain.projection import ProjectionKind, Projector
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
    ``projection_dim``: optional random projection of the gradients (same sketch for test and train;
    ``projection``: ``gaussian`` or sparse ``rademacher``, see ``xairepro.explain.projection``); required
    by ``attribute_to_file``.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, params: ParamsArg = None,
                 checkpoints: Sequence[Checkpoint] | None = None, learning_rates: Sequence[float] | None = None, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, projection_dim: int | None = None,
                 projection: ProjectionKind = "gaussian", seed: int | None = 0, show_progress: bool = False) -> None:
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
        self.projector = None
        if projection_dim is not None:
            self.projector = Projector(LabelFreeLoss(model, loss_fn, self.names).n_params, projection_dim,
                                       projection, seed)
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

    def _losses(self):
        """(checkpoint index, learning rate, loss at the checkpoint's weights) for every checkpoint."""
        for c, (checkpoint, lr) in enumerate(zip(self.checkpoints, self.learning_rates)):
            yield c, lr, LabelFreeLoss(self.model, self.loss_fn, self.names, state=self._state(checkpoint, c))

    def _grads(self, loss: LabelFreeLoss, x: Examples) -> Tensor:
        return compute_gradients(loss, x, batch_size=self.batch_size, projection=self.projector).to(loss.device)

    def attribute(self, x_test: Examples, x_train: Examples) -> Tensor:
        """Scores (n_test, n_train) on ``x_test``'s device."""
        check_examples(x_test, "x_test")
        check_examples(x_train, "x_train")
        scores: Tensor | None = None
        with preserved_state(self.model, eval_mode=True):
            for _, lr, loss in progress(self._losses(), enabled=self.show_progress, total=len(self.checkpoints),
                                        desc="TracIn"):
                g_train = self._grads(loss, x_train)
                part = torch.cat([self._grads(loss, take(x_test, slice(i, i + self.batch_size))) @ g_train.T
                                  for i in range(0, count(x_test), self.batch_size)])
                scores = lr * part if scores is None else scores + lr * part
        assert scores is not None
        return scores.to(device_of(x_test))

    def self_influence(self, x: Examples) -> Tensor:
        """sum_c lr_c ||g_n^c||² for every example (n,) (TracIn's self-influence)."""
        check_examples(x, "x")
        out: Tensor | None = None
        with preserved_state(self.model, eval_mode=True):
            for _, lr, loss in self._losses():
                part = lr * self._grads(loss, x).square().sum(1)
                out = part if out is None else out + part
        assert out is not None
        return out.to(device_of(x))

    def attribute_to_file(self, x_test: Examples, x_train: Examples, path: str | os.PathLike[str], *,
                          store_dir: str | os.PathLike[str] | None = None, train_block: int = 4096) -> Path:
        """Scores (n_test, n_train) written to the ``.npy`` file ``path`` block by block (needs projection_dim).

        The projected training gradients of every checkpoint go to a ``GradientStore`` in ``store_dir``
        (``None``: a temporary folder beside ``path``, removed afterwards); a store already built for the
        same checkpoint and examples is reused, and an interrupted run resumes.
        """
        from xairepro.explain.gradient_store import GradientStore, score_against_stores

        if self.projector is None:
            raise UsageError("attribute_to_file keeps projected gradients on disk: set projection_dim "
                             "(e.g. 1024) when creating TracIn")
        check_examples(x_test, "x_test")
        check_examples(x_train, "x_train")
        path = Path(path)
        if store_dir is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".stores-") as tmp:
                return self.attribute_to_file(x_test, x_train, path, store_dir=tmp, train_block=train_block)
        stores, queries = [], []
        with preserved_state(self.model, eval_mode=True):
            for c, lr, loss in self._losses():
                stores.append(GradientStore.build(Path(store_dir) / f"checkpoint_{c}", self.model, self.loss_fn,
                                                  x_train, self.names, projector=self.projector,
                                                  state=loss.values, batch_size=self.batch_size,
                                                  show_progress=self.show_progress))
                queries.append(lr * self._grads(loss, x_test).cpu())
        key = json.dumps({"stores": [s.meta for s in stores], "lrs": self.learning_rates,
                          "test": fingerprint(x_test)}, sort_keys=True)
        return score_against_stores(path, torch.cat(queries, dim=1).float(), stores, key=key,
                                    train_block=train_block, show_progress=self.show_progress)

