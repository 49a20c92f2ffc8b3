"""Group-CAM (Zhang, Rao & Yang 2021): group score-weighted visual explanations.

For activations A (B, K, h, w) of the target layer and Grad-CAM weights w_k = mean_ij dy_c/dA_k:

    M_g   = ReLU(sum_{k in group g} w_k A_k)                 G contiguous channel groups (default 32)
    M_g   <- M_g where M_g > percentile_theta(M_g) else 0     denoising (theta = 70)
    M~_g  = minmax(upsample_bilinear(M_g, (H, W)))            in [0, 1]
    x_g   = x * M~_g + blur(x) * (1 - M~_g)                   blur substrate, pixel space
    a_g   = softmax(f(x_g))_c - softmax(f(blur(x)))_c         score from softmax differences
    S     = minmax(ReLU(sum_g a_g M~_g))                       (B, H, W) in [0, 1]

Images are explained ``batch_size`` at a time (None: 32 on the CPU, 256 on a GPU): one gradient pass, then
their B x G blended images scored as batched forwards of ``batch_size`` under inference mode.
A group whose upsampled map is constant gets a_g = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain.layers import activations_and_gradients, resolve_layer
from xairepro.imaging import (
    Target, auto_batch_size, batched_forward, check_images, gaussian_blur, normalize_maps, resolve_targets,
)
from xairepro.utils import preserved_state

__all__ = ["GroupCAM"]


class GroupCAM:
    """Group-CAM saliency: ``GroupCAM(model, target_layer)(x, target=None) -> (B, H, W)`` in [0, 1].

    ``blur_kernel``/``blur_sigma`` default to the authors' 51 / 50 (a near-uniform blur at 32 px);
    ``denoise_percentile=None`` switches the denoising off.
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module | str | None = None, *, groups: int = 32,
                 blur_kernel: int = 51, blur_sigma: float = 50.0, denoise_percentile: float | None = 70.0,
                 batch_size: int | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise UsageError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if groups < 1:
            raise UsageError(f"groups must be >= 1, got {groups}")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if denoise_percentile is not None and not 0.0 <= denoise_percentile < 100.0:
            raise UsageError(f"denoise_percentile must be in [0, 100) or None, got {denoise_percentile}")
        if blur_kernel < 1 or blur_kernel % 2 == 0 or not blur_sigma > 0:
            raise UsageError(f"blur needs an odd kernel >= 1 and sigma > 0, got {blur_kernel}, {blur_sigma}")
        self.model = model
        self.target_layer = resolve_layer(model, target_layer)
        self.groups = groups
        self.blur_kernel = blur_kernel
        self.blur_sigma = float(blur_sigma)
        self.denoise_percentile = denoise_percentile
        self.batch_size = batch_size

    def group_masks(self, activations: torch.Tensor, gradients: torch.Tensor, size: tuple[int, int]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Upsampled, min-max normalised group maps (B, G, H, W) and a (B, G) flag of non-constant maps."""
        b, k = activations.shape[:2]
        n_groups = min(self.groups, k)
        weighted = activations * gradients.mean(dim=(2, 3))[:, :, None, None]
        maps = torch.stack([g.sum(dim=1) for g in torch.tensor_split(weighted, n_groups, dim=1)], dim=1)
        maps = F.relu(maps)
        if self.denoise_percentile is not None:
            flat = maps.flatten(2)
            theta = torch.quantile(flat.to(torch.promote_types(flat.dtype, torch.float32)),
                                   self.denoise_percentile / 100.0, dim=2, keepdim=True).to(flat.dtype)
            maps = torch.where(flat > theta, flat, torch.zeros_like(flat)).view_as(maps)
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        flat = maps.flatten(2)
        low = flat.min(dim=2, keepdim=True).values
        span = flat.max(dim=2, keepdim=True).values - low
        valid = span[..., 0] > 0
        norm = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny),
                           torch.zeros_like(flat))
        return norm.view_as(maps), valid

    def __call__(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Saliency maps (B, H, W) in [0, 1] on ``x``'s device; ``target=None`` = predicted class.

        Images go ``batch_size`` at a time through the gradient pass and their blended images.
        """
        check_images(x, "GroupCAM", model=self.model)
        bs = self.batch_size or auto_batch_size(x.device)
        if x.shape[0] <= bs:
            return self._explain(x, target, bs)
        classes = None if target is None else resolve_targets(target, None, x.shape[0], x.device)
        return torch.cat([self._explain(x[i:i + bs], None if classes is None else classes[i:i + bs], bs)
                          for i in range(0, x.shape[0], bs)])

    def _explain(self, x: torch.Tensor, target: Target, bs: int) -> torch.Tensor:
        b, _, h, w = x.shape
        with preserved_state(self.model):
            acts, grads, _logits, t = activations_and_gradients(self.model, self.target_layer, x, target)
            masks, valid = self.group_masks(acts, grads, (h, w))           # (B, G, H, W), (B, G)
            n_groups = masks.shape[1]
            with torch.inference_mode():
                xs = x.detach()
                blurred = gaussian_blur(xs, self.blur_kernel, self.blur_sigma)
                base = torch.cat([self._probs(blurred[i:i + bs], t[i:i + bs]) for i in range(0, b, bs)])
                scores = torch.empty(b * n_groups, device=x.device, dtype=base.dtype)
                for start in range(0, b * n_groups, bs):
                    idx = torch.arange(start, min(start + bs, b * n_groups), device=x.device)
                    img, grp = idx // n_groups, idx % n_groups
                    m = masks[img, grp][:, None].to(xs.dtype)
                    blend = xs[img] * m + blurred[img] * (1.0 - m)
                    scores[idx] = self._probs(blend, t[img]) - base[img]
            scores = scores.view(b, n_groups) * valid.to(scores.dtype)
            saliency = F.relu(torch.einsum("bg,bghw->bhw", scores.to(masks.dtype), masks))
        return normalize_maps(saliency.float())

    def _probs(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logits = batched_forward(self.model, images)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return torch.softmax(logits, dim=1).gather(1, classes[:, None].to(logits.device))[:, 0]

    def __repr__(self) -> str:
        return (f"GroupCAM(groups={self.groups}, blur=({self.blur_kernel}, {self.blur_sigma}), "
                f"denoise_percentile={self.denoise_percentile})")
