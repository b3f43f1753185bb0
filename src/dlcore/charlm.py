"""Character-level language modelling on Tiny Shakespeare, as Part IV ch4 trains GPTs
and as its recipe (notebooks/part4_attention/checkpoints/train_gpt.py) trains them for
longer: one code path for both, so a shipped number is what the chapter's run becomes.

- `CharData.build` splits the text by position — train 0–85 %, validation 85–90 % (every
  choice and ablation), test 90–100 % (nanoGPT's validation split; touched once per
  reported model) — and maps characters to ids with a vocabulary of all 65 characters.
- `CharData.batch` draws nanoGPT-style random windows x = ids[i : i+T], y = x shifted.
- `eval_loss` is the mean next-character loss (nats per character) over *every*
  non-overlapping window of a split, not a random sample of them.
- `train_gpt` is nanoGPT's loop: AdamW (decay on matrices only), linear warm-up then
  cosine decay of the learning rate, gradient clipping, a progress bar, mixed precision
  on CUDA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .models.gpt import GPT, GPTConfig
from .models.rnn import lm_loss
from .runtime import amp_dtype
from .runtime import device as default_device
from .train import progress

__all__ = ["CharData", "TrainLog", "cosine_lr", "eval_loss", "train_gpt"]

SPLITS = (0.85, 0.90)  # train | validation | test boundaries, as fractions of the text


@dataclass
class CharData:
    itos: list[str]
    train: torch.Tensor  # (N_train,) int64 ids
    val: torch.Tensor
    test: torch.Tensor

    @classmethod
    def build(cls, text: str, splits: tuple[float, float] = SPLITS) -> CharData:
        a, b = splits
        if not 0.0 < a < b < 1.0:
            raise ValueError(f"splits must satisfy 0 < a < b < 1, got {splits!r}")
        itos = sorted(set(text))
        stoi = {ch: i for i, ch in enumerate(itos)}
        ids = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
        i, j = int(a * len(ids)), int(b * len(ids))
        return cls(itos, ids[:i], ids[i:j], ids[j:])

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, s: str) -> torch.Tensor:
        stoi = {ch: i for i, ch in enumerate(self.itos)}
        missing = sorted(set(s) - stoi.keys())
        if missing:
            raise ValueError(f"characters not in the vocabulary: {missing!r}")
        return torch.tensor([stoi[ch] for ch in s], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
        return getattr(self, name)

    def batch(
        self, split: str, batch_size: int, block_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows of `split`: x, y (batch_size, block_size), y = x shifted."""
        ids = self.split(split)
        starts = torch.randint(
            len(ids) - block_size, (batch_size,), generator=generator
        )
        x = torch.stack([ids[s : s + block_size] for s in starts.tolist()])
        y = torch.stack([ids[s + 1 : s + 1 + block_size] for s in starts.tolist()])
        return x, y


@torch.no_grad()
def eval_loss(
    model: nn.Module,
    ids: torch.Tensor,
    block_size: int,
    batch_size: int = 64,
    device=None,
) -> float:
    """Mean next-character loss (nats/char) over all non-overlapping windows of `ids`
    (N,), each window predicting its block_size next characters; the tail that does not
    fill a window is left out."""
    device = torch.device(device) if device is not None else default_device()
    n = (len(ids) - 1) // block_size
    if n < 1:
        raise ValueError(f"{len(ids)} ids hold no window of block_size={block_size}")
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1 : n * block_size + 1].view(n, block_size)
    was_training, total = model.training, 0.0
    model.eval()
    for i in range(0, n, batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        with _autocast(device):
            logits = model(xb)
        total += lm_loss(logits.float(), yb).item() * len(xb)
    model.train(was_training)
    return total / n


def cosine_lr(
    step: int, *, peak: float, floor: float, warmup: int, total: int
) -> float:
    """nanoGPT's schedule: linear warm-up to `peak` over `warmup` steps, then a cosine
    down to `floor` at step `total` (and `floor` after it)."""
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    if step >= total:
        return floor
    progress_ = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress_)) * (peak - floor)


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)  # where validation was measured
    val: list[float] = field(default_factory=list)  # validation loss there (nats/char)
    train: list[float] = field(default_factory=list)  # mean training loss since last
    seconds: float = 0.0  # wall time of the training steps (evaluations excluded)
    tokens: int = 0  # training tokens seen


def _autocast(device: torch.device):
    dtype = amp_dtype(device)
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def _optimizer(model: nn.Module, lr: float, weight_decay: float, betas):
    """AdamW that decays matrices and embedding tables, not norm gains (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def train_gpt(
    config: GPTConfig,
    data: CharData,
    *,
    iters: int = 2000,
    batch_size: int = 12,
    lr: float = 1e-3,
    min_lr: float = 1e-4,
    warmup: int = 100,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.99),
    clip: float = 1.0,
    eval_every: int = 500,
    seed: int = 0,
    device=None,
    show_progress: bool = True,
) -> tuple[GPT, TrainLog]:
    """Train a GPT(config) from seed `seed` (weights and batches) for `iters` steps;
    validation loss (all windows of data.val) every `eval_every` steps and at the end.
    Returns the final model (eval mode) and its log."""
    if iters < 1 or eval_every < 1:
        raise ValueError(
            f"iters and eval_every must be >= 1, got {iters}, {eval_every}"
        )
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    model = GPT(config).to(device)
    optimizer = _optimizer(model, lr, weight_decay, betas)
    generator = torch.Generator().manual_seed(seed)
    log, running, seen = TrainLog(), 0.0, 0
    bar = progress(range(iters), desc="train", disable=not show_progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(
                step, peak=lr, floor=min_lr, warmup=warmup, total=iters
            )
        start = time.perf_counter()
        x, y = data.batch("train", batch_size, config.block_size, generator)
        x, y = x.to(device), y.to(device)
        model.train()
        with _autocast(device):
            loss = lm_loss(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        running, seen = running + loss.item(), seen + 1
        log.seconds += time.perf_counter() - start
        log.tokens += x.numel()
        if (step + 1) % eval_every == 0 or step + 1 == iters:
            val = eval_loss(model, data.val, config.block_size, device=device)
            log.steps.append(step + 1)
            log.val.append(val)
            log.train.append(running / seen)
            running, seen = 0.0, 0
            bar.set_postfix(train=f"{log.train[-1]:.3f}", val=f"{val:.3f}")
    return model.eval(), log
