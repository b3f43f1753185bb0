"""dlcore.poetry: the form checker on real and broken poems, and the constrained sampler
against adversarial and random models (every sample regular, requests honoured, the
renormalised model distribution at an unconstrained step)."""

from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import dlcore
from dlcore import poetry
from dlcore.models.rnn import RNNLM, RNNLMConfig
from dlcore.tokenize import Vocab

REAL = {
    # 登鹳雀楼 (五言绝句), 早发白帝城 (七言绝句), 春望 (五言律诗), 登高 (七言律诗)
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。": (4, 5),
    "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。": (4, 7),
    "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。"
    "烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。": (8, 5),
    "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
    "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。": (8, 7),
    "秦川雄帝宅，函谷壯皇居。綺殿千尋起，離宮百雉餘。"  # traditional script
    "連甍遙接漢，飛觀迥凌虛。雲日隱層闕，風煙出綺疎。": (8, 5),
}
BROKEN = [
    "",
    "白日依山尽，黄河入海流。欲穷千里目，",  # 3 lines
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼",  # no final mark
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。更上一层楼。",  # 5 lines
    "白日依山尽啊，黄河入海流啊。欲穷千里目啊，更上一层楼啊。",  # 6 characters
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼一。",  # unequal lines
    "白日依，山尽黄河入海流。欲穷千里目，更上一层楼。",  # a mark inside a line
    "白日依山尽，，黄河入海流。欲穷千里目，更上一层楼。",  # an empty line
    "白日依山尽，黄河入海流。欲穷千里目，更上 层楼。",  # a space
    "白日依山尽，黄河入海流。欲穷千里目，更上<unk>。",  # a special token
    "白日依山尽，黄河入海流。欲穷千里目，更上一层a。",  # ASCII
    "白日依山尽、黄河入海流、欲穷千里目、更上一层楼。",  # 、 is not a line end
]


@pytest.mark.parametrize("text", list(REAL))
def test_real_poems_have_their_form(text):
    assert poetry.poem_form(text) == REAL[text] and poetry.is_regular(text)


@pytest.mark.parametrize("text", BROKEN)
def test_broken_poems_are_rejected(text):
    assert poetry.poem_form(text) is None and not poetry.is_regular(text)


def test_every_corpus_poem_is_regular():
    root = dlcore.data_dir()
    if not (root / "text" / "tang_poems" / "tang_poems.txt").exists():
        pytest.skip(f"the Tang poems are not cached in {root}")
    poems = dlcore.load("tang-poems").texts
    forms = Counter(poetry.poem_form(p) for p in poems)
    assert None not in forms and sum(forms.values()) == 36_922
    assert set(forms) == {(4, 5), (4, 7), (8, 5), (8, 7)}


def test_poem_lines():
    assert poetry.poem_lines("白日依山尽，黄河入海流。") == ["白日依山尽", "黄河入海流"]
    assert poetry.poem_lines("白日，依山") == ["白日", "依山"]


CHARS = list("春夏秋冬山水花月风云天地")
VOCAB = Vocab(CHARS + list("，。？；") + ["a"], min_freq=1)  # 'a': not a line char


class FixedLogits(nn.Module):
    """A 'model' whose next-token logits are always `logits` (V,)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits.float(), requires_grad=False)

    def step(self, x, state=None):
        return self.logits.expand(x.shape[0], x.shape[1], -1), state


def adversary(favour: str, strength: float = 6.0) -> FixedLogits:
    """Logits that strongly prefer the tokens of `favour` (marks, <eos>, <unk> ...)."""
    z = torch.zeros(len(VOCAB))
    for token in favour.split():
        z[VOCAB.stoi[token]] = strength
    return FixedLogits(z)


@pytest.mark.parametrize("favour", ["， 。", "<eos>", "<unk> <pad>", "； a", "春"])
def test_constrained_samples_are_always_regular(favour):
    gen = torch.Generator().manual_seed(0)
    model = adversary(favour)
    poems = poetry.sample_poems(model, VOCAB, 300, generator=gen)
    assert all(poetry.is_regular(p) for p in poems), poems[:3]
    for p in poems:  # the couplet marks: ， after odd lines, 。 or ？ after even
        ends = [ch for ch in p if ch in poetry.MARKS]
        assert set(ends[0::2]) == {"，"} and set(ends[1::2]) <= {"。", "？"}
    plain = poetry.sample_poems(model, VOCAB, 300, constrained=False, generator=gen)
    if favour != "春":
        assert sum(map(poetry.is_regular, plain)) < 30  # without the mask: broken


@pytest.mark.parametrize("length", [5, 7])
@pytest.mark.parametrize("count", [4, 8])
def test_requested_forms_and_greedy(length, count):
    model = adversary("， 。 <eos>")
    for kwargs in ({}, {"temperature": 0}, {"top_k": 1}, {"top_p": 0.01}):
        poems = poetry.sample_poems(
            model, VOCAB, 20, line_length=length, line_count=count, **kwargs
        )
        assert {poetry.poem_form(p) for p in poems} == {(count, length)}


def test_the_model_chooses_the_form_when_not_requested():
    # ， and <eos> favoured: the first line ends at 5, the poem after 4 lines
    assert {
        poetry.poem_form(p)
        for p in poetry.sample_poems(adversary("， <eos>", 30.0), VOCAB, 50)
    } == {(4, 5)}
    # ， and <eos> never wanted (but allowed when they must come): 7 and 8
    z = torch.zeros(len(VOCAB))
    z[[VOCAB.stoi["，"], VOCAB.eos_id]] = -30.0
    forms = {
        poetry.poem_form(p) for p in poetry.sample_poems(FixedLogits(z), VOCAB, 50)
    }
    assert forms == {(8, 7)}


def test_acrostic_heads():
    gen = torch.Generator().manual_seed(3)
    for heads in ("春夏秋冬", "山水花月风云天地"):
        poems = poetry.sample_poems(
            adversary("。"), VOCAB, 40, heads=heads, generator=gen
        )
        for p in poems:
            lines = poetry.poem_lines(p)
            assert poetry.is_regular(p) and len(lines) == len(heads)
            assert "".join(line[0] for line in lines) == heads
    with pytest.raises(ValueError, match="not in the vocabulary"):
        poetry.sample_poems(adversary("。"), VOCAB, 2, heads="春夏秋雪")
    with pytest.raises(ValueError, match="4 or 8"):
        poetry.sample_poems(adversary("。"), VOCAB, 2, heads="春夏秋")


def test_first_step_is_the_renormalised_model_distribution():
    """At the first step only line characters are allowed: the samples follow
    softmax(z) restricted to them and renormalised (chi-square)."""
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(len(VOCAB), generator=gen)
    n = 8_000
    poems = poetry.sample_poems(FixedLogits(z), VOCAB, n, line_count=4, generator=gen)
    first = Counter(p[0] for p in poems)
    ids = [VOCAB.stoi[c] for c in CHARS]
    probs = torch.softmax(z[ids].double(), 0).numpy()
    counts = np.array([first[c] for c in CHARS])
    assert counts.sum() == n
    assert stats.chisquare(counts, n * probs).pvalue > 1e-4


def test_random_rnnlm_constrained_vs_plain():
    torch.manual_seed(0)
    model = RNNLM(RNNLMConfig(len(VOCAB), embed_dim=8, hidden_size=16))
    gen = torch.Generator().manual_seed(0)
    poems = poetry.sample_poems(model, VOCAB, 100, generator=gen, top_p=0.9)
    assert all(map(poetry.is_regular, poems))
    again = poetry.sample_poems(
        model, VOCAB, 100, generator=torch.Generator().manual_seed(0), top_p=0.9
    )
    assert again == poems  # one generator, one result
    plain = poetry.sample_poems(model, VOCAB, 100, constrained=False, generator=gen)
    assert sum(map(poetry.is_regular, plain)) < 10
    assert all("<" not in p for p in plain)  # no special token is ever emitted


def test_bad_requests():
    model = adversary("。")
    with pytest.raises(ValueError, match="line_length"):
        poetry.sample_poems(model, VOCAB, 1, line_length=6)
    with pytest.raises(ValueError, match="line_count"):
        poetry.sample_poems(model, VOCAB, 1, line_count=6)
    with pytest.raises(ValueError, match="constrained"):
        poetry.sample_poems(model, VOCAB, 1, constrained=False, line_length=5)
