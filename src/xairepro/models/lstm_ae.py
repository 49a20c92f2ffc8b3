"""LSTM recurrent autoencoder for ECG beats (Label-Free-XAI, after Curiousily's ECG5000 model).

Encoder, (B, T, C) -> (B, e): LSTM(C, 2e) -> LSTM(2e, e); the code is the last hidden state of the
second LSTM.  Decoder, (B, e) -> (B, T, C): the code repeated over T steps -> LSTM(e, e) ->
LSTM(e, 2e) -> Linear(2e, C) at every step.  Defaults: T = 140, C = 1, e = 64.
"""

from __future__ import annotations

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.models.common import plural, positive_int
from xairepro.models.registry import register_model

__all__ = ["LSTMEncoder", "LSTMDecoder", "LSTMAutoencoder", "check_series"]


def check_series(x: object, *, model: str, seq_len: int, n_features: int) -> None:
    """Raise :class:`UsageError` unless ``x`` is a float batch of series shaped (B, seq_len, n_features)."""
    if not isinstance(x, torch.Tensor):
        raise UsageError(f"{model} expects a tensor of series, got {type(x).__name__}")
    if x.ndim != 3:
        hint = " (add the feature dimension with x.unsqueeze(-1))" if x.ndim == 2 and n_features == 1 else ""
        raise UsageError(f"{model} expects series shaped (B, T, C) = (B, {seq_len}, {n_features}), "
                         f"got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise UsageError(f"{model} expects float series, got dtype {x.dtype}")
    if x.shape[2] != n_features:
        raise UsageError(f"{model} expects {plural(n_features, 'feature')} per time step, got {int(x.shape[2])}")
    if x.shape[1] != seq_len:
        raise UsageError(f"{model} expects series of {seq_len} time steps, got {int(x.shape[1])}")


def run_lstm(lstm: nn.LSTM, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``lstm(x)``, with cuDNN off on CUDA in eval mode when gradients are on: cuDNN's RNN backward
    refuses eval mode, and explanations take input gradients of models in eval mode."""
    if x.is_cuda and not lstm.training and torch.is_grad_enabled():
        with torch.backends.cudnn.flags(enabled=False):
            return lstm(x)
    return lstm(x)


class LSTMEncoder(nn.Module):
    """(B, T, C) -> code (B, embedding_dim): the last hidden state of the second LSTM."""

    def __init__(self, seq_len: int = 140, n_features: int = 1, embedding_dim: int = 64,
                 model_name: str = "lstm-ae") -> None:
        super().__init__()
        self.model_name = model_name
        self.seq_len = positive_int(seq_len, "seq_len", model_name)
        self.n_features = positive_int(n_features, "n_features", model_name)
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim", model_name)
        self.input_shape = (self.seq_len, self.n_features)
        self.rnn1 = nn.LSTM(self.n_features, 2 * self.embedding_dim, batch_first=True)
        self.rnn2 = nn.LSTM(2 * self.embedding_dim, self.embedding_dim, batch_first=True)

    def check_input(self, x: torch.Tensor) -> None:
        check_series(x, model=self.model_name, seq_len=self.seq_len, n_features=self.n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        hidden, _ = run_lstm(self.rnn1, x)
        _, (h_n, _) = run_lstm(self.rnn2, hidden)
        return h_n[-1]


class LSTMDecoder(nn.Module):
    """Code (B, embedding_dim) -> series (B, seq_len, n_features)."""

    def __init__(self, seq_len: int = 140, n_features: int = 1, embedding_dim: int = 64) -> None:
        super().__init__()
        self.seq_len, self.n_features, self.embedding_dim = seq_len, n_features, embedding_dim
        self.rnn1 = nn.LSTM(embedding_dim, embedding_dim, batch_first=True)
        self.rnn2 = nn.LSTM(embedding_dim, 2 * embedding_dim, batch_first=True)
        self.output = nn.Linear(2 * embedding_dim, n_features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.embedding_dim:
            raise UsageError(f"the decoder expects codes shaped (B, {self.embedding_dim}), got {tuple(z.shape)}")
        steps = z.unsqueeze(1).expand(z.shape[0], self.seq_len, self.embedding_dim)
        hidden, _ = run_lstm(self.rnn1, steps)
        hidden, _ = run_lstm(self.rnn2, hidden)
        return self.output(hidden)


class LSTMAutoencoder(nn.Module):
    """``forward(x) = decoder(encoder(x))``: (B, T, C) -> (B, T, C).  No conv stage: ``cam_layer`` is None."""

    def __init__(self, seq_len: int = 140, n_features: int = 1, embedding_dim: int = 64) -> None:
        super().__init__()
        self.model_name = "lstm-ae"
        self.encoder = LSTMEncoder(seq_len, n_features, embedding_dim, model_name=self.model_name)
        self.decoder = LSTMDecoder(self.encoder.seq_len, self.encoder.n_features, self.encoder.embedding_dim)
        self.seq_len, self.n_features = self.encoder.seq_len, self.encoder.n_features
        self.embedding_dim = self.encoder.embedding_dim
        self.input_shape = self.encoder.input_shape
        self.cam_layer: nn.Module | None = None

    def check_input(self, x: torch.Tensor) -> None:
        self.encoder.check_input(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@register_model("lstm-ae", kind="autoencoder", input_shape=(140, 1),
                description="LSTM recurrent autoencoder for ECG beats (B, T, C); code = last hidden state (64)")
def _build_lstm_ae(seq_len: int = 140, n_features: int = 1, embedding_dim: int = 64) -> LSTMAutoencoder:
    return LSTMAutoencoder(seq_len, n_features, embedding_dim)
