"""LICO as an objective of the shared training engine: no loop of its own (SPEC 4, docs/design.md).

``loss(model, batch)`` calls ``model(x, y)`` on a :class:`~xairepro.lico.model.LICO` (so DDP and mixed
precision see an ordinary forward) and returns L = CE + alpha L_MM + beta L_OT with its terms as
metrics. All trainable parts (backbone, contexts, h_psi, tau) live in the LICO model, so ``modules()``
is empty and the engine's EMA and checkpoints cover them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.lico.model import LICO, LicoOutput
from xairepro.train.objectives import ObjectiveBase

__all__ = ["LicoObjective"]


def _check_lico(model: nn.Module) -> None:
    inner = model
    while not isinstance(inner, LICO) and isinstance(getattr(inner, "module", None), nn.Module):
        inner = inner.module  # engine wrappers (fabric, DDP) keep the model as .module
    if not isinstance(inner, LICO):
        raise UsageError(f"the LICO objective trains a xairepro.lico.LICO model, got {type(inner).__name__}; "
                         "wrap the classifier: LICO(backbone, class_names, config)")


class LicoObjective(ObjectiveBase):
    """Trains a LICO model; metrics: accuracy, ce, and mm / tau / ot when those terms are on."""

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if len(batch) < 2:
            raise UsageError("LICO needs labelled batches (x, y); this data set gives inputs only")
        _check_lico(model)
        x, y = batch[0], batch[1]
        out: LicoOutput = model(x, y)
        accuracy = (out.logits.detach().argmax(dim=1) == y).float().mean()
        return out.loss, {"accuracy": accuracy, **out.terms}
