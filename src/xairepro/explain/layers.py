"""The layer a CAM-style explainer reads, and one activation/gradient capture of it.

``resolve_layer`` finds the module (given, by dotted name, or the model's ``cam_layer``);
``activations_and_gradients`` runs one forward and one backward and returns its activations and the
gradient of the target class score with respect to them.
"""

from __future__ import annotations

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import Target, resolve_targets

__all__ = ["resolve_layer", "activations_and_gradients"]


def resolve_layer(model: nn.Module, target_layer: nn.Module | str | None) -> nn.Module:
    """The module to explain: given, looked up by dotted name, or the model's ``cam_layer``."""
    if isinstance(target_layer, nn.Module):
        if not any(m is target_layer for m in model.modules()):
            raise UsageError("target_layer is not a submodule of the model")
        return target_layer
    if isinstance(target_layer, str):
        try:
            return model.get_submodule(target_layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            raise UsageError(f"model has no layer {target_layer!r}; layers: {', '.join(names[:20])}"
                             + (" ..." if len(names) > 20 else "")) from None
    if target_layer is None:
        layer = getattr(model, "cam_layer", None)
        if isinstance(layer, nn.Module):
            return layer
        raise UsageError("no target_layer given and the model has no `cam_layer`; pass the conv layer "
                         "(module or dotted name) whose activations the CAM should use")
    raise UsageError(f"target_layer must be a module, a dotted name or None, got {type(target_layer).__name__}")


def activations_and_gradients(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and one backward: (activations (B, K, h, w), d logit_t / d activations, logits, t).

    The gradient is taken with ``torch.autograd.grad`` so no parameter's ``.grad`` is touched; the
    forward hook is removed before returning, also after an exception.
    """
    store: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise UsageError(f"target layer output must be a (B, K, h, w) tensor, got "
                             f"{getattr(out, 'shape', type(out).__name__)}")
        store.append(out)

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)
            logits = model(inp)
            if not store:
                raise UsageError("the target layer was not used in the model's forward pass")
            act = store[-1]
            t = resolve_targets(target, logits.detach(), x.shape[0], logits.device)
            score = logits.gather(1, t[:, None]).sum()
            (grad,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
        store.clear()
    return act.detach(), grad.detach(), logits.detach(), t
