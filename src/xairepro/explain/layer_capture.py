"""Per-example inputs and output gradients of ``nn.Linear`` / ``nn.Conv2d`` layers, captured by hooks.

A tracked layer computes y_t = W a_t (+ b) at T positions t (T = 1 for a linear layer on (B, d) inputs;
the tokens of a (B, ..., d) input; the output pixels of a convolution, a_t = the unfolded input patch).
With s_t = d loss_n / d y_t, the per-example gradient of the layer is

    G_n = sum_t s_nt a_ntᵀ     (out, in'),  [dW | db],  a extended by a constant 1 when the bias is tracked,

which is all Kronecker-factored curvature needs: one forward and one backward of the summed loss give
a (B, T, in') and s (B, T, out) for every tracked layer.  A layer called several times in one forward
contributes each call's positions (they are concatenated along T).  ``loss_fn`` must treat the examples
of a batch independently (eval mode), as it must for every per-example method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.explain.examples import Examples, count
from xairepro.explain.per_example_grads import LossFn, check_loss_shape

__all__ = ["TrackedLayer", "tracked_layers", "capture_terms", "layer_gradients", "flat_gradients"]


@dataclass(frozen=True)
class TrackedLayer:
    """One tracked layer: its module name, the module, and which of its parameters are tracked."""

    name: str
    module: nn.Module
    bias: bool

    @property
    def out_dim(self) -> int:
        return int(self.module.weight.shape[0])

    @property
    def in_dim(self) -> int:
        """Columns of the layer's gradient matrix: in_features (x kernel size) + 1 with a tracked bias."""
        return int(self.module.weight[0].numel()) + int(self.bias)

    @property
    def param_names(self) -> list[str]:
        prefix = f"{self.name}." if self.name else ""
        return [f"{prefix}weight"] + ([f"{prefix}bias"] if self.bias else [])


def tracked_layers(model: nn.Module, names: list[str]) -> tuple[list[TrackedLayer], list[str]]:
    """The ``nn.Linear`` / ``nn.Conv2d`` layers whose weight is among ``names`` (model order), and the names
    of the chosen parameters they leave out (other layer types, a bias whose weight is not chosen)."""
    chosen = set(names)
    layers, covered = [], set()
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        prefix = f"{name}." if name else ""
        if f"{prefix}weight" not in chosen:
            continue
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise UsageError(f"layer {name!r}: grouped convolutions (groups={module.groups}) are not supported "
                             "by Kronecker-factored curvature; leave its parameters out of params")
        layer = TrackedLayer(name, module, module.bias is not None and f"{prefix}bias" in chosen)
        layers.append(layer)
        covered.update(layer.param_names)
    return layers, [n for n in names if n not in covered]


def _layer_input(layer: TrackedLayer, x: Tensor) -> Tensor:
    """(B, T, in') inputs of one call: tokens of a linear layer, unfolded patches of a convolution."""
    m = layer.module
    if isinstance(m, nn.Conv2d):
        if x.dim() != 4:
            raise UsageError(f"layer {layer.name!r}: expected a batched (B, C, H, W) input, got {tuple(x.shape)}")
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
            x = F.pad(x, m._reversed_padding_repeated_twice, mode=mode)
            padding: tuple[int, ...] | int = 0
        else:
            padding = m.padding
        a = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=padding, stride=m.stride).transpose(1, 2)
    else:
        if x.dim() < 2:
            raise UsageError(f"layer {layer.name!r}: expected a batched (B, ..., d) input, got {tuple(x.shape)}")
        a = x.reshape(x.shape[0], -1, x.shape[-1])
    if layer.bias:
        a = torch.cat([a, a.new_ones(*a.shape[:2], 1)], dim=2)
    return a


def _output_grad(layer: TrackedLayer, g: Tensor) -> Tensor:
    """(B, T, out) gradients w.r.t. one call's output."""
    if isinstance(layer.module, nn.Conv2d):
        return g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2)
    return g.reshape(g.shape[0], -1, g.shape[-1])


def capture_terms(model: nn.Module, loss_fn: LossFn, layers: list[TrackedLayer], x: Examples
                  ) -> dict[str, tuple[Tensor, Tensor]]:
    """{layer name: (a (B, T, in'), s (B, T, out))} for one batch, from one forward and one backward.

    The caller sets eval mode; ``.grad`` of the parameters is not touched (``autograd.grad``).
    """
    calls: dict[str, list[tuple[Tensor, Tensor]]] = {layer.name: [] for layer in layers}
    by_module = {id(layer.module): layer for layer in layers}

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        layer = by_module[id(module)]
        calls[layer.name].append((inputs[0].detach(), output))

    handles = [layer.module.register_forward_hook(hook) for layer in layers]
    flags = [(layer.module.weight, layer.module.weight.requires_grad) for layer in layers]
    try:
        for weight, _ in flags:  # so that every tracked output is part of the graph
            weight.requires_grad_(True)
        with torch.enable_grad():
            losses = loss_fn(model, x)
            check_loss_shape(losses, count(x))
            outputs = [out for name in calls for _, out in calls[name]]
            missing = [name or "<model>" for name, c in calls.items() if not c]
            if missing:
                raise UsageError(f"tracked layer(s) {', '.join(missing)} were not called in the forward pass "
                                 "(a layer used through its weight directly, e.g. attention's out_proj, cannot "
                                 "be tracked); leave their parameters out of params")
            grads = torch.autograd.grad(losses.sum(), outputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
        for weight, flag in flags:
            weight.requires_grad_(flag)
    terms: dict[str, tuple[Tensor, Tensor]] = {}
    k = 0
    for layer in layers:
        a_parts, s_parts = [], []
        for x_in, out in calls[layer.name]:
            g = grads[k] if grads[k] is not None else torch.zeros_like(out)
            k += 1
            a_parts.append(_layer_input(layer, x_in))
            s_parts.append(_output_grad(layer, g.detach()))
        terms[layer.name] = (torch.cat(a_parts, dim=1), torch.cat(s_parts, dim=1))
    return terms


def layer_gradients(a: Tensor, s: Tensor) -> Tensor:
    """Per-example layer gradients G_n = sum_t s_nt a_ntᵀ: (B, out, in')."""
    return torch.einsum("bto,bti->boi", s, a)


def flat_gradients(layers: list[TrackedLayer], terms: Mapping[str, tuple[Tensor, Tensor]]) -> Tensor:
    """Per-example gradients (B, P) in the order of the layers' ``param_names`` (weight, then bias)."""
    parts = []
    for layer in layers:
        g = layer_gradients(*terms[layer.name])
        n_in = layer.in_dim - int(layer.bias)
        parts.append(g[:, :, :n_in].reshape(g.shape[0], -1))
        if layer.bias:
            parts.append(g[:, :, n_in])
    return torch.cat(parts, dim=1)
