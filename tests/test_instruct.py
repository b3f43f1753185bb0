"""dlcore.instruct: the hash split, the answer-only mask (checked against a loss
computed by hand on the answer characters), and exact match with a model whose
greedy answer is known."""

import math

import pytest
import torch
import torch.nn.functional as F

from dlcore.charlm import CharData
from dlcore.instruct import (
    Example,
    exact_match,
    finetune,
    instruction_batch,
    make_examples,
    masked_lm_loss,
    task_words,
)
from dlcore.models.gpt import GPT, GPTConfig

TEXT = (
    "Q: A: upper reverse\n"
    "the cat sat on a mat, The Dog; a horse is here. Sixteen words won\n"
)
DATA = CharData.build(TEXT + "".join(sorted(set(TEXT.upper()))) * 3)


def test_task_words_split_by_hash_disjoint_and_stable():
    tune, held = task_words(TEXT, held_out=0.5)
    assert set(tune).isdisjoint(held)
    assert sorted(tune + held) == [
        "cat",
        "here",
        "horse",
        "mat",
        "reverse",
        "sat",
        "the",
        "upper",
        "won",
        "words",
    ]  # 3..8 lower-case letters, once each
    shuffled = " ".join(sorted(TEXT.split(), key=len))  # same words, other order
    assert task_words(shuffled, held_out=0.5) == (tune, held)
    assert 0 < len(held) < 10  # both sides non-empty for this text
    with pytest.raises(ValueError, match="held_out"):
        task_words(TEXT, held_out=1.0)


def test_examples_and_unknown_task():
    e = Example("reverse", "horse")
    assert (e.prompt, e.answer) == ("Q: reverse horse\nA:", " esroh\n")
    assert Example("upper", "cat").answer == " CAT\n"
    assert len(make_examples(["cat", "sat"])) == 4
    with pytest.raises(ValueError, match="unknown tasks"):
        make_examples(["cat"], tasks=("sort",))


def test_mask_selects_exactly_the_answer_targets():
    examples = [Example("upper", "cat"), Example("reverse", "horse")]
    x, y, mask = instruction_batch(examples, DATA.encode, 0, 64)
    assert (
        x.shape == y.shape == mask.shape == (2, len("Q: reverse horse\nA: esroh\n") - 1)
    )
    for b, e in enumerate(examples):
        assert DATA.decode(y[b][mask[b]]) == e.answer  # targets under the mask
        n = len(e.prompt + e.answer) - 1
        assert DATA.decode(x[b, :n]) == (e.prompt + e.answer)[:-1]
        assert not mask[b, n:].any()
    with pytest.raises(ValueError, match="block_size"):
        instruction_batch(examples, DATA.encode, 0, 10)


def test_masked_loss_equals_the_loss_on_answer_characters_by_hand():
    torch.manual_seed(0)
    e = Example("reverse", "horse")
    x, y, mask = instruction_batch([e, Example("upper", "cat")], DATA.encode, 0, 64)
    logits = 5 * torch.randn(*x.shape, DATA.vocab_size, dtype=torch.float64)
    start = len(e.prompt) - 1  # position whose target is the answer's first character
    by_hand = [
        -F.log_softmax(logits[0, start + k], -1)[DATA.encode(ch)[0]]
        for k, ch in enumerate(e.answer)
    ]
    c = Example("upper", "cat")
    start_c = len(c.prompt) - 1
    by_hand += [
        -F.log_softmax(logits[1, start_c + k], -1)[DATA.encode(ch)[0]]
        for k, ch in enumerate(c.answer)
    ]
    expected = torch.stack(by_hand).mean()
    torch.testing.assert_close(masked_lm_loss(logits, y, mask), expected)
    assert masked_lm_loss(logits, y, mask).dtype == torch.float64


class Oracle(torch.nn.Module):
    """A 'GPT' that knows the text it must continue: it predicts the next character of
    the true prompt + answer (or of a wrong answer for words in `wrong`)."""

    def __init__(self, examples, wrong=()):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = GPTConfig(vocab_size=DATA.vocab_size, block_size=64)
        self.texts = {
            e.prompt: e.prompt + (" xx\n" if e.word in wrong else e.answer)
            for e in examples
        }

    def forward(self, idx, caches=None):
        out = torch.zeros(*idx.shape, DATA.vocab_size)
        for b, row in enumerate(idx.tolist()):
            s = DATA.decode(row)
            full = next(t for p, t in self.texts.items() if s.startswith(p))
            nxt = full[len(s)] if len(s) < len(full) else "\n"
            out[b, -1, DATA.encode(nxt)[0]] = 1.0
        return out


def test_exact_match_reads_up_to_the_newline():
    examples = make_examples(["cat", "sat", "horse"])
    ok = exact_match(
        Oracle(examples, wrong={"sat"}),
        examples,
        DATA.encode,
        DATA.decode,
        use_cache=False,
    )
    assert ok == [True, True, False, False, True, True]


def test_finetune_lowers_the_answer_loss():
    examples = make_examples(["cat", "sat", "mat", "here"])
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=DATA.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16
        ).modern(n_kv_head=1)
    )
    losses = finetune(
        model,
        examples,
        DATA.encode,
        0,
        steps=60,
        batch_size=8,
        lr=3e-3,
        show_progress=False,
    )
    assert len(losses) == 60 and math.isfinite(losses[-1])
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10


def test_replay_keeps_the_text_loss_lower_than_tuning_alone():
    text = "the cat sat on the mat and the dog sat on the log " * 40
    data = CharData.build(text + "QA:\nupper" + text.upper())
    examples = make_examples(["cat", "sat", "mat", "dog"], tasks=("upper",))
    cfg = GPTConfig(
        vocab_size=data.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16
    ).modern(n_kv_head=1)
    text_loss = {}
    for replay in (None, data):
        torch.manual_seed(0)
        model = GPT(cfg)
        finetune(
            model,
            examples,
            data.encode,
            0,
            steps=80,
            batch_size=8,
            lr=3e-3,
            replay=replay,
            show_progress=False,
        )
        x, y = data.batch("train", 16, 32, torch.Generator().manual_seed(1))
        with torch.no_grad():
            text_loss[replay is None] = F.cross_entropy(
                model(x).flatten(0, 1), y.flatten()
            ).item()
    assert text_loss[False] < 0.7 * text_loss[True]
