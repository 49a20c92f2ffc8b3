"""LICO as an objective of the shared training engine: no loop of its own (SPEC 4, docs/design.md).

Two ways to train, the same numbers:

- a :class:`~xairepro.lico.LICO` wrapper model: ``LicoObjective()``; ``loss`` calls ``model(x, y)``;
- a plain classifier: ``LicoObjective.for_model(model, class_names, config)`` owns the text branch
  (:class:`~xairepro.lico.alignment.LicoAlignment`, returned by ``modules()`` so the engine optimises,
  checkpoints and resumes it); ``loss`` runs ``model(x)`` once and takes the last stage from a forward
  hook on ``model.cam_layer`` (whose output is ``forward_features(x)``). The trained model stays an
  ordinary classifier: the text branch is dropped at inference. ``xairepro train --set method=lico``
  takes this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.lico.alignment import LicoAlignment, LicoOutput, feature_token_shape
from xairepro.lico.config import LicoConfig
from xairepro.lico.model import LICO
from xairepro.lico.text_encoders import TextEncoder
from xairepro.train.objectives import ObjectiveBase
from xairepro.utils import preserved_state

__all__ = ["LicoObjective"]


def _is_wrapper(model: nn.Module) -> bool:
    """The engine's wrappers (fabric, DDP, DataParallel), which keep the model as ``.module``."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return True
    try:
        from lightning_fabric.wrappers import is_wrapped
    except ImportError:  # pragma: no cover - a declared dependency
        return False
    return is_wrapped(model)


def _unwrap(model: nn.Module) -> nn.Module:
    inner = model
    while _is_wrapper(inner):
        inner = inner.module
    return inner


def _cam_layer(model: nn.Module) -> nn.Module | None:
    try:
        layer = getattr(model, "cam_layer", None)
    except NotImplementedError:
        return None
    return layer if isinstance(layer, nn.Module) else None


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Last stage (B, C, H, W) and logits (B, K) of a classifier from one forward.

    ``model`` may be wrapped by the engine; the call goes through the wrapper (precision, DDP) and a
    forward hook on ``cam_layer`` catches the feature map. Without a ``cam_layer`` the model's
    ``forward_features`` and ``forward_head`` are called directly.
    """
    inner = _unwrap(model)
    layer = _cam_layer(inner)
    if layer is None:
        features = inner.forward_features(x)
        return features, inner.forward_head(features)
    caught: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: caught.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    if len(caught) != 1:
        raise UsageError(f"{type(inner).__name__}.cam_layer ran {len(caught)} times in one forward; LICO needs "
                         "it to run once and give forward_features(x)")
    return caught[0], logits


def _check_cam_layer(model: nn.Module, input_shape: Sequence[int]) -> None:
    """The hook must catch exactly ``forward_features(x)``: compare both on a probe (eval mode, no grad)."""
    if _cam_layer(model) is None:
        return
    device = next(iter(model.parameters()), torch.zeros(())).device
    x = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    with preserved_state(model, eval_mode=True), torch.no_grad():
        direct = model.forward_features(x)
        hooked, _ = features_and_logits(model, x)
    if hooked.shape != direct.shape or not torch.allclose(hooked, direct):
        raise UsageError(f"{type(model).__name__}.cam_layer does not output forward_features(x) "
                         f"({tuple(hooked.shape)} vs {tuple(direct.shape)}); LICO takes the last stage from it")


class LicoObjective(ObjectiveBase):
    """Trains with L = CE + alpha L_MM + beta L_OT; metrics: accuracy, ce, and mm / tau / ot when on."""

    def __init__(self, alignment: LicoAlignment | None = None) -> None:
        self.alignment = alignment

    @classmethod
    def for_model(cls, model: nn.Module, class_names: Sequence[str], config: LicoConfig | None = None, *,
                  input_shape: Sequence[int] | None = None, text_encoder: TextEncoder | None = None,
                  seed: int = 0) -> LicoObjective:
        """The objective for a plain classifier, owning the text branch sized for ``input_shape`` (C, H, W)."""
        num_classes = getattr(model, "num_classes", None)
        if isinstance(num_classes, int) and len(class_names) != num_classes:
            raise UsageError(f"got {len(class_names)} class names for a model with {num_classes} classes; "
                             "give one name per class, in the data set's label order")
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        _, token_dim = feature_token_shape(model, shape)
        _check_cam_layer(model, tuple(int(s) for s in shape))
        return cls(LicoAlignment(class_names, token_dim, config, text_encoder=text_encoder, seed=seed))

    def modules(self) -> list[nn.Module]:
        return [self.alignment] if self.alignment is not None else []

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if len(batch) < 2:
            raise UsageError("LICO needs labelled batches (x, y); this data set gives inputs only")
        x, y = batch[0], batch[1]
        inner = _unwrap(model)
        if isinstance(inner, LICO):
            if self.alignment is not None:
                raise UsageError("this LICO model carries its own text branch: train it with LicoObjective()")
            out: LicoOutput = model(x, y)
        elif self.alignment is None:
            raise UsageError(f"the LICO objective needs a text branch for {type(inner).__name__}: use "
                             "LicoObjective.for_model(model, class_names, config) or wrap it in LICO(...)")
        else:
            features, logits = features_and_logits(model, x)
            out = self.alignment(features, logits, y)
        accuracy = (out.logits.detach().argmax(dim=1) == y).float().mean()
        return out.loss, {"accuracy": accuracy, **out.terms}

    def __repr__(self) -> str:
        owned = "wrapper model" if self.alignment is None else f"text branch {self.alignment.describe()['lico']}"
        return f"LicoObjective({owned})"

