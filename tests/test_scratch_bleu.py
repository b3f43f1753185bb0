"""BLEU from scratch (`dlcore.scratch.bleu`) equals sacrebleu's corpus BLEU to 1e-9,
on random corpora and on the edge cases a naive BLEU gets wrong; `dlcore.metrics.bleu`
wraps sacrebleu."""

import random

import pytest
import sacrebleu

from dlcore import metrics
from dlcore.scratch import bleu as B

CHARS = "我你他是的了不在有人这中大为上个国好吗？。，"


def ours(hyps, refs):
    """Scratch BLEU on strings, tokenised as sacrebleu's `zh`; refs[i]: list."""
    return B.corpus_bleu(
        [B.zh_tokens(h) for h in hyps],
        [[B.zh_tokens(r) for r in rs] for rs in refs],
    )


def theirs(hyps, refs):
    width = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    return sacrebleu.corpus_bleu(hyps, streams, tokenize="zh")


def close(a, b):
    assert abs(a - b) <= 1e-9, (a, b)


@pytest.mark.parametrize("seed", range(200))
def test_random_corpora_match_sacrebleu(seed):
    rng = random.Random(seed)
    alphabet = CHARS[: rng.randint(3, len(CHARS))] + "ab "

    def sent(n):
        return "".join(rng.choice(alphabet) for _ in range(n))

    n = rng.randint(1, 10)
    hyps = [sent(rng.randint(0, 14)) for _ in range(n)]
    refs = [[sent(rng.randint(1, 14)) for _ in range(rng.randint(1, 3))] for _ in hyps]
    got, want = ours(hyps, refs), theirs(hyps, refs)
    close(got.score, want.score)
    assert (got.hyp_len, got.ref_len) == (want.sys_len, want.ref_len)
    assert got.matches == want.counts and got.totals == want.totals
    close(got.brevity_penalty, want.bp)
    for p, q in zip(got.precisions, want.precisions):
        close(p, q)
    close(metrics.bleu(hyps, refs), want.score)


CASES = {
    "exact match is 100": (["我是学生。", "他不在。"], [["我是学生。"], ["他不在。"]]),
    "shorter hypothesis: brevity penalty": (["我是"], [["我是学生。"]]),
    "no 4-gram match: exp smoothing": (["他是学生"], [["我是学生。"]]),
    "no 3- or 4-gram match": (["我是你学生"], [["我是学你生"]]),
    "no match at all": (["你好"], [["我是学生。"]]),
    "empty hypothesis": ([""], [["我是学生。"]]),
    "one empty of two": (["", "我是学生。"], [["我们"], ["我是学生。"]]),
    "hypothesis shorter than 4 tokens": (["我是学"], [["我是学"]]),
    "clipping: repeated token": (["的的的的的的"], [["我的书的"]]),
    "longer hypothesis: no penalty": (["我是学生学生学生。"], [["我是学生。"]]),
    "closest reference length, tie to shorter": (
        ["我是学生"],
        [["我是学", "我是学生的"]],
    ),
    "mixed Latin and Chinese": (["Tom是学生。"], [["Tom 是 学生 。"]]),
    "full-width punctuation": (["你好吗？！"], [["你好吗？"]]),
}


@pytest.mark.parametrize("name", CASES)
def test_edge_cases_match_sacrebleu(name):
    hyps, refs = CASES[name]
    got, want = ours(hyps, refs), theirs(hyps, refs)
    close(got.score, want.score)
    close(metrics.bleu(hyps, refs), want.score)


def test_edge_case_values():
    close(ours(*CASES["exact match is 100"]).score, 100.0)
    assert ours(*CASES["empty hypothesis"]).score == 0.0
    assert ours(*CASES["no match at all"]).score == 0.0
    short = ours(*CASES["shorter hypothesis: brevity penalty"])
    assert short.hyp_len == 2 and short.ref_len == 5
    close(short.brevity_penalty, 2.718281828459045 ** (1 - 5 / 2))
    # 2 tokens only: no 3-grams, so BLEU is 0 although every n-gram that exists matches
    assert short.precisions[:2] == [100.0, 100.0] and short.score == 0.0
    smooth = ours(*CASES["no 4-gram match: exp smoothing"])
    assert smooth.matches == [3, 2, 1, 0] and smooth.totals == [4, 3, 2, 1]
    close(smooth.precisions[3], 100.0 / (2 * 1))  # first zero order: 1 / (2 · total)
    twice = ours(*CASES["no 3- or 4-gram match"])
    assert twice.matches[2:] == [0, 0]
    close(twice.precisions[3], 100.0 / (4 * twice.totals[3]))  # second: 1 / (4 · total)
    clipped = ours(*CASES["clipping: repeated token"])
    assert clipped.matches[0] == 2 and clipped.totals[0] == 6
    assert ours(*CASES["closest reference length, tie to shorter"]).ref_len == 3


def test_corpus_bleu_is_not_a_mean_of_sentence_bleus():
    hyps, refs = ["我是学生。", "你"], [["我是学生。"], ["你好"]]
    corpus = ours(hyps, refs).score
    mean = sum(ours([h], [r]).score for h, r in zip(hyps, refs)) / 2
    close(corpus, theirs(hyps, refs).score)
    assert abs(corpus - mean) > 1.0


def test_ngrams_and_input_errors():
    assert B.ngrams(["a", "b", "a", "b"], 2) == {("a", "b"): 2, ("b", "a"): 1}
    assert B.ngrams(["a"], 2) == {}
    with pytest.raises(ValueError, match="n must be"):
        B.ngrams(["a"], 0)
    with pytest.raises(ValueError, match="hypotheses but"):
        B.corpus_bleu([["a"]], [])
    with pytest.raises(ValueError, match="at least one reference"):
        B.corpus_bleu([["a"]], [[]])
    with pytest.raises(ValueError, match="hypotheses but"):
        metrics.bleu(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="lists of sentences"):
        metrics.bleu("a", ["a"])


def test_metrics_bleu_single_reference_strings():
    hyps, refs = ["我是学生。", "他在家"], ["我是学生。", "他不在家。"]
    close(
        metrics.bleu(hyps, refs),
        sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score,
    )
    english = ["the cat sat", "a dog"]
    close(
        metrics.bleu(english, ["the cat sat down", "a dog ran"], tokenize="13a"),
        sacrebleu.corpus_bleu(english, [["the cat sat down", "a dog ran"]]).score,
    )
