"""CAM-family saliency on top of pytorch-grad-cam, wrapped to the xairepro contract (SPEC 5, 9).

    cam = GradCAM(model, target_layer)        # a module, a dotted name, or None = model.cam_layer
    maps = cam(x, target=None)                # x (B, C, H, W) -> (B, H, W) in [0, 1] on x's device

pytorch-grad-cam 1.5 puts the model in eval mode for good, registers its hooks in the constructor
(removed only by ``release()``/``__del__``), clears every ``.grad`` with ``model.zero_grad()``,
swallows ``IndexError`` in its context manager and returns per-image min-max maps (with a 1e-7
epsilon) as numpy on the CPU.  The wrapper builds the backend inside each call, under
``preserved_state`` (train/eval flags, ``.grad``, ``requires_grad`` restored), releases its hooks in
``finally``, feeds a detached copy of ``x`` (so a frozen model still gets activation gradients and the
caller's tensor is never touched), validates targets against the model's output, and re-normalises
exactly to [0, 1] on the input's device.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain.group_cam import GroupCAM
from xairepro.explain.layers import resolve_layer
from xairepro.explain.rise import RISE
from xairepro.imaging import Target, check_images, normalize_maps, resolve_targets
from xairepro.utils import preserved_state

__all__ = [
    "GradCAM", "GradCAMPlusPlus", "ScoreCAM", "LayerCAM", "XGradCAM", "EigenCAM", "HiResCAM",
    "SALIENCY_CLASSES", "SALIENCY_METHODS", "METHOD_ALIASES", "method_name", "saliency_method",
]


class _ClassTarget:
    """pytorch-grad-cam target: the raw score of one class, checked against the output width."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if self.category >= output.shape[-1]:
            raise UsageError(f"target class {self.category} is out of range "
                             f"(the model has classes 0..{output.shape[-1] - 1})")
        return output[..., self.category]


class _GradCamLibraryMethod:
    """Base of the wrappers: one pytorch-grad-cam class per subclass (``backend``)."""

    backend: ClassVar[str] = ""

    def __init__(self, model: nn.Module, target_layer: nn.Module | str | None = None, *,
                 batch_size: int = 64) -> None:
        if not isinstance(model, nn.Module):
            raise UsageError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.target_layer = resolve_layer(model, target_layer)
        self.batch_size = batch_size

    def _backend_class(self) -> type:
        import pytorch_grad_cam  # lazy: it imports OpenCV; Group-CAM and RISE users do not pay for it

        return getattr(pytorch_grad_cam, self.backend)

    def __call__(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Saliency maps (B, H, W) in [0, 1] on ``x``'s device; ``target=None`` = predicted class.

        The images go through the backend ``batch_size`` at a time (one forward and backward each).
        """
        check_images(x, type(self).__name__, model=self.model)
        batch = x.shape[0]
        classes = None if target is None else resolve_targets(target, None, batch, torch.device("cpu")).tolist()
        maps = [self._maps(x[i:i + self.batch_size], None if classes is None else classes[i:i + self.batch_size])
                for i in range(0, batch, self.batch_size)]
        return torch.cat(maps) if len(maps) > 1 else maps[0]

    def _maps(self, x: torch.Tensor, classes: list[int] | None) -> torch.Tensor:
        """One backend call on a chunk of images (``classes``: one per image, or None for the prediction)."""
        batch = x.shape[0]
        targets = None if classes is None else [_ClassTarget(int(c)) for c in classes]
        cls = self._backend_class()
        with preserved_state(self.model), torch.enable_grad():
            cam: Any = None
            try:
                cam = cls(model=self.model, target_layers=[self.target_layer])
                cam.batch_size = self.batch_size  # read by ScoreCAM
                inp = x.detach().clone().requires_grad_(True)
                out = cam(input_tensor=inp, targets=targets)
            finally:
                if cam is not None:
                    cam.activations_and_grads.release()
                    cam.outputs = None
        maps = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device)
        if maps.dim() != 3 or maps.shape[0] != batch:
            raise UsageError(f"{type(self).__name__} produced maps of shape {tuple(maps.shape)} "
                             f"for {batch} images; is the target layer a conv layer?")
        return normalize_maps(maps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target_layer={type(self.target_layer).__name__})"


class GradCAM(_GradCamLibraryMethod):
    """Grad-CAM (Selvaraju et al.): ReLU(sum_k mean_ij(dy_c/dA_k) A_k), upsampled, min-max to [0, 1]."""

    backend = "GradCAM"


class GradCAMPlusPlus(_GradCamLibraryMethod):
    """Grad-CAM++ (Chattopadhyay et al., eq. 19 weights with the second/third-power gradient terms)."""

    backend = "GradCAMPlusPlus"


class ScoreCAM(_GradCamLibraryMethod):
    """Score-CAM: channel weights = softmax over channels of the class score of x masked by each map."""

    backend = "ScoreCAM"


class LayerCAM(_GradCamLibraryMethod):
    """Layer-CAM: ReLU(sum_k ReLU(dy_c/dA_k) * A_k) elementwise."""

    backend = "LayerCAM"


class XGradCAM(_GradCamLibraryMethod):
    """XGrad-CAM: weights sum_ij (dy_c/dA_k) A_k / sum_ij A_k."""

    backend = "XGradCAM"


class EigenCAM(_GradCamLibraryMethod):
    """Eigen-CAM: projection of the activations on their first principal component (class-agnostic)."""

    backend = "EigenCAM"


class HiResCAM(_GradCamLibraryMethod):
    """HiRes-CAM: ReLU(sum_k (dy_c/dA_k) * A_k) elementwise."""

    backend = "HiResCAM"


#: The saliency methods by name: the one list (:func:`saliency_method`, the CLI's ``--methods``, the studies).
SALIENCY_CLASSES: dict[str, type] = {
    "gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "scorecam": ScoreCAM, "layercam": LayerCAM,
    "xgradcam": XGradCAM, "eigencam": EigenCAM, "hirescam": HiResCAM, "groupcam": GroupCAM, "rise": RISE,
}
SALIENCY_METHODS: tuple[str, ...] = tuple(SALIENCY_CLASSES)
#: Other spellings of the names above.
METHOD_ALIASES: dict[str, str] = {"gradcam++": "gradcampp", "grad-cam": "gradcam", "grad-cam++": "gradcampp",
                                  "group-cam": "groupcam"}


def method_name(name: str) -> str:
    """The name of :data:`SALIENCY_METHODS` that ``name`` spells (case, aliases); ``UsageError`` otherwise."""
    key = name.lower().strip()
    key = METHOD_ALIASES.get(key, key)
    if key not in SALIENCY_METHODS:
        raise UsageError(f"unknown saliency method {name!r}; choose from {', '.join(SALIENCY_METHODS)}")
    return key


def saliency_method(name: str, model: nn.Module, target_layer: nn.Module | str | None = None,
                    **options: Any) -> Any:
    """Build a saliency method by name (see ``SALIENCY_METHODS``); ``options`` go to its constructor."""
    key = method_name(name)
    if key == "rise":  # model-agnostic: no layer
        return RISE(model, **options)
    return SALIENCY_CLASSES[key](model, target_layer, **options)
