"""A GRU encoder–decoder (Cho et al., 2014; Sutskever et al., 2014) without attention:
the encoder reads the source into one context vector c, the decoder writes the target
one token at a time from c. Trained with teacher forcing; decoded greedily or with
beam search and length normalisation.

Part IV puts attention next to it: `GRUEncoder` also returns every position's output
(B, S, D·H), which an attention decoder reads instead of c alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class Seq2SeqConfig:
    src_vocab: int
    tgt_vocab: int
    embed_dim: int = 128
    hidden_size: int = 256  # H: decoder state and context size
    num_layers: int = 1
    bidirectional: bool = True  # encoder reads the source both ways
    dropout: float = 0.1  # on embeddings, between layers and before the head
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self):
        for name in ("src_vocab", "tgt_vocab", "embed_dim", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


class GRUEncoder(nn.Module):
    """forward(src (B, S), lengths (B,)) -> outputs (B, S, D·H) (zeros at padding),
    context c (B, H) = tanh(W [last forward state; last backward state] + b)."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.embed = nn.Embedding(c.src_vocab, c.embed_dim, padding_idx=c.pad_id)
        self.rnn = nn.GRU(
            c.embed_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            batch_first=True,
            bidirectional=c.bidirectional,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        directions = 2 if c.bidirectional else 1
        self.to_context = nn.Linear(directions * c.hidden_size, c.hidden_size)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor):
        packed = pack_padded_sequence(
            self.drop(self.embed(src)),
            lengths.cpu(),
            batch_first=True,
            enforce_sorted=False,
        )
        out, h = self.rnn(packed)  # h: (L·D, B, H), last real step of each sequence
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        directions = 2 if self.rnn.bidirectional else 1
        top = h[-directions:]  # the last layer's final state(s): (D, B, H)
        context = torch.tanh(self.to_context(torch.cat(list(top), dim=-1)))
        return out, context


class GRUDecoder(nn.Module):
    """A GRU whose input at step t is [embed(y_{t-1}); c] and whose first state is
    W_0 c; logits_t = head([s_t; c]). forward(tgt_in (B, T), state (L, B, H),
    context (B, H)) -> logits (B, T, V), state."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.num_layers, self.hidden_size = c.num_layers, c.hidden_size
        self.embed = nn.Embedding(c.tgt_vocab, c.embed_dim, padding_idx=c.pad_id)
        self.rnn = nn.GRU(
            c.embed_dim + c.hidden_size,
            c.hidden_size,
            num_layers=c.num_layers,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.init = nn.Linear(c.hidden_size, c.num_layers * c.hidden_size)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(2 * c.hidden_size, c.tgt_vocab)

    def init_state(self, context: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (L, B, H)."""
        s0 = torch.tanh(self.init(context))
        return (
            s0.view(-1, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()
        )

    def forward(self, tgt_in: torch.Tensor, state: torch.Tensor, context: torch.Tensor):
        emb = self.drop(self.embed(tgt_in))  # (B, T, E)
        ctx = context.unsqueeze(1).expand(-1, tgt_in.shape[1], -1)  # (B, T, H)
        out, state = self.rnn(torch.cat([emb, ctx], dim=-1), state)
        return self.head(self.drop(torch.cat([out, ctx], dim=-1))), state


class Seq2Seq(nn.Module):
    """Encoder–decoder. forward(src, src_lengths, tgt_in) -> logits (B, T, V) with
    teacher forcing (the decoder reads the true previous tokens tgt_in)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        self.encoder = GRUEncoder(config)
        self.decoder = GRUDecoder(config)

    def forward(self, src, src_lengths, tgt_in):
        _, context = self.encoder(src, src_lengths)
        state = self.decoder.init_state(context)
        return self.decoder(tgt_in, state, context)[0]

    def next_logprobs(self, logits: torch.Tensor) -> torch.Tensor:
        """log-probabilities of the next token, (..., V), in float32: <pad> and <bos>
        are never predicted (they are never targets), so they get probability 0."""
        c = self.config
        banned = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        banned[[c.pad_id, c.bos_id]] = True
        return F.log_softmax(logits.float().masked_fill(banned, float("-inf")), -1)

    @torch.no_grad()
    def sequence_logprob(self, src, src_lengths, tgt: list[list[int]]) -> torch.Tensor:
        """log p(y | x), (B,), of whole targets: ids without <bos>, ending in <eos>."""
        c = self.config
        seqs = [[c.bos_id, *t] for t in tgt]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), c.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        ids = ids.to(src.device)
        logp = self.next_logprobs(self(src, src_lengths, ids[:, :-1]))
        picked = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        return picked.masked_fill(ids[:, 1:] == c.pad_id, 0.0).sum(dim=1)

    @torch.no_grad()
    def greedy(self, src, src_lengths, max_len: int = 60) -> list[list[int]]:
        """The most probable next token at every step, until <eos> or max_len tokens.
        Returns ids without <bos>/<eos>, one list per source."""
        c = self.config
        _, context = self.encoder(src, src_lengths)
        state = self.decoder.init_state(context)
        token = torch.full((src.shape[0], 1), c.bos_id, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        out = []
        for _ in range(max_len):
            logits, state = self.decoder(token, state, context)
            token = self.next_logprobs(logits[:, -1]).argmax(-1, keepdim=True)
            out.append(token[:, 0])
            done |= token[:, 0] == c.eos_id
            if bool(done.all()):
                break
        return [_cut(row, c.eos_id) for row in torch.stack(out, 1).tolist()]

    @torch.no_grad()
    def beam_search(
        self,
        src,
        src_lengths,
        beam_size: int = 4,
        max_len: int = 60,
        length_penalty: float = 1.0,
    ) -> list[list[int]]:
        """Keep the beam_size most probable prefixes (sum of log-probabilities) at every
        step; a prefix that emits <eos> stays in the beam with its score frozen. Of the
        final beam, return the hypothesis with the best score / length^length_penalty
        (length counts <eos>; 0 = no normalisation). beam_size 1 is greedy."""
        c, k = self.config, beam_size
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
        b, dev = src.shape[0], src.device
        _, context = self.encoder(src, src_lengths)
        context = context.repeat_interleave(k, dim=0)  # (B·K, H)
        state = self.decoder.init_state(context)
        score = torch.full((b, k), float("-inf"), device=dev)
        score[:, 0] = 0.0  # one live prefix (<bos>) per source at the start
        token = torch.full((b * k, 1), c.bos_id, device=dev)
        done = torch.zeros(b, k, dtype=torch.bool, device=dev)
        length = torch.zeros(b, k, device=dev)
        history = torch.zeros(b, k, 0, dtype=torch.long, device=dev)
        for _ in range(max_len):
            logits, state = self.decoder(token, state, context)
            logp = self.next_logprobs(logits[:, -1]).view(b, k, -1)
            # a finished prefix may only continue with <pad>, at no cost
            frozen = torch.full_like(logp[0, 0], float("-inf"))
            frozen[c.pad_id] = 0.0
            logp = torch.where(done[..., None], frozen, logp)
            total = (score[..., None] + logp).view(b, -1)  # (B, K·V)
            score, flat = total.topk(k, dim=-1)
            parent, token_id = flat // logp.shape[-1], flat % logp.shape[-1]
            history = torch.cat(
                [
                    history.gather(1, parent[..., None].expand_as(history)),
                    token_id[..., None],
                ],
                dim=-1,
            )
            was_done = done.gather(1, parent)
            length = length.gather(1, parent) + (~was_done).float()
            done = was_done | (token_id == c.eos_id)
            rows = (parent + torch.arange(b, device=dev)[:, None] * k).view(-1)
            state = state[:, rows]
            token = token_id.view(-1, 1)
            if bool(done.all()):
                break
        norm = score / length.clamp(min=1.0) ** length_penalty
        best = norm.argmax(dim=1)
        chosen = history[torch.arange(b, device=dev), best].tolist()
        return [_cut(row, c.eos_id) for row in chosen]


def _cut(ids: list[int], eos_id: int) -> list[int]:
    """The ids before the first <eos> (all of them if there is none)."""
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def seq2seq_loss(logits: torch.Tensor, y: torch.Tensor, pad_id: int = 0):
    """Mean cross-entropy per real target token (padding ignored). logits: (B, T, V);
    y: (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=pad_id)
