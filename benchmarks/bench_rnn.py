"""The book's character-level LSTM language-model step vs the same step written plainly.

Book side: `dlcore.models.rnn.RNNLM` (LSTM, embedding 128, hidden 256, one layer)
trained by `dlcore.fit` with `dlcore.models.rnn.lm_loss`, Adam and gradient clipping at
norm 1, over a `dlcore.TensorLoader` of `lm_windows` of The Time Machine's characters
(batch 64, sequence 128) — the step Part III ch4 trains its language models with
(`metrics={}`: perplexity comes from the loss). Plain side: nn.Embedding + nn.LSTM +
nn.Linear in a hand-written loop over the same windows (randperm + indexing),
`F.cross_entropy`, Adam, `clip_grad_norm_`. Both models start from the same weights
(checked) and see the same amount of data.

As in bench_fit.py, written for a shared 2-vCPU virtual machine whose speed drifts over
seconds: the two sides alternate in blocks of `BLOCK` optimiser steps (plain first in
even rounds, book first in odd ones), each round gives one throughput ratio from two
blocks that ran seconds apart, and the median over rounds is reported with its IQR,
min–max and the CPU-time ratio (statistics from benchmarks/interleave.py). The book's
block is one `fit` epoch over a `BLOCK`-batch loader, so fit's per-epoch overhead is
included. Rounds continue until `ROUNDS`, or until `TIME_BUDGET` seconds have passed
(at least `MIN_ROUNDS`).

Prints one JSON object as its last line: {"ratio": median book/plain throughput in
tokens/s, "ratio_q25", ...}. Needs The Time Machine in the cache ($DLCORE_DATA).
Target: ratio >= 0.97.
"""

import contextlib
import io
import json
import statistics
import time

import torch
import torch.nn.functional as F
from interleave import alternate, describe, ratio_stats  # benchmarks/interleave.py
from torch import nn

import dlcore
from dlcore.data.sequences import lm_windows
from dlcore.models.rnn import RNNLM, RNNLMConfig, lm_loss
from dlcore.tokenize import Vocab, char_tokens

BATCH, SEQ_LEN, EMBED, HIDDEN, LR, CLIP = 64, 128, 128, 256, 3e-3, 1.0
BLOCK = 2  # optimiser steps per timed block (a few seconds on 2 busy cores)
ROUNDS = 40  # at most this many rounds (one block of each side per round)
MIN_ROUNDS = 8
TIME_BUDGET = 100.0  # seconds of timed blocks; a run takes about two minutes
CPU = torch.device("cpu")


class PlainLM(nn.Module):
    """What a reader writes without the book: embedding -> LSTM -> linear head."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, EMBED)
        self.rnn = nn.LSTM(EMBED, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x))[0])


def plain_block(model, data, optimizer) -> None:
    x, y = data
    model.train()
    order = torch.randperm(len(x))
    for start in range(0, len(x), BATCH):
        idx = order[start : start + BATCH]
        logits = model(x[idx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()


def book_block(model, loader, optimizer) -> None:
    # fit's progress bar and epoch line are drawn as usual, into a buffer
    with contextlib.redirect_stdout(io.StringIO()):
        dlcore.fit(
            model,
            loader,
            epochs=1,
            optimizer=optimizer,
            loss_fn=lm_loss,
            metrics={},
            clip_grad_norm=CLIP,
            device=CPU,
        )


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn(*args)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    text = dlcore.load("timemachine").text
    vocab = Vocab(char_tokens(text))
    ids = torch.tensor(vocab.encode(char_tokens(text)), dtype=torch.int64)
    x, y = lm_windows(ids, SEQ_LEN)
    x, y = x[: BLOCK * BATCH], y[: BLOCK * BATCH]  # one block = one pass over these
    config = RNNLMConfig(len(vocab), cell="lstm", embed_dim=EMBED, hidden_size=HIDDEN)
    torch.manual_seed(0)
    book_model = RNNLM(config)
    torch.manual_seed(0)
    plain_model = PlainLM(len(vocab))  # same modules in the same order: same weights
    for a, b in zip(book_model.parameters(), plain_model.parameters(), strict=True):
        assert torch.equal(a, b), "the two models must start from the same weights"
    sides = {
        "plain": (
            plain_block,
            plain_model,
            (x, y),
            torch.optim.Adam(plain_model.parameters(), lr=LR),
        ),
        "book": (
            book_block,
            book_model,
            dlcore.TensorLoader(x, y, BATCH, shuffle=True, device=CPU),
            torch.optim.Adam(book_model.parameters(), lr=LR),
        ),
    }
    for block, model, data, optimizer in sides.values():
        block(model, data, optimizer)  # warm-up block, not timed
    wall, cpu = alternate(
        lambda name, r: timed(*sides[name]), ROUNDS, MIN_ROUNDS, TIME_BUDGET
    )
    rounds = len(wall["plain"])
    ratios = [p / b for p, b in zip(wall["plain"], wall["book"])]  # throughput ratio
    cpu_ratios = [p / b for p, b in zip(cpu["plain"], cpu["book"])]
    stats = ratio_stats(ratios, cpu_ratios, digits=3)
    tokens = BLOCK * BATCH * SEQ_LEN
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
                "seq_len": SEQ_LEN,
                "hidden_size": HIDDEN,
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
