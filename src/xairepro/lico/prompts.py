"""Learnable prompts through a frozen text encoder, mapped to the image-token width (SPEC 4).

Prompt of class k: ``[BOS] X_1 .. X_n  name_k  [EOS]`` with n = 12 learnable context vectors
X ~ N(0, 0.02^2) in the encoder's input-embedding space, followed by the constant word embeddings of the
class name. Modes:

- ``paper``: one context shared by all classes; G_k keeps every token output: the n context outputs and
  the class-name output (the mean over the name's word pieces), so M = n + 1 and G_k is (M, d).
- ``official`` (the authors' code): one context per class; only the end-of-text output, M = 1.

h_psi = Linear(d, 512) -> ReLU -> Linear(512, d') maps each text token to the image-token width d' = H'W'.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.lico.config import PROMPT_MODES
from xairepro.lico.text_encoders import TextEncoder
from xairepro.utils import derive_seed

__all__ = ["PromptLearner", "check_class_names"]


class _Frozen:
    """Holds the shared frozen encoder outside the module tree: not in ``parameters()``/``state_dict()``,
    not copied by ``deepcopy`` (EMA copies share it)."""

    def __init__(self, module: TextEncoder) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict) -> _Frozen:
        return self


def check_class_names(class_names: Sequence[str], num_classes: int | None = None) -> list[str]:
    """Class names in label order: non-empty, distinct strings, as many as the classes."""
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise UsageError(f"class_names must be a list of strings in label order, got {type(class_names).__name__}")
    names = [str(n) for n in class_names]
    if any(not n.strip() for n in names):
        raise UsageError(f"class names must be non-empty, got {names}")
    if num_classes is not None and len(names) != num_classes:
        raise UsageError(f"got {len(names)} class names for a model with {num_classes} classes; "
                         "give one name per class, in the data set's label order")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        key = n.strip().lower()
        if key in seen:
            raise UsageError(f"class name {n!r} is given twice (labels {seen[key]} and {i}); every class needs "
                             "its own name")
        seen[key] = i
    return names


class PromptLearner(nn.Module):
    """Learnable context vectors + class names -> mapped text tokens (K, M, d').

    ``encode()`` gives the frozen encoder's selected outputs (K, M, d); ``forward()`` applies h_psi.
    Only the K class prompts run through the encoder, once per call.
    """

    def __init__(self, encoder: TextEncoder, class_names: Sequence[str], token_dim: int, *, mode: str = "paper",
                 n_ctx: int = 12, ctx_init_std: float = 0.02, mapping_hidden: int = 512, seed: int = 0) -> None:
        super().__init__()
        if mode not in PROMPT_MODES:
            raise UsageError(f"prompt mode {mode!r} is not one of {', '.join(PROMPT_MODES)}")
        names = check_class_names(class_names)
        self.mode, self.n_ctx, self.class_names = mode, int(n_ctx), names
        self._encoder = _Frozen(encoder)
        ids = [encoder.token_ids(n.replace("_", " ")) for n in names]
        for name, toks in zip(names, ids):
            if not toks:
                raise UsageError(f"class name {name!r} gives no tokens for the {encoder.name} text encoder")
        longest = max(len(t) for t in ids)
        if 2 + self.n_ctx + longest > encoder.max_length:
            raise UsageError(f"prompts of {2 + self.n_ctx + longest} tokens exceed the {encoder.name} encoder's "
                             f"limit of {encoder.max_length}; use fewer context tokens or shorter class names")
        k = len(names)
        tails = [t + [encoder.eos_id] + [encoder.pad_id] * (longest - len(t)) for t in ids]
        self.register_buffer("bos_embed", encoder.embed_ids([encoder.bos_id]).view(1, 1, -1), persistent=False)
        self.register_buffer("tail_embeds", encoder.embed_ids(torch.tensor(tails)), persistent=False)
        lengths = torch.tensor([2 + self.n_ctx + len(t) for t in ids])
        self.register_buffer("lengths", lengths, persistent=False)
        self.register_buffer("eot_index", lengths - 1, persistent=False)
        weights = torch.zeros(k, longest + 1)
        for i, t in enumerate(ids):
            weights[i, : len(t)] = 1.0 / len(t)
        self.register_buffer("name_weights", weights, persistent=False)

        shape = (self.n_ctx, encoder.embed_dim) if mode == "paper" else (k, self.n_ctx, encoder.embed_dim)
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's global RNG is left untouched
            torch.manual_seed(derive_seed(seed, "lico-prompt"))
            self.ctx = nn.Parameter(torch.randn(shape) * ctx_init_std)
            self.h_psi = nn.Sequential(nn.Linear(encoder.width, mapping_hidden), nn.ReLU(),
                                       nn.Linear(mapping_hidden, int(token_dim)))
        self.num_text_tokens = self.n_ctx + 1 if mode == "paper" else 1
        self._cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def encoder(self) -> TextEncoder:
        return self._encoder.module

    def prompt_embeddings(self) -> torch.Tensor:
        """Input embeddings of the K prompts (K, L, e) with L = n_ctx + longest name + 2."""
        k = self.tail_embeds.shape[0]
        ctx = self.ctx.unsqueeze(0).expand(k, -1, -1) if self.ctx.dim() == 2 else self.ctx
        bos = self.bos_embed.to(ctx.dtype).expand(k, -1, -1)
        return torch.cat([bos, ctx, self.tail_embeds.to(ctx.dtype)], dim=1)

    def _run_encoder(self) -> torch.Tensor:
        encoder = self.encoder
        if encoder.device != self.ctx.device:
            encoder.to(self.ctx.device)
        embeds = self.prompt_embeddings()
        out = encoder(embeds.to(encoder.dtype), self.lengths).to(embeds.dtype)   # (K, L, d)
        if self.mode == "official":
            rows = torch.arange(out.shape[0], device=out.device)
            return out[rows, self.eot_index].unsqueeze(1)                          # (K, 1, d)
        start = 1 + self.n_ctx
        name = torch.einsum("kt,ktd->kd", self.name_weights.to(out.dtype), out[:, start:])
        return torch.cat([out[:, 1:start], name.unsqueeze(1)], dim=1)             # (K, n_ctx + 1, d)

    def encode(self) -> torch.Tensor:
        """Frozen-encoder outputs of the K prompts (K, M, d).

        Without gradient (evaluation) the result is cached until the context vectors change.
        """
        if torch.is_grad_enabled():
            self._cache = None
            return self._run_encoder()
        key = (self.ctx._version, self.ctx.data_ptr(), self.ctx.device, self.ctx.dtype)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._run_encoder())
        return self._cache[1]

    def forward(self) -> torch.Tensor:
        """Mapped text tokens h_psi(G) of the K classes: (K, M, d'), not normalised."""
        return self.h_psi(self.encode())

    def extra_repr(self) -> str:
        return (f"mode={self.mode}, n_ctx={self.n_ctx}, classes={len(self.class_names)}, "
                f"encoder={self.encoder.name}, text_tokens={self.num_text_tokens}")
