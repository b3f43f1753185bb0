"""Batches of token sequences: fixed windows for language models, padded batches of
variable-length sequences (with their lengths) for classifiers and encoder–decoders."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..runtime import device as default_device


def lm_windows(ids: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token stream ids: (N,) into non-overlapping windows for next-token
    prediction: x (M, T) and y (M, T) with y[m, t] = ids[m*T + t + 1], M = (N-1) // T.
    The tail that does not fill a window is dropped."""
    if ids.dim() != 1:
        raise ValueError(
            f"ids must be 1-D (a token stream), got shape {tuple(ids.shape)}"
        )
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    m = (len(ids) - 1) // seq_len
    if m == 0:
        raise ValueError(f"{len(ids)} tokens cannot fill one window of {seq_len} + 1")
    x = ids[: m * seq_len].view(m, seq_len)
    y = ids[1 : m * seq_len + 1].view(m, seq_len)
    return x, y


def pad_batch(
    seqs: Sequence[torch.Tensor], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D int sequences into tokens (B, T_max), padded with `pad_id` on the
    right, and lengths (B,) int64 (on the CPU, as `pack_padded_sequence` wants)."""
    if len(seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    if int(lengths.min()) == 0:
        raise ValueError("pad_batch: a sequence of length 0 cannot be packed")
    tokens = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.int64)
    for row, s in enumerate(seqs):
        tokens[row, : len(s)] = torch.as_tensor(s, dtype=torch.int64)
    return tokens, lengths


def check_batch_size(batch_size) -> None:
    """Raise ValueError unless batch_size is a positive int (bools rejected)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def batch_order(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool,
    bucket: bool,
    generator: torch.Generator | None = None,
    chunk_batches: int | None = 50,
) -> list[torch.Tensor]:
    """Indices of each mini-batch, for sequences of the given lengths.

    shuffle: a random order (from `generator`). bucket: sort by length, within chunks of
    `chunk_batches` batches of the (shuffled) order, or over everything when None, so
    each batch holds sequences of similar length; with shuffle the batches are then
    shuffled too. Returns int64 index tensors, the last one possibly shorter."""
    n = len(lengths)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if bucket:
        by_order = torch.as_tensor(lengths, dtype=torch.int64)[order]
        chunk = n if chunk_batches is None else chunk_batches * batch_size
        starts = range(0, n, max(chunk, 1))
        order = torch.cat(
            [
                order[i : i + chunk][
                    torch.argsort(by_order[i : i + chunk], stable=True)
                ]
                for i in starts
            ]
        )
    batches = list(order.split(batch_size))
    if shuffle and bucket:
        perm = torch.randperm(len(batches), generator=generator)
        batches = [batches[i] for i in perm]
    return batches


class PaddedLoader:
    """Mini-batches of variable-length sequences: yields ((tokens (B, T), lengths (B,)),
    y_batch). With `bucket=True`, each shuffled batch is drawn from sequences of similar
    length (sorted within chunks of 50 batches), so little compute goes to padding.
    Tokens and y go to `device`; lengths stay on the CPU."""

    def __init__(
        self,
        seqs: Sequence[torch.Tensor],
        y: torch.Tensor,
        batch_size: int,
        *,
        pad_id: int,
        shuffle: bool = False,
        bucket: bool = False,
        device: torch.device | str | None = None,
        seed: int | None = None,
    ):
        if len(seqs) != len(y):
            raise ValueError(f"{len(seqs)} sequences but {len(y)} targets")
        check_batch_size(batch_size)
        self.seqs, self.y, self.batch_size = list(seqs), y, batch_size
        self.pad_id, self.shuffle, self.bucket = pad_id, shuffle, bucket
        self.device = torch.device(device) if device is not None else default_device()
        self.generator = (
            torch.Generator().manual_seed(seed) if seed is not None else None
        )

    def __len__(self) -> int:
        return -(-len(self.seqs) // self.batch_size)

    def __iter__(self):
        lengths = [len(s) for s in self.seqs]
        for index in batch_order(
            lengths,
            self.batch_size,
            shuffle=self.shuffle,
            bucket=self.bucket,
            generator=self.generator,
        ):
            tokens, lengths_b = pad_batch([self.seqs[i] for i in index], self.pad_id)
            yb = self.y[index].to(self.device)
            yield (tokens.to(self.device), lengths_b), yb
