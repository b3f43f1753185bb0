"""Greedy and beam-search decoding for any left-to-right decoder, written once.

A model hands in `step(token, rows)`: `token` (N, 1) holds the last token of each of
the N prefixes; `rows` (N,) (or None on the first call) says which row of the previous
call each prefix continues, so the model can reorder its state (RNN hidden state, or a
Transformer's key/value cache) before it reads `token`. `step` returns
log-probabilities of the next token, (N, V), float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Step = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def cut_at(ids: list[int], eos_id: int) -> list[int]:
    """The ids before the first <eos> (all of them if there is none)."""
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


@torch.no_grad()
def greedy_search(
    step: Step, batch: int, max_len: int, *, bos_id: int, eos_id: int, device
) -> list[list[int]]:
    """The most probable next token at every step until every row has written <eos>
    or max_len tokens. Returns ids without <bos>/<eos>, one list per row."""
    token = torch.full((batch, 1), bos_id, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    out, rows = [], None
    for _ in range(max_len):
        token = step(token, rows).argmax(-1, keepdim=True)
        rows = torch.arange(batch, device=device)
        out.append(token[:, 0])
        done |= token[:, 0] == eos_id
        if bool(done.all()):
            break
    return [cut_at(row, eos_id) for row in torch.stack(out, 1).tolist()]


@torch.no_grad()
def beam_search(
    step: Step,
    batch: int,
    beam_size: int,
    max_len: int,
    length_penalty: float = 1.0,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    device,
) -> list[list[int]]:
    """Keep the beam_size most probable prefixes (sum of log-probabilities) per source;
    a prefix that wrote <eos> stays in the beam with its score frozen. Returns, per
    source, the hypothesis with the best score / length^length_penalty (length counts
    <eos>; 0 = no normalisation), without <bos>/<eos>. Rows of `step` are source-major:
    row b·K + j is beam j of source b. beam_size 1 is greedy search."""
    k = beam_size
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    b = batch
    score = torch.full((b, k), float("-inf"), device=device)
    score[:, 0] = 0.0  # one live prefix (<bos>) per source at the start
    token = torch.full((b * k, 1), bos_id, device=device)
    done = torch.zeros(b, k, dtype=torch.bool, device=device)
    length = torch.zeros(b, k, device=device)
    history = torch.zeros(b, k, 0, dtype=torch.long, device=device)
    rows = None
    for _ in range(max_len):
        logp = step(token, rows).view(b, k, -1)
        frozen = torch.full_like(logp[0, 0], float("-inf"))
        frozen[pad_id] = 0.0  # a finished prefix may only go on with <pad>, free
        logp = torch.where(done[..., None], frozen, logp)
        score, flat = (score[..., None] + logp).view(b, -1).topk(k, dim=-1)
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
        done = was_done | (token_id == eos_id)
        rows = (parent + torch.arange(b, device=device)[:, None] * k).view(-1)
        token = token_id.view(-1, 1)
        if bool(done.all()):
            break
    best = (score / length.clamp(min=1.0) ** length_penalty).argmax(dim=1)
    chosen = history[torch.arange(b, device=device), best].tolist()
    return [cut_at(row, eos_id) for row in chosen]
