"""Insertion and deletion (Petsiuk et al. 2018) with an explicit, recorded protocol (SPEC 5, 9).

Pixels are ranked by saliency once per image (descending; ties by pixel index).  With step p pixels,
n = ceil(HW / p) steps and r_k = min(k p, HW) replaced pixels after step k (the last step may be
partial), the image after step k is ``where(rank < r_k, finish, start)`` (all channels of a pixel):

    deletion:  start = x,        finish = zeros (or blur)   score drops as evidence is removed
    insertion: start = blur(x),  finish = x                  score rises as evidence is restored

Curves hold the class score at k = 0..n (n + 1 points; ``include_final=False`` drops k = n).  AUC:
``"uniform"`` = Petsiuk's trapezoid on equally spaced points, (sum - (first + last) / 2) / (points - 1);
``"fraction"`` = trapezoid over the true fractions r_k / HW.  Overall = insertion - deletion.

All images x steps are scored as batched forwards of ``batch_size`` under inference mode; the
unmodified images are scored once and shared by deletion k = 0 and insertion k = n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import BLUR_SIGMA, auto_batch_size, check_images, check_maps, gaussian_blur, resolve_targets
from xairepro.metrics._perturbation import Settings, replacement_scores, score_images
from xairepro.utils import preserved_state

__all__ = ["InsertionDeletionProtocol", "InsertionDeletionResult", "insertion_deletion", "pixel_ranks",
           "PROTOCOL_PRESETS"]

#: Steps when neither ``pixels_per_step`` nor ``n_steps`` is given (Petsiuk: step = ceil(HW / 28)).
DEFAULT_N_STEPS = 28


@dataclass(frozen=True)
class InsertionDeletionProtocol(Settings):
    """Every choice of an insertion/deletion run; stored with each result (``to_dict()``, ``digest``).

    Exactly one of ``pixels_per_step`` and ``n_steps`` is set; with ``n_steps`` the step is
    ceil(HW / n_steps) pixels.  When neither is given, ``n_steps = 28`` (Petsiuk's step), so
    ``InsertionDeletionProtocol(pixels_per_step=10)`` alone is valid (SPEC 9).  A preset is adjusted like
    any dataclass: ``dataclasses.replace(InsertionDeletionProtocol.petsiuk(), pixels_per_step=16)`` gives
    16 px steps (the one of ``pixels_per_step`` / ``n_steps`` the call sets wins).  Substrates are in pixel
    space ([0, 1] images; models carry their own normalisation): "zeros" is black, "blur" is a Gaussian
    blur (``blur_kernel``, ``blur_sigma``, reflected borders) of the image itself.
    """

    pixels_per_step: int | None = None
    n_steps: int | None = None
    insertion_start: str = "blur"
    blur_kernel: int = 11
    blur_sigma: float = BLUR_SIGMA
    deletion_end: str = "zeros"
    target: str = "predicted"
    score: str = "softmax"
    auc_x: str = "uniform"
    include_final: bool = True
    pixel_space: bool = True
    name: str = "custom"
    #: (pixels_per_step, n_steps) as resolved: ``dataclasses.replace`` carries it over, so a copy whose
    #: call sets one of the two knows which one was set and drops the other.
    _steps: tuple[int | None, int | None] = field(default=(None, None), repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pixels_per_step is not None and self.n_steps is not None and any(self._steps):
            if self.pixels_per_step == self._steps[0] and self.n_steps != self._steps[1]:
                object.__setattr__(self, "pixels_per_step", None)    # replace(..., n_steps=k)
            elif self.n_steps == self._steps[1] and self.pixels_per_step != self._steps[0]:
                object.__setattr__(self, "n_steps", None)            # replace(..., pixels_per_step=k)
        if self.pixels_per_step is None and self.n_steps is None:
            object.__setattr__(self, "n_steps", DEFAULT_N_STEPS)
        if (self.pixels_per_step is None) == (self.n_steps is None):
            raise UsageError("set exactly one of pixels_per_step and n_steps "
                             f"(got pixels_per_step={self.pixels_per_step}, n_steps={self.n_steps})")
        for field, value in (("pixels_per_step", self.pixels_per_step), ("n_steps", self.n_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"{field} must be a positive int, got {value!r}")
        choices = {"insertion_start": ("blur", "zeros"), "deletion_end": ("zeros", "blur"),
                   "target": ("predicted", "label"), "score": ("softmax", "raw"), "auc_x": ("uniform", "fraction")}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise UsageError(f"{field} must be one of {', '.join(map(repr, allowed))}, "
                                 f"got {getattr(self, field)!r}")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise UsageError(f"blur_kernel must be an odd positive int, got {self.blur_kernel}")
        if not self.blur_sigma > 0:
            raise UsageError(f"blur_sigma must be > 0, got {self.blur_sigma}")
        if not self.pixel_space:
            raise UsageError("only pixel-space substrates are supported (images in [0, 1], "
                             "normalisation inside the model)")
        object.__setattr__(self, "_steps", (self.pixels_per_step, self.n_steps))

    @classmethod
    def petsiuk(cls) -> InsertionDeletionProtocol:
        """Petsiuk et al.: softmax of the predicted class, 11x11 sigma-5 blur start, zeros end,
        step = ceil(HW / 28), uniform trapezoid over all n_steps + 1 points."""
        return cls(pixels_per_step=None, n_steps=28, insertion_start="blur", blur_kernel=11, blur_sigma=BLUR_SIGMA,
                   deletion_end="zeros", target="predicted", score="softmax", auc_x="uniform",
                   include_final=True, name="petsiuk")

    @classmethod
    def lico_fact(cls) -> InsertionDeletionProtocol:
        """The LICO reproduction (lico-fact): label probability, 9x9 sigma-5 blur, 10 px steps, and, as
        its code did, the fully replaced image never scored (``include_final=False``)."""
        return cls(pixels_per_step=10, n_steps=None, insertion_start="blur", blur_kernel=9, blur_sigma=BLUR_SIGMA,
                   deletion_end="zeros", target="label", score="softmax", auc_x="uniform",
                   include_final=False, name="lico-fact")

    @classmethod
    def preset(cls, name: str) -> InsertionDeletionProtocol:
        """A preset by name, one of :data:`PROTOCOL_PRESETS` (``"petsiuk"``, ``"lico-fact"``)."""
        key = name.lower().replace("_", "-")
        if key not in PROTOCOL_PRESETS:
            raise UsageError(f"unknown insertion/deletion protocol {name!r}; choose {' or '.join(PROTOCOL_PRESETS)}")
        return PROTOCOL_PRESETS[key]()

    def step_pixels(self, n_pixels: int) -> int:
        """Pixels replaced per step for an image of ``n_pixels`` = H * W."""
        if self.pixels_per_step is not None:
            return self.pixels_per_step
        return math.ceil(n_pixels / self.n_steps)  # type: ignore[operator]

    def replaced_counts(self, n_pixels: int) -> torch.Tensor:
        """r_k = min(k * step, HW) for the scored points k (LongTensor (n_points,))."""
        step = self.step_pixels(n_pixels)
        n = math.ceil(n_pixels / step)
        counts = (torch.arange(n + 1) * step).clamp_max(n_pixels)
        return counts if self.include_final else counts[:-1]


#: The protocol presets by name (the one list: ``preset()``, the CLI and the studies read it).
PROTOCOL_PRESETS: dict[str, Callable[[], InsertionDeletionProtocol]] = {
    "petsiuk": InsertionDeletionProtocol.petsiuk,
    "lico-fact": InsertionDeletionProtocol.lico_fact,
}


@dataclass
class InsertionDeletionResult:
    """Scores (B,), curves (B, n_points), the x-axis ``fractions`` (n_points,) and the protocol used."""

    insertion: torch.Tensor
    deletion: torch.Tensor
    insertion_curve: torch.Tensor
    deletion_curve: torch.Tensor
    fractions: torch.Tensor
    targets: torch.Tensor
    protocol: InsertionDeletionProtocol

    @property
    def overall(self) -> torch.Tensor:
        """insertion - deletion, (B,)."""
        return self.insertion - self.deletion

    def summary(self) -> dict[str, float]:
        """Means over images of insertion, deletion and overall."""
        return {"insertion": float(self.insertion.mean()), "deletion": float(self.deletion.mean()),
                "overall": float(self.overall.mean())}


def pixel_ranks(saliency: torch.Tensor) -> torch.Tensor:
    """Rank of each pixel by saliency (B, H, W) -> LongTensor (B, H*W): 0 = most salient, ties by index."""
    flat = saliency.reshape(saliency.shape[0], -1)
    order = torch.argsort(flat if flat.is_floating_point() else flat.float(), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def auc(curves: torch.Tensor, fractions: torch.Tensor, auc_x: str) -> torch.Tensor:
    """Area under each curve (B, n_points) -> (B,) by the trapezoid rule on the chosen x-axis."""
    if curves.shape[1] == 1:
        return curves[:, 0].clone()
    if auc_x == "uniform":
        return (curves.sum(dim=1) - (curves[:, 0] + curves[:, -1]) / 2) / (curves.shape[1] - 1)
    span = fractions[-1] - fractions[0]
    return torch.trapezoid(curves, fractions.to(curves.dtype), dim=1) / span


def insertion_deletion(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor,
                       protocol: InsertionDeletionProtocol | str | None = None, labels: torch.Tensor | None = None,
                       batch_size: int | None = None, *, show_progress: bool = False
                       ) -> InsertionDeletionResult:
    """Insertion and deletion curves and AUCs of ``saliency`` (B, H, W) for images ``x`` (B, C, H, W).

    ``protocol`` defaults to ``InsertionDeletionProtocol.petsiuk()`` (a preset name is accepted);
    ``labels`` (B,) are needed when ``protocol.target == "label"`` (ignored for ``"predicted"``).
    ``batch_size`` = images per forward (None: 32 on the CPU, 256 on a GPU).  The model is left as it was.
    """
    if protocol is None:
        protocol = InsertionDeletionProtocol.petsiuk()
    elif isinstance(protocol, str):
        protocol = InsertionDeletionProtocol.preset(protocol)
    if not isinstance(protocol, InsertionDeletionProtocol):
        raise UsageError(f"protocol must be an InsertionDeletionProtocol, got {type(protocol).__name__}")
    check_images(x, "insertion_deletion")
    if batch_size is None:
        batch_size = auto_batch_size(x.device)
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    saliency = check_maps(saliency, x)
    b, c, h, w = x.shape
    hw = h * w
    device = x.device
    if protocol.target == "label":
        if labels is None:
            raise UsageError(f"protocol {protocol.name!r} scores the label class: pass labels=")
        labels = resolve_targets(labels, None, b, device)

    counts = protocol.replaced_counts(hw)
    n_points = counts.numel()
    xs = x.detach()
    rank_dtype = torch.int32 if hw < 2**31 else torch.int64
    ranks = pixel_ranks(saliency.to(device)).to(rank_dtype).view(b, 1, h, w)
    with preserved_state(model), torch.inference_mode():
        blurred = None
        if "blur" in (protocol.insertion_start, protocol.deletion_end):
            blurred = gaussian_blur(xs, protocol.blur_kernel, protocol.blur_sigma)
        ins_start = blurred if protocol.insertion_start == "blur" else torch.zeros_like(xs)
        del_end = blurred if protocol.deletion_end == "blur" else torch.zeros_like(xs)
        layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format  # see batched_forward
        starts = torch.cat([xs, ins_start]).contiguous(memory_format=layout)   # row = curve * B + image
        finishes = torch.cat([del_end, xs]).contiguous(memory_format=layout)   # curve 0 = deletion, 1 = insertion

        target_arg = labels if protocol.target == "label" else None
        _, targets, score0 = score_images(model, xs, target_arg, protocol.score, batch_size)

        # jobs: for every image, the deletion steps k > 0, then the insertion steps (all but the unmodified
        # image, scored above), each a run of consecutive thresholds on one (image, curve) row
        k_all = torch.arange(n_points)
        del_k = k_all[k_all > 0]
        ins_k = k_all[counts < hw] if protocol.include_final else k_all
        n_jobs = del_k.numel() + ins_k.numel()
        job_k = torch.cat([del_k, ins_k]).repeat(b)
        job_curve = torch.cat([torch.zeros_like(del_k), torch.ones_like(ins_k)]).repeat(b)
        img_of = torch.arange(b).repeat_interleave(n_jobs)
        scores = replacement_scores(model, starts, finishes, ranks, job_curve * b + img_of, img_of, counts[job_k],
                                    targets[img_of.to(device)], protocol.score, batch_size,
                                    show_progress=show_progress, desc="insertion/deletion")

        curves = torch.empty(2, b, n_points, device=device, dtype=torch.float32)
        curves[0, :, 0] = score0
        if protocol.include_final:
            curves[1, :, n_points - 1] = score0
        slot_of = (job_curve * b + img_of) * n_points + job_k     # flat index into curves
        curves.view(-1)[slot_of.to(device)] = scores
    curves, targets = curves.clone(), targets.clone()   # ordinary tensors, usable outside inference mode
    fractions = counts.to(device=device, dtype=torch.float32) / hw
    deletion = auc(curves[0], fractions, protocol.auc_x)
    insertion = auc(curves[1], fractions, protocol.auc_x)
    return InsertionDeletionResult(insertion, deletion, curves[1], curves[0], fractions, targets, protocol=protocol)

