"""Helpers shared by the saliency methods and the insertion/deletion metric.

Input checks in the user's terms, target resolution, per-image min-max normalisation, a batched
Gaussian blur in pixel space, target-layer lookup and one activation/gradient capture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError

Target = int | torch.Tensor | Sequence[int] | None


#: Forwards per batch when none is given: large on accelerators; cache-sized on the CPU, where 32
#: images of 32 px ran 1.3-3x faster per image than 256 for WRN-28-2 (docs/benchmarks.md).
GPU_BATCH_SIZE, CPU_BATCH_SIZE = 256, 32


def auto_batch_size(device: torch.device | str) -> int:
    """Default forwards per batch on ``device``: 32 on the CPU, 256 elsewhere."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else GPU_BATCH_SIZE


def batched_forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)`` for a batch of many perturbed images, in the fastest memory layout.

    On the CPU, 4-D inputs go in channels-last (NHWC): oneDNN's convolutions run about 10-30% faster
    per image than on NCHW at batch 32 (docs/benchmarks.md). The tensor's values and logical shape are
    the same; only float rounding in the convolutions can differ (~1e-6).
    """
    if images.device.type == "cpu" and images.ndim == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return model(images)


def check_images(x: torch.Tensor, name: str = "images", model: nn.Module | None = None) -> None:
    """Raise a one-line ``UsageError`` unless ``x`` is a non-empty finite float tensor (B, C, H, W)
    (of the floating dtype of ``model``'s weights when a model is given)."""
    if not isinstance(x, torch.Tensor):
        raise UsageError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise UsageError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise UsageError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise UsageError(f"{name} must be a float tensor, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise UsageError(f"{name} contain NaN or infinite values")
    params = model.parameters() if isinstance(model, nn.Module) else ()
    weight = next((p for p in params if p.is_floating_point()), None)
    if weight is not None and weight.dtype != x.dtype:
        raise UsageError(f"{name} are {str(x.dtype).removeprefix('torch.')} but the model's weights are "
                         f"{str(weight.dtype).removeprefix('torch.')}; convert one to the other "
                         f"(e.g. images.to({weight.dtype}))")


def check_maps(maps: torch.Tensor, images: torch.Tensor, name: str = "saliency") -> torch.Tensor:
    """Check that ``maps`` is (B, H, W) (or (B, 1, H, W)) for images (B, C, H, W); return it as (B, H, W)."""
    if not isinstance(maps, torch.Tensor):
        raise UsageError(f"{name} must be a tensor, got {type(maps).__name__}")
    b, _, h, w = images.shape
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3 or maps.shape[0] != b or tuple(maps.shape[1:]) != (h, w):
        raise UsageError(
            f"{name} has shape {tuple(maps.shape)} but images are {b} x {h} x {w} "
            f"(expected ({b}, {h}, {w}))")
    if maps.is_floating_point() and not bool(torch.isfinite(maps).all()):
        raise UsageError(f"{name} contains NaN or infinite values")
    return maps


def resolve_targets(target: Target, logits: torch.Tensor | None, batch: int,
                    device: torch.device, num_classes: int | None = None) -> torch.Tensor:
    """Class index per image as a LongTensor (B,) on ``device``.

    ``None`` -> ``logits.argmax(1)``; an int -> the same class for every image; a sequence or
    LongTensor of length B -> one class per image.  Out-of-range classes raise ``UsageError``.
    """
    if target is None:
        if logits is None:
            raise UsageError("target=None needs the model's predictions")
        return logits.argmax(dim=1).to(device)
    if isinstance(target, bool):
        raise UsageError(f"target must be an int or a LongTensor of class indices, got {target!r}")
    if isinstance(target, int):
        t = torch.full((batch,), int(target), dtype=torch.long, device=device)
    else:
        t = torch.as_tensor(target, device=device)
        if t.is_floating_point() or t.dtype == torch.bool:
            raise UsageError(f"target must hold integer class indices, got dtype {t.dtype}")
        t = t.long().reshape(-1) if t.dim() == 0 else t.long()
        if t.dim() == 1 and t.numel() == 1 and batch != 1:
            t = t.expand(batch)
        if t.dim() != 1 or t.numel() != batch:
            raise UsageError(f"target has shape {tuple(t.shape)} but there are {batch} images")
    if num_classes is None and logits is not None:
        num_classes = logits.shape[1]
    low, high = int(t.min()), int(t.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bad = low if low < 0 else high
        limit = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise UsageError(f"target class {bad} is out of range (the model has classes {limit})")
    return t


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1]: (s - min) / (max - min); a constant map becomes zeros.  (B, H, W)."""
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    out = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny),
                      torch.zeros_like(flat))
    return out.clamp_(0.0, 1.0).reshape(maps.shape)


def gaussian_kernel1d(kernel_size: int, sigma: float, device: torch.device | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian g_i = exp(-(i - c)^2 / (2 sigma^2)) / sum, c = (k - 1) / 2.  (k,)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise UsageError(f"blur kernel size must be an odd positive int, got {kernel_size}")
    if not sigma > 0:
        raise UsageError(f"blur sigma must be > 0, got {sigma}")
    pos = torch.arange(kernel_size, device=device, dtype=torch.float64) - (kernel_size - 1) / 2
    k = torch.exp(-pos.pow(2) / (2.0 * float(sigma) ** 2))
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of images (B, C, H, W) per channel, in pixel space.

    Borders are reflected (as torchvision's ``gaussian_blur``); when the image is too small for a
    reflection of ``kernel_size // 2`` pixels, the border is replicated instead.
    """
    if kernel_size == 1:
        return x.clone()
    b, c, h, w = x.shape
    k = gaussian_kernel1d(kernel_size, sigma, x.device, x.dtype)
    pad = kernel_size // 2
    mode = "reflect" if pad < h and pad < w else "replicate"
    y = F.pad(x.reshape(b * c, 1, h, w), (pad, pad, pad, pad), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


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
