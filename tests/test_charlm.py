"""dlcore.charlm: splits, batches, the evaluation over every window, the schedule, and
a short training run that must lower the loss."""

import math

import pytest
import torch
from torch import nn

from dlcore.charlm import CharData, cosine_lr, eval_loss, train_gpt
from dlcore.models.gpt import GPTConfig

TEXT = "".join(chr(97 + (i * 7 + i // 6) % 6) for i in range(2000))  # 6 letters


def test_splits_are_contiguous_and_ordered():
    data = CharData.build(TEXT)
    assert data.itos == list("abcdef") and data.vocab_size == 6
    assert (len(data.train), len(data.val), len(data.test)) == (1700, 100, 200)
    joined = torch.cat([data.train, data.val, data.test])
    assert data.decode(joined) == TEXT
    assert torch.equal(data.encode("fab"), torch.tensor([5, 0, 1]))
    with pytest.raises(ValueError, match="'z'"):
        data.encode("az")
    with pytest.raises(ValueError, match="splits"):
        CharData.build(TEXT, (0.9, 0.85))
    with pytest.raises(ValueError, match="split must be"):
        data.split("dev")


def test_batches_are_shifted_windows_of_the_split():
    data = CharData.build(TEXT)
    x, y = data.batch("val", 5, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8) and x.dtype == torch.long
    val = data.decode(data.val)
    for row_x, row_y in zip(x, y):
        s = data.decode(row_x) + data.decode(row_y)[-1]
        assert s in val and data.decode(row_y) == s[1:]
    again = data.batch("val", 5, 8, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x)


class Uniform(nn.Module):
    """Equal logits for every character: the loss is log V on every window."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, idx):
        return torch.zeros(*idx.shape, self.vocab)


class Copy(nn.Module):
    """Predicts 'the next id is the current id + 1': loss over windows by hand."""

    def forward(self, idx):
        return 30.0 * nn.functional.one_hot((idx + 1) % 6, 6).float()


def test_eval_loss_covers_every_full_window():
    ids = torch.arange(23) % 6
    assert math.isclose(
        eval_loss(Uniform(6), ids, 5, device="cpu"), math.log(6), rel_tol=1e-6
    )
    # ids + 1 is right everywhere: the loss is that of a logit margin of 30
    expected = -torch.log_softmax(torch.tensor([30.0, 0, 0, 0, 0, 0]), 0)[0].item()
    got = eval_loss(Copy(), ids, 5, batch_size=2, device="cpu")
    assert math.isclose(got, expected, rel_tol=1e-6)
    with pytest.raises(ValueError, match="no window"):
        eval_loss(Copy(), ids[:5], 5, device="cpu")


def test_cosine_schedule_endpoints():
    kw = dict(peak=1e-3, floor=1e-4, warmup=10, total=110)
    assert cosine_lr(0, **kw) == pytest.approx(1e-3 / 11)
    assert cosine_lr(10, **kw) == pytest.approx(1e-3)
    assert cosine_lr(60, **kw) == pytest.approx(5.5e-4)
    assert cosine_lr(110, **kw) == cosine_lr(500, **kw) == 1e-4


def test_short_training_lowers_validation_loss():
    data = CharData.build(TEXT)
    cfg = GPTConfig(vocab_size=6, block_size=16, n_layer=1, n_head=2, n_embd=16)
    kw = dict(iters=60, batch_size=8, warmup=5, lr=1e-2, eval_every=30, device="cpu")
    model, log = train_gpt(cfg.modern(), data, show_progress=False, **kw)
    assert log.steps == [30, 60] and log.tokens == 60 * 8 * 16
    assert log.val[-1] < 0.5 * math.log(6)  # the sequence is nearly periodic
    assert not model.training
    _, log2 = train_gpt(cfg.modern(), data, show_progress=False, **kw)
    assert log2.val == log.val  # same seed, same run
