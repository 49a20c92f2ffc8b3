"""Soft intersection over union of saliency maps and binary segmentation masks (SPEC 5).

    IoU(s, m) = sum(s * m) / sum(s + m - s * m),   s in [0, 1], m in {0, 1}

``reduction="image"``: one value per image (B,), NaN where the mask is empty.
``reduction="batch"``: sum of intersections / sum of unions over the images whose mask is not
empty (the LICO reproduction's pooled IoU); NaN when every mask is empty.
"""

from __future__ import annotations

import torch

from xairepro.errors import UsageError

__all__ = ["soft_iou"]

_TOLERANCE = 1e-6


def soft_iou(saliency: torch.Tensor, masks: torch.Tensor, reduction: str = "image") -> torch.Tensor:
    """Soft IoU of saliency (B, H, W) in [0, 1] and masks (B, H, W) bool or 0/1 -> (B,) or a scalar."""
    if reduction not in ("image", "batch"):
        raise UsageError(f"reduction must be 'image' or 'batch', got {reduction!r}")
    if not isinstance(saliency, torch.Tensor) or not isinstance(masks, torch.Tensor):
        raise UsageError("saliency and masks must be tensors")
    if saliency.dim() == 4 and saliency.shape[1] == 1:
        saliency = saliency[:, 0]
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if saliency.dim() != 3:
        raise UsageError(f"saliency must have shape (B, H, W), got {tuple(saliency.shape)}")
    if saliency.shape[0] == 0:
        raise UsageError("saliency is an empty batch")
    if tuple(masks.shape) != tuple(saliency.shape):
        raise UsageError(f"saliency has shape {tuple(saliency.shape)} but masks have shape {tuple(masks.shape)}")
    s = saliency.float()
    if not bool(torch.isfinite(s).all()):
        raise UsageError("saliency contains NaN or infinite values")
    if float(s.min()) < -_TOLERANCE or float(s.max()) > 1 + _TOLERANCE:
        raise UsageError(f"saliency must be in [0, 1] (got values in [{float(s.min()):.4g}, {float(s.max()):.4g}]); "
                         "normalise it first")
    s = s.clamp(0.0, 1.0)
    if masks.dtype == torch.bool:
        m = masks.to(device=s.device, dtype=s.dtype)
    else:
        m = masks.to(device=s.device, dtype=s.dtype)
        if not bool(((m == 0) | (m == 1)).all()):
            raise UsageError("masks must be binary (bool or 0/1 values)")
    inter = (s * m).flatten(1).sum(dim=1)
    union = (s + m - s * m).flatten(1).sum(dim=1)
    empty = m.flatten(1).sum(dim=1) == 0
    if reduction == "image":
        return torch.where(empty, torch.full_like(inter, float("nan")), inter / union.clamp_min(1e-12))
    keep = ~empty
    if not bool(keep.any()):
        return torch.tensor(float("nan"), device=s.device)
    return inter[keep].sum() / union[keep].sum()
