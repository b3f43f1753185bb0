"""Recurrent language models: token embedding -> stacked RNN/GRU/LSTM -> a linear head.

The cells themselves are written from scratch in `dlcore.scratch.rnn` and shown equal to
PyTorch's; this module is the tool later chapters train, built on the fast `nn.RNN`,
`nn.GRU` and `nn.LSTM` (cuDNN on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class RNNLMConfig:
    vocab_size: int
    cell: str = "lstm"  # "rnn" (tanh), "gru" or "lstm"
    embed_dim: int = 128
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.0  # on embeddings, between layers and before the head
    tie_weights: bool = False  # head shares the embedding matrix (embed == hidden)

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.tie_weights and self.embed_dim != self.hidden_size:
            raise ValueError(
                "tie_weights needs embed_dim == hidden_size, got "
                f"{self.embed_dim} and {self.hidden_size}"
            )


class RNNLM(nn.Module):
    """Next-token model. forward(x: (B, T) int64) -> logits (B, T, vocab_size), from a
    zero state; `step(x, state)` also returns the final state, for generation and for
    carrying state across windows (truncated BPTT)."""

    def __init__(self, config: RNNLMConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.rnn = CELLS[c.cell](
            c.embed_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size, c.vocab_size)
        if c.tie_weights:
            self.head.weight = self.embed.weight

    def step(self, x: torch.Tensor, state=None):
        """x: (B, T) -> (logits (B, T, V), state); state is h (L, B, H), or (h, c)
        for an LSTM."""
        out, state = self.rnn(self.drop(self.embed(x)), state)
        return self.head(self.drop(out)), state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x)[0]


def lm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats per token. logits: (B, T, V); y: (B, T)."""
    return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
