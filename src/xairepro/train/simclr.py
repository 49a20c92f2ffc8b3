"""SimCLR's NT-Xent objective (Chen et al. 2020) on two augmented views of each image.

For a batch of B images, views v = aug(x), v' = aug(x), projections z = normalize(model([v; v'])) (2B, d),
s_ij = z_i . z_j / t:

    NT-Xent = 1/(2B) sum_i -log( exp(s_{i, p(i)}) / sum_{j != i} exp(s_ij) ),   p(i) = i +- B

Both views go through the model in one forward call (one DDP forward per step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xairepro.train.objectives import ObjectiveBase

__all__ = ["SimCLRObjective", "nt_xent", "SIMCLR_TEMPERATURE"]

#: Label-Free-XAI's SimCLR temperature (seed 003, Table 4).
SIMCLR_TEMPERATURE = 0.5


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = SIMCLR_TEMPERATURE) -> tuple[Tensor, Tensor]:
    """NT-Xent of paired projections z1, z2 (B, d) each; returns (loss, top-1 accuracy of finding the pair)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"projections must be two (B, d) tensors of one shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * batch, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    loss = F.cross_entropy(sim, targets)
    accuracy = (sim.detach().argmax(dim=1) == targets).float().mean()
    return loss, accuracy


class SimCLRObjective(ObjectiveBase):
    """NT-Xent on two views made by ``augment(x, generator=g)``, a batched augmentation.

    The views' generator is seeded from the global RNG, which the engine seeds per epoch.
    """

    def __init__(self, augment: Callable[..., Tensor] | None, temperature: float = SIMCLR_TEMPERATURE) -> None:
        if augment is None or not callable(augment):
            raise ValueError("SimCLR needs a batched augmentation to make its two views, e.g. "
                             "build_augmentation('simclr')")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.augment = augment
        self.temperature = float(temperature)

    def views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Two independent augmentations of the batch ``x``."""
        seed = int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator(device=x.device).manual_seed(seed)
        return self.augment(x, generator=generator), self.augment(x, generator=generator)

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Any]]:
        x = batch[0]
        v1, v2 = self.views(x)
        z = model(torch.cat([v1, v2]))
        loss, accuracy = nt_xent(z[: x.shape[0]], z[x.shape[0]:], self.temperature)
        return loss, {"pair_accuracy": accuracy}

    def __repr__(self) -> str:
        return f"SimCLRObjective(augment={type(self.augment).__name__}, temperature={self.temperature})"
