"""dlcore.scratch.ngram: hand-computed probabilities, an independent brute-force count
implementation, normalisation, no zero probabilities, and the scored positions."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from dlcore.scratch.ngram import NGramLM, split_stream

TRAIN = [0, 1, 0, 1, 1, 2]  # V = 3; the hand computation below uses D = 1/2


def test_hand_computed_bigram_kneser_ney():
    # continuation counts N1+(. w): 0 <- {1}, 1 <- {0, 1}, 2 <- {1}: 1, 2, 1 of 4;
    # P1(w) = (max(N1+ - 1/2, 0) + 1/2 * 3 * 1/3) / 4 = 1/4, 1/2, 1/4
    # after 0 (c = 2, one type):   P(1|0) = (3/2 + 1/2 * 1 * 1/2) / 2 = 7/8
    # after 1 (c = 3, three types): P(0|1) = (1/2 + 3/2 * 1/4) / 3 = 7/24, ...
    m = NGramLM(2, 3, discount=0.5).fit(TRAIN)
    expect = {
        0: [1 / 16, 7 / 8, 1 / 16],
        1: [7 / 24, 5 / 12, 7 / 24],
        2: [1 / 4, 1 / 2, 1 / 4],  # never seen as a context: back off to P1
    }
    for h, p in expect.items():
        np.testing.assert_allclose(np.exp(m.log_probs([h])), p, rtol=1e-13)
    # the unigram model's top order uses raw counts 2, 3, 1 of 6
    u = NGramLM(1, 3, discount=0.5).fit(TRAIN)
    np.testing.assert_allclose(np.exp(u.log_probs([])), [1 / 3, 1 / 2, 1 / 6])


def test_hand_computed_add_k_and_positions():
    m = NGramLM(2, 3, smoothing="add-k", k=1.0).fit(TRAIN)
    np.testing.assert_allclose(np.exp(m.log_probs([0])), [1 / 5, 3 / 5, 1 / 5])
    kn = NGramLM(2, 3, discount=0.5).fit(TRAIN)
    # default start = n - 1 = 1: positions 1 and 2 of [2, 0, 1] are scored
    want = -(math.log(1 / 4) + math.log(7 / 8)) / 2
    assert kn.nll([2, 0, 1]) == pytest.approx(want, rel=1e-13)
    # start = 0 adds position 0, predicted by the (0-context) unigram KN model
    # (raw count 1 of 6): P(2) = (1 - 1/2 + 1/2 * 3 * 1/3) / 6 = 1/6
    want0 = -(math.log(1 / 6) + math.log(1 / 4) + math.log(7 / 8)) / 3
    assert kn.nll([2, 0, 1], start=0) == pytest.approx(want0, rel=1e-13)


def brute_kn(train, n, V, D):
    """Interpolated Kneser-Ney straight from the definition, with Counters."""
    grams = [
        Counter(tuple(train[i : i + m]) for i in range(len(train) - m + 1))
        for m in range(1, n + 1)
    ]  # grams[m-1][g] = raw count of m-gram g
    cont = []  # cont[m-1][g] = number of distinct tokens seen before m-gram g
    for m in range(1, n):
        cont.append(Counter(g[1:] for g in grams[m]))

    def p(w, h, top):
        m = len(h) + 1
        table = grams[m - 1] if m == top else cont[m - 1]
        lower = 1 / V if m == 1 else p(w, h[1:], top)
        after = {g[-1]: c for g, c in table.items() if g[:-1] == tuple(h)}
        total = sum(after.values())
        if total == 0:
            return lower
        return (max(after.get(w, 0) - D, 0) + D * len(after) * lower) / total

    return lambda w, h: p(w, tuple(h), len(h) + 1)


def brute_add_k(train, n, V, k):
    grams = Counter(tuple(train[i : i + n]) for i in range(len(train) - n + 1))

    def p(w, h):
        h = tuple(h)
        total = sum(c for g, c in grams.items() if g[:-1] == h)
        return (grams.get(h + (w,), 0) + k) / (total + k * V)

    return p


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_matches_brute_force(n):
    rng = np.random.default_rng(n)
    V = 5
    # a skewed, repetitive stream so that many n-grams repeat and many are unseen
    train = list(rng.choice(V - 1, size=300, p=[0.5, 0.25, 0.15, 0.1]))
    held = list(rng.integers(0, V, size=40))  # id 4 never occurs in training
    for D in (0.3, 0.75, 1.0):
        model = NGramLM(n, V, discount=D).fit(train)
        ref = brute_kn(train, n, V, D)
        for h in itertools.product(range(V), repeat=n - 1):
            got = np.exp(model.log_probs(list(h)))
            np.testing.assert_allclose(got, [ref(w, h) for w in range(V)], rtol=1e-12)
        want = -np.mean(
            [
                math.log(ref(held[t], held[t - n + 1 : t]))
                for t in range(n - 1, len(held))
            ]
        )
        assert model.nll(held) == pytest.approx(want, rel=1e-12)
    model = NGramLM(n, V, smoothing="add-k", k=0.1).fit(train)
    ref = brute_add_k(train, n, V, 0.1)
    for h in itertools.product(range(V), repeat=n - 1):
        got = np.exp(model.log_probs(list(h)))
        np.testing.assert_allclose(got, [ref(w, h) for w in range(V)], rtol=1e-12)


@pytest.mark.parametrize("smoothing", ["interpolated-kneser-ney", "add-k"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_normalised_and_never_zero(smoothing, n):
    rng = np.random.default_rng(0)
    V = 7  # ids 5 and 6 never occur in training (like <pad>, <bos> ...)
    train = rng.integers(0, 5, size=500)
    model = NGramLM(n, V, smoothing=smoothing, k=0.01, discount=1.0).fit(train)
    contexts = [list(rng.integers(0, V, size=n - 1)) for _ in range(20)]
    contexts += [[6] * (n - 1), [], [0]]  # unseen context; shorter; short
    for h in contexts:
        lp = model.log_probs(h)
        assert lp.shape == (V,)
        assert np.all(np.isfinite(lp))  # no zero probability, even for id 6
        assert math.fsum(np.exp(lp)) == pytest.approx(1.0, abs=1e-12)
    held = [6, 5, 6, 5, 6, 6, 0, 6]  # unseen n-grams only
    assert np.isfinite(model.nll(held, start=0))


def test_context_uses_last_n_minus_1_tokens_and_start_is_fair():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 4, size=400)
    m = NGramLM(3, 4).fit(train)
    np.testing.assert_array_equal(m.log_probs([3, 3, 1, 2]), m.log_probs([1, 2]))
    held = rng.integers(0, 4, size=50)
    per_token = [-m.log_probs(held[max(0, t - 2) : t])[held[t]] for t in range(50)]
    assert m.nll(held, start=0) == pytest.approx(np.mean(per_token), rel=1e-12)
    assert m.nll(held, start=7) == pytest.approx(np.mean(per_token[7:]), rel=1e-12)
    assert m.nll(held) == pytest.approx(np.mean(per_token[2:]), rel=1e-12)


def test_length_one_and_errors():
    m = NGramLM(2, 3).fit([1, 2])  # the shortest training stream
    assert np.isfinite(m.nll([0], start=0))  # a length-1 held-out stream
    with pytest.raises(ValueError, match="start"):
        m.nll([0])  # nothing to score from position n - 1 = 1
    with pytest.raises(ValueError, match="ids"):
        m.fit([0, 3])
    with pytest.raises(ValueError, match="smoothing"):
        NGramLM(2, 3, smoothing="laplace")
    with pytest.raises(ValueError, match="overflows"):
        NGramLM(6, 100_000)
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM(2, 3).log_probs([0])


def test_split_stream():
    tr, va, te = split_stream(range(105))
    assert (len(tr), len(va), len(te)) == (85, 10, 10)
    np.testing.assert_array_equal(np.concatenate([tr, va, te]), np.arange(105))
