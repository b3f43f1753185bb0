"""dlcore.sampling against independent references: brute-force top-k / top-p sets,
NumPy softmax of z / T, the greedy limit, and the law of the samples (chi-square)."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from dlcore import sampling as S


def softmax_np(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def top_k_reference(z: list[float], k: int) -> set[int]:
    """The k ids of largest value, ties to the lower id (a plain Python sort)."""
    ranked = sorted(range(len(z)), key=lambda i: (-z[i], i))
    return set(ranked[:k])


def top_p_reference(z: list[float], p: float) -> set[int]:
    """Brute force over all subsets: the smallest size of a set of mass >= p; among
    those sets of that size, the one of largest mass, ties to the lexicographically
    smallest ids."""
    probs = softmax_np(z)
    for size in range(1, len(z) + 1):
        best = None
        for subset in itertools.combinations(range(len(z)), size):
            mass = probs[list(subset)].sum()
            if mass >= p and (best is None or mass > best[0] + 1e-12):
                best = (mass, subset)
        if best is not None:
            return set(best[1])
    raise AssertionError("unreachable: the full set has mass 1")


def kept(z: torch.Tensor) -> set[int]:
    return set(torch.isfinite(z).nonzero().flatten().tolist())


@pytest.mark.parametrize("seed", range(20))
def test_top_k_keeps_exactly_k_against_a_python_sort(seed):
    gen = torch.Generator().manual_seed(seed)
    v = int(torch.randint(1, 9, (), generator=gen))
    # integer logits: many ties, the case a threshold `z >= kth value` gets wrong
    z = torch.randint(-2, 3, (v,), generator=gen).double()
    for k in range(1, v + 1):
        out = S.top_k_filter(z, k)
        assert kept(out) == top_k_reference(z.tolist(), k)
        assert len(kept(out)) == k
        torch.testing.assert_close(out[list(kept(out))], z[list(kept(out))])


def test_top_k_ties_all_equal_and_k_at_least_v():
    z = torch.zeros(2, 5)
    assert kept(S.top_k_filter(z, 2)[0]) == {0, 1}
    assert torch.equal(S.top_k_filter(z, 5), z) and torch.equal(S.top_k_filter(z, 9), z)
    with pytest.raises(ValueError, match="top_k"):
        S.top_k_filter(z, 0)


@pytest.mark.parametrize("seed", range(30))
def test_top_p_is_the_smallest_set_against_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    v = int(torch.randint(1, 8, (), generator=gen))
    z = 2 * torch.randn(v, generator=gen, dtype=torch.float64)
    probs = softmax_np(z.numpy())
    partial = np.cumsum(np.sort(probs)[::-1])
    for p in torch.rand(6, generator=gen, dtype=torch.float64).tolist() + [1e-9]:
        if np.min(np.abs(partial - p)) < 1e-9:  # exactly on a boundary: skip
            continue
        out = S.top_p_filter(z, p)
        assert kept(out) == top_p_reference(z.tolist(), p), (z, p)
        assert probs[list(kept(out))].sum() >= p


def test_top_p_limits_and_ties():
    z = torch.tensor([[0.5, 3.0, -1.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    assert torch.equal(S.top_p_filter(z, 1.0), z)  # p = 1 keeps all
    assert kept(S.top_p_filter(z[0], 1e-12)) == {1}  # p -> 0: the argmax (lower id)
    assert kept(S.top_p_filter(z[1], 0.5)) == {0, 1}  # equal probs: lowest ids first
    assert kept(S.top_p_filter(z[1], 0.5000001)) == {0, 1, 2}
    # tokens already masked out (-inf) stay out, even with p = 1
    masked = torch.tensor([0.0, float("-inf"), 1.0])
    assert kept(S.top_p_filter(masked, 0.999999)) == {0, 2}
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="top_p"):
            S.top_p_filter(z, bad)


def test_min_p_against_numpy_probabilities():
    gen = torch.Generator().manual_seed(4)
    for _ in range(20):
        z = 3 * torch.randn(9, generator=gen, dtype=torch.float64)
        probs = softmax_np(z.numpy())
        for p_min in (1e-6, 0.05, 0.3, 0.9, 1.0):
            ref = {i for i in range(9) if probs[i] >= p_min * probs.max() * (1 - 1e-12)}
            assert kept(S.min_p_filter(z, p_min)) == ref
    huge = torch.tensor([1e4, 1e4 - 1.0, -1e4, float("-inf")])
    assert kept(S.min_p_filter(huge, 0.3)) == {0, 1}  # e^-1 = 0.37 >= 0.3
    assert kept(S.min_p_filter(huge, 1.0)) == {0}
    ties = torch.tensor([2.0, 2.0, 0.0])
    assert kept(S.min_p_filter(ties, 1.0)) == {0, 1}
    with pytest.raises(ValueError, match="p_min"):
        S.min_p_filter(ties, 0.0)


def test_temperature_equals_numpy_softmax_of_z_over_t():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 11, generator=gen, dtype=torch.float64)
    for t in (0.1, 0.5, 1.0, 2.0, 50.0):
        ours = S.next_token_probs(z, temperature=t)
        for row in range(3):
            ref = softmax_np(z[row].numpy() / t)
            np.testing.assert_allclose(ours[row].numpy(), ref, rtol=1e-12, atol=1e-15)


def test_temperature_zero_limit_and_huge_logits():
    z = torch.tensor([[1.0, 4.0, 4.0, -2.0], [1e4, -1e4, 9999.0, 0.0]])
    greedy = S.next_token_probs(z, temperature=0)
    assert torch.equal(greedy, torch.eye(4, dtype=torch.float64)[[1, 0]])
    assert torch.equal(S.sample_next(z, temperature=0), torch.tensor([1, 0]))
    # a tiny temperature approaches the greedy one-hot, without overflow or NaN
    tiny = S.next_token_probs(z, temperature=1e-6)
    assert torch.isfinite(tiny).all()
    torch.testing.assert_close(tiny[1], greedy[1])
    torch.testing.assert_close(tiny[0], torch.tensor([0, 0.5, 0.5, 0]).double())
    # large |z| at T = 1: still a proper distribution, equal to the NumPy one
    np.testing.assert_allclose(
        S.next_token_probs(z)[1].numpy(), softmax_np(z[1].numpy()), atol=1e-15
    )
    with pytest.raises(ValueError, match="temperature"):
        S.apply_temperature(z, -1.0)


def test_pipeline_order_temperature_then_k_then_p():
    z = torch.tensor([2.0, 1.0, 0.0, -1.0, -3.0], dtype=torch.float64)
    t, k, p = 2.0, 4, 0.72
    probs = softmax_np(z.numpy() / t)
    keep_k = sorted(top_k_reference((z / t).tolist(), k))
    within = softmax_np(z.numpy()[keep_k] / t)
    order = np.argsort(-within, kind="stable")
    mass_before = np.concatenate([[0], np.cumsum(within[order])[:-1]])
    keep = [keep_k[i] for i in order[mass_before < p]]
    ref = np.zeros(5)
    ref[keep] = probs[keep] / probs[keep].sum()
    ours = S.next_token_probs(z, temperature=t, top_k=k, top_p=p)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12, atol=1e-15)
    # p applies to the distribution *after* top-k: there 2 tokens reach 0.72, while
    # on the full distribution it would take 3
    assert len(keep) == 2 and len(kept(S.top_p_filter(z / t, p))) == 3


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"temperature": 0.7},
        {"top_k": 3},
        {"top_p": 0.8},
        {"temperature": 1.5, "top_k": 5, "top_p": 0.9},
    ],
)
def test_samples_follow_next_token_probs_chi_square(settings):
    gen = torch.Generator().manual_seed(1)
    z = torch.tensor([1.2, 0.3, 0.3, -0.5, 2.0, -1.0, 0.0], dtype=torch.float32)
    n = 60_000
    ids = S.sample_next(z.expand(n, 7), generator=gen, **settings)
    counts = np.bincount(ids.numpy(), minlength=7)
    probs = S.next_token_probs(z, **settings).numpy()
    assert counts[probs == 0].sum() == 0  # never a filtered-out token
    support = probs > 0
    result = stats.chisquare(counts[support], n * probs[support])
    assert result.pvalue > 1e-4, (settings, counts, n * probs)


def test_shapes_and_bad_input():
    z = torch.randn(2, 3, 5)
    assert S.sample_next(z).shape == (2, 3)
    assert S.sample_next(z[0, 0]).shape == ()
    with pytest.raises(ValueError, match="finite"):
        S.sample_next(torch.full((2, 4), -math.inf))
    with pytest.raises(ValueError, match="NaN"):
        S.top_k_filter(torch.tensor([0.0, math.nan]), 1)
    with pytest.raises(TypeError):
        S.next_token_probs(torch.tensor([1, 2]))
