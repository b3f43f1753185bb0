"""The book's modern GPT training step vs the same architecture written plainly.

Book side: `dlcore.models.gpt.GPT(GPTConfig(vocab_size).modern())` — 4 layers, C=128,
4 query heads sharing 2 key/value heads (GQA), RMSNorm, RoPE, SwiGLU, tied output
matrix — trained with `dlcore.models.rnn.lm_loss`, AdamW (lr 1e-3, betas 0.9/0.99,
weight decay 0.1) and gradient clipping at norm 1, on random windows of Tiny
Shakespeare's characters (batch 12, context 64): the step Part IV trains its character
GPT with. Plain side: the same architecture in about sixty lines of plain PyTorch
(`PlainGPT` below: nn.RMSNorm, bias-free linears, RoPE by hand in the rotate-half
convention, `F.scaled_dot_product_attention(is_causal=True, enable_gqa=True)`, SwiGLU),
`F.cross_entropy`, the same optimiser and clipping. The plain model is loaded with the
book model's weights through an explicit name map, and the two are checked to give the
same logits on one batch before any timing; both sides see identical batches (window
starts drawn once from a seeded generator, the windows built before timing).

As in bench_rnn.py, written for a shared 2-vCPU virtual machine whose speed drifts over
seconds: the two sides alternate in blocks of `BLOCK` optimiser steps (plain first in
even rounds, book first in odd ones), each round gives one throughput ratio from two
blocks that ran seconds apart, and the median over rounds is reported with its IQR,
min–max and the CPU-time ratio (statistics from benchmarks/interleave.py). Rounds
continue until `ROUNDS`, or until `TIME_BUDGET` seconds have passed (at least
`MIN_ROUNDS`). Threads: PyTorch's default (reported), as in bench_rnn.py.

Prints one JSON object as its last line: {"ratio": median book/plain throughput in
tokens/s, "ratio_q25", ...}. Needs Tiny Shakespeare in the cache ($DLCORE_DATA).
Target: ratio >= 0.97.
"""

import json
import statistics
import time

import torch
import torch.nn.functional as F
from interleave import alternate, describe, ratio_stats  # benchmarks/interleave.py
from torch import nn

import dlcore
from dlcore.models.gpt import GPT, GPTConfig
from dlcore.models.rnn import lm_loss

BATCH, CONTEXT, CLIP = 12, 64, 1.0
OPTIM = {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.1}
BLOCK = 8  # optimiser steps per timed block (about a second on 2 busy cores)
ROUNDS = 100  # at most this many rounds (one block of each side per round)
MIN_ROUNDS = 8
TIME_BUDGET = 90.0  # seconds of timed blocks; a run takes about two minutes
CPU = torch.device("cpu")


class PlainBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        c, self.h, self.kvh, self.d = cfg.n_embd, cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.ln1, self.ln2 = nn.RMSNorm(c, eps=1e-5), nn.RMSNorm(c, eps=1e-5)
        self.q = nn.Linear(c, c, bias=False)
        self.kv = nn.Linear(c, 2 * self.kvh * self.d, bias=False)
        self.o = nn.Linear(c, c, bias=False)
        self.w1 = nn.Linear(c, cfg.mlp_hidden, bias=False)  # gate
        self.w3 = nn.Linear(c, cfg.mlp_hidden, bias=False)  # up
        self.w2 = nn.Linear(cfg.mlp_hidden, c, bias=False)  # down

    @staticmethod
    def rope(x, cos, sin):  # rotate-half: pair channel i with i + d/2
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def forward(self, x, cos, sin):
        b, t, c = x.shape
        a = self.ln1(x)
        q = self.q(a).view(b, t, self.h, self.d).transpose(1, 2)
        k, v = self.kv(a).view(b, t, 2, self.kvh, self.d).permute(2, 0, 3, 1, 4)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, c))
        m = self.ln2(x)
        return x + self.w2(F.silu(self.w1(m)) * self.w3(m))


class PlainGPT(nn.Module):
    """What a reader writes without the book: the same modern GPT, plainly."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(PlainBlock(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.RMSNorm(cfg.n_embd, eps=1e-5)
        d = cfg.head_dim
        inv_freq = cfg.rope_base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        angles = torch.arange(cfg.block_size, dtype=torch.float64)[:, None] * inv_freq
        angles = torch.cat([angles, angles], dim=-1)  # (block_size, d)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, idx):
        t = idx.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        x = self.tok(idx)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.ln_f(x) @ self.tok.weight.T  # tied output matrix


def name_map(cfg: GPTConfig) -> dict[str, str]:
    """Book parameter name -> plain parameter name (the tied head is the embedding)."""
    names = {"embed.weight": "tok.weight", "norm.weight": "ln_f.weight"}
    per_layer = {
        "norm1": "ln1",
        "attn.query": "q",
        "attn.key_value": "kv",
        "attn.proj": "o",
        "norm2": "ln2",
        "mlp.fc": "w1",
        "mlp.up": "w3",
        "mlp.proj": "w2",
    }
    for i in range(cfg.n_layer):
        for book, plain in per_layer.items():
            names[f"blocks.{i}.{book}.weight"] = f"layers.{i}.{plain}.weight"
    return names


def plain_block(model, batches, optimizer) -> None:
    model.train()
    for x, y in batches:
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()


def book_block(model, batches, optimizer) -> None:
    model.train()
    for x, y in batches:
        loss = lm_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn(*args)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    text = dlcore.load("tinyshakespeare").text
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = torch.tensor([stoi[ch] for ch in text], dtype=torch.int64)
    cfg = GPTConfig(vocab_size=len(chars), block_size=CONTEXT).modern()

    # the same windows for both sides: block r of each side trains on blocks[r]
    g = torch.Generator().manual_seed(0)
    n_steps = (ROUNDS + 1) * BLOCK  # one block per round, plus the warm-up block
    starts = torch.randint(len(ids) - CONTEXT, (n_steps, BATCH), generator=g)
    windows = ids[starts[..., None] + torch.arange(CONTEXT + 1)]  # (steps, B, T + 1)
    steps = [(w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in windows]
    blocks = [steps[i : i + BLOCK] for i in range(0, len(steps), BLOCK)]

    torch.manual_seed(0)
    book_model = GPT(cfg)
    plain_model = PlainGPT(cfg)
    book_state = book_model.state_dict()
    plain_state = {p: book_state[b] for b, p in name_map(cfg).items()}
    plain_model.load_state_dict(plain_state, strict=True)
    assert torch.equal(book_model.head.weight, plain_model.tok.weight)
    with torch.no_grad():
        x0 = blocks[0][0][0]
        book_logits, plain_logits = book_model(x0), plain_model(x0)
    assert torch.allclose(book_logits, plain_logits, atol=1e-5, rtol=1e-5), (
        "the two models must compute the same logits: max diff "
        f"{(book_logits - plain_logits).abs().max().item():.2e}"
    )
    n_book = sum(p.numel() for p in book_model.parameters())
    n_plain = sum(p.numel() for p in plain_model.parameters())
    assert n_book == n_plain, (n_book, n_plain)

    sides = {
        "plain": (
            plain_block,
            plain_model,
            torch.optim.AdamW(plain_model.parameters(), **OPTIM),
        ),
        "book": (
            book_block,
            book_model,
            torch.optim.AdamW(book_model.parameters(), **OPTIM),
        ),
    }
    for block, model, optimizer in sides.values():
        block(model, blocks[-1], optimizer)  # warm-up block, not timed

    def timed_side(name: str, r: int) -> tuple[float, float]:
        block, model, optimizer = sides[name]
        return timed(block, model, blocks[r], optimizer)

    wall, cpu = alternate(timed_side, ROUNDS, MIN_ROUNDS, TIME_BUDGET)
    rounds = len(wall["plain"])
    ratios = [p / b for p, b in zip(wall["plain"], wall["book"])]  # throughput ratio
    cpu_ratios = [p / b for p, b in zip(cpu["plain"], cpu["book"])]
    stats = ratio_stats(ratios, cpu_ratios, digits=3)
    tokens = BLOCK * BATCH * CONTEXT
    for name in ("plain", "book"):
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"{name:>5}: median block {1e3 * w:7.1f} ms wall, {1e3 * c:7.1f} ms CPU "
            f"({tokens / w:,.0f} tokens/s wall)"
        )
    print(
        f"book/plain throughput over {rounds} rounds of {BLOCK} steps: "
        + describe(stats, digits=3)
    )
    print(
        json.dumps(
            {
                **stats,
                "steps_per_block": BLOCK,
                "batch_size": BATCH,
                "context": CONTEXT,
                "n_layer": cfg.n_layer,
                "n_embd": cfg.n_embd,
                "n_params": n_book,
                "plain_tokens_per_s": round(tokens / statistics.median(wall["plain"])),
                "book_tokens_per_s": round(tokens / statistics.median(wall["book"])),
                "plain_wall_s": round(sum(wall["plain"]), 3),
                "plain_cpu_s": round(sum(cpu["plain"]), 3),
                "book_wall_s": round(sum(wall["book"]), 3),
                "book_cpu_s": round(sum(cpu["book"]), 3),
                "threads": torch.get_num_threads(),
                "device": dlcore.device_name(CPU),
                "target": 0.97,
            }
        )
    )


if __name__ == "__main__":
    main()
