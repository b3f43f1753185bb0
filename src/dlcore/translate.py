"""English → Chinese translation with the Transformer, as Part IV ch3 trains it and as
its checkpoint recipe (notebooks/part4_attention/checkpoints/train_transformer_mt.py)
trains it for longer: one code path for both, so the shipped checkpoint is what the
chapter's live run becomes with more epochs.

- `MTData.build` makes the vocabularies from the training pairs (English words and
  Chinese characters seen at least `min_freq` times, as Part III ch8) and encodes pairs.
- `train_transformer` : AdamW, the inverse-square-root warm-up schedule, label
  smoothing, gradient clipping; after every epoch the *unsmoothed* validation loss
  (nats per character, comparable with Parts III and IV ch1) picks the weights kept.
- `translate` decodes a list of pairs in batches of similar length, greedily or with
  beam search.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .data.sequences import pad_batch
from .data.translation import Pair, PairLoader
from .models.seq2seq import seq2seq_loss
from .models.transformer import (
    TransformerConfig,
    TransformerSeq2Seq,
    smoothed_loss,
    warmup_inverse_sqrt,
)
from .runtime import device as default_device
from .tokenize import SPECIALS, Vocab, char_tokens, word_tokens
from .train import History, evaluate, fit

__all__ = ["MTData", "train_transformer", "translate"]


@dataclass
class MTData:
    src_vocab: Vocab
    tgt_vocab: Vocab

    @classmethod
    def build(cls, train_pairs: Sequence[Pair], min_freq: int = 2) -> MTData:
        words = [w for en, _ in train_pairs for w in word_tokens(en)]
        chars = [ch for _, zh in train_pairs for ch in char_tokens(zh)]
        return cls(Vocab(words, min_freq=min_freq), Vocab(chars, min_freq=min_freq))

    def digest(self) -> str:
        """sha256 of both vocabularies' token lists: a checkpoint's ids mean the same
        tokens only if this matches."""
        h = hashlib.sha256()
        for vocab in (self.src_vocab, self.tgt_vocab):
            h.update("\n".join(vocab.itos).encode() + b"\n\n")
        return h.hexdigest()

    def encode_source(self, pairs: Sequence[Pair]) -> list[torch.Tensor]:
        return [torch.tensor(self.src_vocab.encode(word_tokens(en))) for en, _ in pairs]

    def encode_target(self, pairs: Sequence[Pair]) -> list[torch.Tensor]:
        v = self.tgt_vocab
        return [
            torch.tensor([v.bos_id, *v.encode(char_tokens(zh)), v.eos_id])
            for _, zh in pairs
        ]

    def loader(self, pairs, batch_size, *, shuffle=False, seed=0, device=None):
        """PairLoader over `pairs`, batches of similar source length."""
        return PairLoader(
            self.encode_source(pairs),
            self.encode_target(pairs),
            batch_size,
            pad_id=self.tgt_vocab.pad_id,
            shuffle=shuffle,
            bucket=True,
            seed=seed,
            device=device,
        )

    def config(self, **kw) -> TransformerConfig:
        v = self.tgt_vocab
        ids = dict(pad_id=v.pad_id, bos_id=v.bos_id, eos_id=v.eos_id)
        return TransformerConfig(len(self.src_vocab), len(v), **ids, **kw)


def train_transformer(
    config: TransformerConfig,
    data: MTData,
    train_pairs: Sequence[Pair],
    val_pairs: Sequence[Pair],
    *,
    epochs: int,
    batch_size: int = 128,
    peak_lr: float = 1e-3,
    warmup_steps: int = 400,
    smoothing: float = 0.1,
    clip: float = 1.0,
    seed: int = 0,
    device=None,
    on_epoch: Callable[[int, TransformerSeq2Seq, History], None] | None = None,
) -> tuple[TransformerSeq2Seq, History, int]:
    """Train from a fixed seed; returns (model with the weights of the epoch of lowest
    validation loss, history, that epoch). history["val_nll"] holds the unsmoothed
    validation loss per epoch; `on_epoch(epoch, model, history)` runs after each."""
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    model = TransformerSeq2Seq(config).to(device)
    pad = config.pad_id
    train_loader = data.loader(
        train_pairs, batch_size, shuffle=True, seed=seed, device=device
    )
    val_loader = data.loader(val_pairs, 256, device=device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=peak_lr, betas=(0.9, 0.98), weight_decay=0.01
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_inverse_sqrt(warmup_steps)
    )
    history, best = History(), (float("inf"), None, 0)
    for epoch in range(1, epochs + 1):
        fit(
            model,
            train_loader,
            epochs=1,
            optimizer=optimizer,
            loss_fn=lambda out, y: smoothed_loss(out, y, smoothing, pad),
            metrics={},
            scheduler=scheduler,
            clip_grad_norm=clip,
            history=history,
            device=device,
        )
        nll = evaluate(
            model,
            val_loader,
            loss_fn=lambda out, y: seq2seq_loss(out, y, pad),
            metrics={},
            device=device,
        )["loss"]
        history.epochs[-1]["val_nll"] = nll
        if nll < best[0]:
            best = (nll, copy.deepcopy(model.state_dict()), epoch)
        if on_epoch is not None:
            on_epoch(epoch, model, history)
    model.load_state_dict(best[1])
    return model.eval(), history, best[2]


@torch.no_grad()
def translate(
    model: TransformerSeq2Seq,
    data: MTData,
    pairs: Sequence[Pair],
    beam_size: int = 1,
    length_penalty: float = 1.0,
    max_len: int = 60,
    batch_size: int = 200,
) -> list[str]:
    """Chinese translations of the English sides of `pairs`, in order (K=1: greedy)."""
    model.eval()
    src = data.encode_source(pairs)
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    dev = next(model.parameters()).device
    out = [""] * len(src)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        tokens, _ = pad_batch([src[i] for i in index], data.src_vocab.pad_id)
        tokens = tokens.to(dev)
        if beam_size == 1:
            ids = model.greedy(tokens, None, max_len)
        else:
            ids = model.beam_search(tokens, None, beam_size, max_len, length_penalty)
        for i, row in zip(index, ids):
            out[i] = "".join(t for t in data.tgt_vocab.decode(row) if t not in SPECIALS)
    return out
