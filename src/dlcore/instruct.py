"""Instruction tuning in miniature, as Part IV ch4 does it to a character GPT: string
tasks with one exact answer, a loss on the answer only, and exact-match accuracy on
words the tuning never saw.

- `task_words` takes the lower-case words of a text and splits them by a hash of the
  word into tuning / held-out sets, so the split does not depend on order or seed.
- `make_examples` writes each (task, word) as prompt "Q: <task> <word>\\nA:" and answer
  " <result>\\n" — characters every Shakespeare vocabulary has.
- `instruction_batch` packs examples into (x, y, mask) rows, mask 1 where y is an
  answer character; `masked_lm_loss` averages the loss over those positions only.
- `finetune` is AdamW on that loss, optionally with "replay": each step also takes the
  plain language-model loss on a batch of the pre-training text, against forgetting.
  `exact_match` decodes greedily to the newline.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .charlm import CharData
from .models.gpt import GPT, generate
from .models.rnn import lm_loss
from .train import progress

__all__ = [
    "TASKS",
    "Example",
    "exact_match",
    "finetune",
    "instruction_batch",
    "make_examples",
    "masked_lm_loss",
    "task_words",
]

TASKS = {"upper": str.upper, "reverse": lambda w: w[::-1]}


@dataclass(frozen=True)
class Example:
    task: str
    word: str

    @property
    def prompt(self) -> str:
        return f"Q: {self.task} {self.word}\nA:"

    @property
    def answer(self) -> str:
        return f" {TASKS[self.task](self.word)}\n"


def task_words(
    text: str, min_len: int = 3, max_len: int = 8, held_out: float = 0.2
) -> tuple[list[str], list[str]]:
    """(tuning, held-out) sorted lists of the distinct lower-case words of `text` with
    min_len..max_len letters; a word is held out when its sha256 falls in the first
    `held_out` share of the hash range."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {held_out!r}")
    words = sorted(set(re.findall(rf"\b[a-z]{{{min_len},{max_len}}}\b", text)))
    cut = int(held_out * 2**32)
    h = {
        w: int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "big") for w in words
    }
    return [w for w in words if h[w] >= cut], [w for w in words if h[w] < cut]


def make_examples(words: list[str], tasks=tuple(TASKS)) -> list[Example]:
    unknown = sorted(set(tasks) - TASKS.keys())
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {sorted(TASKS)}")
    return [Example(t, w) for w in words for t in tasks]


def instruction_batch(
    examples: list[Example], encode, pad_id: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, y, mask: (B, L) with L the longest example less one (<= block_size). Row b is
    prompt + answer, shifted; mask[b, t] = 1 where y[b, t] is a character of the answer.
    Short rows are padded with pad_id (mask 0)."""
    rows = [(encode(e.prompt), encode(e.answer)) for e in examples]
    width = max(len(p) + len(a) for p, a in rows) - 1
    if width > block_size:
        raise ValueError(
            f"an example needs {width} positions > block_size={block_size}"
        )
    x = torch.full((len(rows), width), pad_id, dtype=torch.long)
    y, mask = x.clone(), torch.zeros(len(rows), width, dtype=torch.bool)
    for b, (p, a) in enumerate(rows):
        ids = torch.cat([p, a])
        x[b, : len(ids) - 1], y[b, : len(ids) - 1] = ids[:-1], ids[1:]
        mask[b, len(p) - 1 : len(ids) - 1] = True  # targets that are answer characters
    return x, y, mask


def masked_lm_loss(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor):
    """Mean cross-entropy (nats/char) over positions where mask is True.
    logits (B, L, V), y (B, L), mask (B, L) bool."""
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return losses[mask.flatten()].mean()


def finetune(
    model: GPT,
    examples: list[Example],
    encode,
    pad_id: int,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 3e-4,
    replay: CharData | None = None,
    replay_batch: int = 12,
    seed: int = 0,
    show_progress: bool = True,
) -> list[float]:
    """Tune `model` in place on random batches of `examples` with AdamW at a constant
    `lr`, loss on answers only; with `replay`, each step adds the next-character loss
    of `replay_batch` random training windows of that text. Returns the answer loss of
    every step."""
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator, losses = torch.Generator().manual_seed(seed), []
    model.train()
    for _ in progress(range(steps), desc="tune", disable=not show_progress):
        pick = torch.randint(len(examples), (batch_size,), generator=generator)
        batch = [examples[i] for i in pick.tolist()]
        x, y, mask = instruction_batch(batch, encode, pad_id, model.config.block_size)
        loss = masked_lm_loss(
            model(x.to(device)).float(), y.to(device), mask.to(device)
        )
        total = loss
        if replay is not None:
            size = model.config.block_size
            tx, ty = replay.batch("train", replay_batch, size, generator)
            total = loss + lm_loss(model(tx.to(device)).float(), ty.to(device))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def exact_match(
    model: GPT, examples: list[Example], encode, decode, *, use_cache: bool = True
) -> list[bool]:
    """Greedy answer of each example, cut at its first newline, == the true answer.
    Examples with prompts of one length are decoded together."""
    device = next(model.parameters()).device
    model.eval()
    out: dict[int, bool] = {}
    by_length: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        by_length.setdefault(len(e.prompt), []).append(i)
    for idx in by_length.values():
        prompts = torch.stack([encode(examples[i].prompt) for i in idx]).to(device)
        room = model.config.block_size - prompts.shape[1]
        new = min(room, max(len(examples[i].answer) for i in idx))
        ids = generate(model, prompts, new, temperature=0, use_cache=use_cache)[
            :, prompts.shape[1] :
        ]
        for i, row in zip(idx, ids.tolist()):
            text = decode(row)
            got = text[: text.index("\n") + 1] if "\n" in text else text
            out[i] = got == examples[i].answer
    return [out[i] for i in range(len(examples))]
