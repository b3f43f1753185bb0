"""A GRU encoder–decoder with additive attention (Bahdanau, Cho and Bengio, 2015).

The encoder is Part III's `GRUEncoder`, unchanged: it returns every position's output
h_j (B, S, D·H) and a summary c (B, H). The decoder no longer squeezes the source
through c alone: before writing character t it scores every source position,

    e_tj = vᵀ tanh(W_q s_{t-1} + W_k h_j),   α_t = softmax_j(e_tj) over real positions,
    c_t = Σ_j α_tj h_j,                      s_t = GRU(s_{t-1}, [e(y_{t-1}); c_t]),
    logits_t = W_o [s_t; c_t; e(y_{t-1})] + b_o,

so the context c_t changes with t, and α_t (the alignment) says where it looked. The
output layer reads the previous character too (Bahdanau et al. add a maxout layer
between; a tanh layer of H units there learned more slowly in our measurements). The
state starts from s_0 = tanh(W_0 c), as in Part III. The query s_{t-1} depends on the
previous step, so even teacher-forced training runs the decoder step by step.

Plain PyTorch ops; the lesson's scratch version is `dlcore.scratch.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .seq2seq import GRUEncoder, Seq2Seq, Seq2SeqConfig, _cut

__all__ = ["AdditiveAttention", "Memory", "AttentionDecoder", "AttentionSeq2Seq"]


@dataclass
class Memory:
    """What the decoder attends to: keys W_k h (B, S, A), values h (B, S, Dv) and the
    mask (B, S), True at the real source positions."""

    keys: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor

    def repeat(self, k: int) -> Memory:
        """Each source repeated k times in a row (B·k rows), for beam search."""
        return Memory(
            *(
                t.repeat_interleave(k, dim=0)
                for t in (self.keys, self.values, self.mask)
            )
        )


class AdditiveAttention(nn.Module):
    """Bahdanau's scores vᵀ tanh(W_q q + W_k k). `memory(values, lengths)` projects the
    keys once per sentence; forward(query (B, Dq), memory) -> context (B, Dv), weights
    (B, S), zero at padding."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.w_q = nn.Linear(query_dim, attn_dim, bias=False)
        self.w_k = nn.Linear(key_dim, attn_dim)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def memory(self, values: torch.Tensor, lengths: torch.Tensor) -> Memory:
        s = values.shape[1]
        mask = (
            torch.arange(s, device=values.device) < lengths.to(values.device)[:, None]
        )
        return Memory(self.w_k(values), values, mask)

    def forward(self, query: torch.Tensor, memory: Memory):
        scores = self.v(torch.tanh(memory.keys + self.w_q(query)[:, None])).squeeze(-1)
        scores = scores.masked_fill(~memory.mask, float("-inf"))  # (B, S)
        weights = torch.softmax(scores, dim=-1)  # every source has >= 1 real token
        context = torch.bmm(weights.unsqueeze(1), memory.values).squeeze(1)
        return context, weights


class AttentionDecoder(nn.Module):
    """GRU decoder reading c_t = attention(s_{t-1}, encoder outputs) at every step.
    forward(tgt_in (B, T), state (L, B, H), memory) -> logits (B, T, V), state,
    weights (B, T, S); step(token (B,), state, memory) -> logits (B, V), state,
    weights (B, S)."""

    def __init__(self, c: Seq2SeqConfig, attn_dim: int | None = None):
        super().__init__()
        self.num_layers, self.hidden_size = c.num_layers, c.hidden_size
        enc_dim = (2 if c.bidirectional else 1) * c.hidden_size
        self.embed = nn.Embedding(c.tgt_vocab, c.embed_dim, padding_idx=c.pad_id)
        self.attention = AdditiveAttention(
            c.hidden_size, enc_dim, attn_dim or c.hidden_size
        )
        self.rnn = nn.GRU(
            c.embed_dim + enc_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.init = nn.Linear(c.hidden_size, c.num_layers * c.hidden_size)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size + enc_dim + c.embed_dim, c.tgt_vocab)

    def init_state(self, context: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (L, B, H), s_0 = tanh(W_0 c)."""
        s0 = torch.tanh(self.init(context))
        return (
            s0.view(-1, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()
        )

    def _advance(self, emb_t: torch.Tensor, state: torch.Tensor, memory: Memory):
        """One step from the embedded previous token emb_t (B, E): the query is the
        top layer's s_{t-1}. Returns [s_t; c_t; e_t] (B, H + Dv + E), state, weights
        (B, S)."""
        context, weights = self.attention(state[-1], memory)
        out, state = self.rnn(torch.cat([emb_t, context], -1).unsqueeze(1), state)
        return torch.cat([out[:, 0], context, emb_t], dim=-1), state, weights

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(features))

    def forward(self, tgt_in: torch.Tensor, state: torch.Tensor, memory: Memory):
        emb = self.drop(self.embed(tgt_in))  # (B, T, E)
        features, weights = [], []
        for t in range(tgt_in.shape[1]):
            feat, state, w = self._advance(emb[:, t], state, memory)
            features.append(feat)
            weights.append(w)
        logits = self._logits(torch.stack(features, dim=1))
        return logits, state, torch.stack(weights, dim=1)

    def step(self, token: torch.Tensor, state: torch.Tensor, memory: Memory):
        feat, state, weights = self._advance(
            self.drop(self.embed(token)), state, memory
        )
        return self._logits(feat), state, weights


class AttentionSeq2Seq(nn.Module):
    """Part III's bidirectional GRU encoder + the attention decoder. forward(src (B, S),
    src_lengths (B,), tgt_in (B, T)) -> logits (B, T, V) with teacher forcing;
    `attention(...)` also returns the weights (B, T, S)."""

    # the same rules as the attention-free model (they only use self.config / self())
    next_logprobs = Seq2Seq.next_logprobs
    sequence_logprob = Seq2Seq.sequence_logprob

    def __init__(self, config: Seq2SeqConfig, attn_dim: int | None = None):
        super().__init__()
        self.config = config
        self.encoder = GRUEncoder(config)
        self.decoder = AttentionDecoder(config, attn_dim)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor):
        """-> (state s_0 (L, B, H), memory)."""
        out, context = self.encoder(src, src_lengths)
        memory = self.decoder.attention.memory(out, src_lengths)
        return self.decoder.init_state(context), memory

    def attention(self, src, src_lengths, tgt_in):
        """Teacher-forced logits (B, T, V) and attention weights (B, T, S)."""
        state, memory = self.encode(src, src_lengths)
        logits, _, weights = self.decoder(tgt_in, state, memory)
        return logits, weights

    def forward(self, src, src_lengths, tgt_in):
        return self.attention(src, src_lengths, tgt_in)[0]

    @torch.no_grad()
    def greedy(self, src, src_lengths, max_len: int = 60, return_attention=False):
        """The most probable next token at every step, until <eos> or max_len. Returns
        ids without <bos>/<eos>, one list per source, and with return_attention a list
        of weights (n_i, S_i): one row per written token, <eos> included."""
        c = self.config
        state, memory = self.encode(src, src_lengths)
        token = torch.full((src.shape[0],), c.bos_id, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        out, rows = [], []
        for _ in range(max_len):
            logits, state, w = self.decoder.step(token, state, memory)
            token = self.next_logprobs(logits).argmax(-1)
            out.append(token)
            rows.append(w)
            done |= token == c.eos_id
            if bool(done.all()):
                break
        written = torch.stack(out, 1)  # (B, T)
        ids = [_cut(r, c.eos_id) for r in written.tolist()]
        if not return_attention:
            return ids
        return ids, _trim(torch.stack(rows, 1), written, src_lengths, c.eos_id)

    @torch.no_grad()
    def beam_search(
        self,
        src,
        src_lengths,
        beam_size: int = 4,
        max_len: int = 60,
        length_penalty: float = 1.0,
        return_attention: bool = False,
    ):
        """Beam search as `Seq2Seq.beam_search` (a finished prefix keeps its score; the
        final choice maximises score / length^length_penalty, <eos> counted); the
        attention rows of each prefix travel with it. beam_size 1 is greedy."""
        c, k = self.config, beam_size
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
        b, dev = src.shape[0], src.device
        state, memory = self.encode(src, src_lengths)
        state, memory = state.repeat_interleave(k, dim=1), memory.repeat(k)
        score = torch.full((b, k), float("-inf"), device=dev)
        score[:, 0] = 0.0  # one live prefix (<bos>) per source at the start
        token = torch.full((b * k,), c.bos_id, device=dev)
        done = torch.zeros(b, k, dtype=torch.bool, device=dev)
        length = torch.zeros(b, k, device=dev)
        history = torch.zeros(b, k, 0, dtype=torch.long, device=dev)
        attn = torch.zeros(b, k, 0, src.shape[1], device=dev)
        frozen = None
        for _ in range(max_len):
            logits, state, w = self.decoder.step(token, state, memory)
            logp = self.next_logprobs(logits).view(b, k, -1)
            if frozen is None:  # a finished prefix may only add <pad>, at no cost
                frozen = torch.full_like(logp[0, 0], float("-inf"))
                frozen[c.pad_id] = 0.0
            logp = torch.where(done[..., None], frozen, logp)
            score, flat = (score[..., None] + logp).view(b, -1).topk(k, dim=-1)
            parent, token_id = flat // logp.shape[-1], flat % logp.shape[-1]
            history = torch.cat([_pick(history, parent), token_id[..., None]], -1)
            attn = torch.cat(
                [_pick(attn, parent), _pick(w.view(b, k, 1, -1), parent)], 2
            )
            was_done = done.gather(1, parent)
            length = length.gather(1, parent) + (~was_done).float()
            done = was_done | (token_id == c.eos_id)
            rows = (parent + torch.arange(b, device=dev)[:, None] * k).view(-1)
            state, token = state[:, rows], token_id.view(-1)
            if bool(done.all()):
                break
        best = (score / length.clamp(min=1.0) ** length_penalty).argmax(dim=1)
        chosen = history[torch.arange(b, device=dev), best]
        ids = [_cut(r, c.eos_id) for r in chosen.tolist()]
        if not return_attention:
            return ids
        weights = attn[torch.arange(b, device=dev), best]  # (B, T, S)
        return ids, _trim(weights, chosen, src_lengths, c.eos_id)


def _pick(t: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """t (B, K, ...) reordered along K by parent (B, K)."""
    index = parent.view(*parent.shape, *[1] * (t.dim() - 2)).expand_as(t)
    return t.gather(1, index)


def _trim(weights, written, src_lengths, eos_id) -> list[torch.Tensor]:
    """weights (B, T, S) of the written tokens (B, T) -> per sentence the rows up to
    and including its first <eos> (all rows if none), over its real source positions:
    a list of (n_i, S_i) tensors on the CPU."""
    out = []
    for i, row in enumerate(written.tolist()):
        n = row.index(eos_id) + 1 if eos_id in row else len(row)
        out.append(weights[i, :n, : int(src_lengths[i])].cpu())
    return out
