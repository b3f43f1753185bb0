"""Text classifiers over variable-length token sequences: embedding -> bidirectional
LSTM on packed sequences -> pooled features -> a linear head.

Padding is for the batch, not for the model: `pack_padded_sequence` lets the LSTM read
each sequence only up to its own length, so the backward direction starts at the last
*real* token and the final states are those of the last real step. Max-pooling over
time sees only real positions. The output for a sequence therefore does not depend on
how much padding the batch added, nor on the other sequences in the batch (tested in
`tests/test_models_textclf.py` against the same LSTM run on each sequence alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

POOLINGS = ("last", "max", "mean", "max+last")


@dataclass
class TextClassifierConfig:
    vocab_size: int
    num_classes: int = 2
    embed_dim: int = 64
    hidden_size: int = 64  # per direction
    num_layers: int = 1
    dropout: float = 0.5  # on embeddings, between LSTM layers and before the head
    pooling: str = "max+last"  # how the (B, T, 2H) outputs become one (B, F) vector
    pad_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "num_classes", "embed_dim", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(
                f"num_layers must be a positive int, got {self.num_layers!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is not an id below vocab_size")

    @property
    def features(self) -> int:
        """Width F of the pooled vector: 2H per pooling (both directions)."""
        return 2 * self.hidden_size * (2 if self.pooling == "max+last" else 1)


class BiLSTMClassifier(nn.Module):
    """forward(tokens (B, T) int64, lengths (B,) int64 on the CPU) -> logits (B, K).

    tokens[b, :lengths[b]] are the real tokens of sequence b, the rest is padding (any
    id). Features (for `pooling`): "last" = [forward state after the last real token,
    backward state after the first token] (B, 2H); "max" / "mean" = the maximum / mean
    over the real time steps of the (B, T, 2H) outputs; "max+last" = both, (B, 4H)."""

    def __init__(self, config: TextClassifierConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=c.pad_id)
        self.lstm = nn.LSTM(
            c.embed_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.features, c.num_classes)

    def run_lstm(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed BiLSTM. Returns outputs (B, T', 2H) with T' = max(lengths),
        zero after each sequence's end, and the last layer's final states (B, 2H):
        [forward after token lengths[b]-1, backward after token 0]."""
        _check_lengths(tokens, lengths)
        emb = self.drop(self.embed(tokens))
        packed = pack_padded_sequence(
            emb, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, (h, _) = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)  # rows in input order
        return out, torch.cat([h[-2], h[-1]], dim=1)  # h is in input order too

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The pooled vector (B, F) the head reads (before dropout)."""
        out, last = self.run_lstm(tokens, lengths)
        pooling = self.config.pooling
        if pooling == "last":
            return last
        lengths = lengths.to(out.device)
        if pooling == "mean":  # out is zero after each sequence's end
            return out.sum(1) / lengths.to(out.dtype)[:, None]
        steps = torch.arange(out.shape[1], device=out.device)
        real = (steps[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T', 1)
        pooled = out.masked_fill(~real, float("-inf")).amax(dim=1)  # padding never wins
        return pooled if pooling == "max" else torch.cat([pooled, last], dim=1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(tokens, lengths)))


def _check_lengths(tokens: torch.Tensor, lengths: torch.Tensor) -> None:
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (B, T), got shape {tuple(tokens.shape)}")
    if tuple(lengths.shape) != (tokens.shape[0],):
        raise ValueError(
            f"lengths must be (B,) = ({tokens.shape[0]},), got {tuple(lengths.shape)}"
        )
    if len(lengths) and (
        int(lengths.min()) < 1 or int(lengths.max()) > tokens.shape[1]
    ):
        raise ValueError(
            f"lengths must lie in 1..{tokens.shape[1]} (the padded width), got "
            f"{int(lengths.min())}..{int(lengths.max())}"
        )
