"""The embeddings of Part III ch. 2 against torch.autograd / scipy, float64: the SGNS
loss and its hand-derived gradients (also at |u·v| ~ 50 and 800, where a naive
log(sigmoid) fails), the nn.Embedding model, GloVe's loss and gradients, pairs,
co-occurrences, neighbours, analogies, Spearman's ρ and recall@k."""

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from dlcore.scratch import embeddings as E

rng = np.random.default_rng(0)


def _torch_sgns(u, v_pos, v_neg):
    """The reference: F.logsigmoid and autograd."""
    ts = [torch.tensor(a, requires_grad=True) for a in (u, v_pos, v_neg)]
    pos = (ts[0] * ts[1]).sum(-1)
    neg = torch.einsum("bd,bkd->bk", ts[0], ts[2])
    loss = (-F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)).mean()
    loss.backward()
    return loss.item(), [t.grad for t in ts]


def _check_sgns(u, v_pos, v_neg):
    loss, *grads = E.sgns_grads(u, v_pos, v_neg)
    ref_loss, ref_grads = _torch_sgns(u, v_pos, v_neg)
    assert np.isfinite(loss)
    assert abs(loss - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss))
    assert abs(E.sgns_loss(u, v_pos, v_neg) - loss) <= 1e-12 * max(1.0, abs(loss))
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(torch.tensor(g), ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("B, K, D", [(8, 5, 6), (1, 1, 1), (3, 1, 4), (1, 7, 2)])
def test_sgns_grads_match_autograd(B, K, D):
    _check_sgns(
        rng.normal(size=(B, D)), rng.normal(size=(B, D)), rng.normal(size=(B, K, D))
    )


@pytest.mark.parametrize("scale", [50.0, 800.0])
def test_sgns_large_dot_products(scale):
    """u·v = ±scale. The naive negative term log(1 - sigmoid(x)) is log(0) = -inf at
    x = 50 (σ(50) rounds to 1); at 800 even log(sigmoid(-800)) is log(0)."""
    D = 4
    u = np.zeros((4, D))
    u[:, 0] = 1.0
    v_pos = np.zeros((4, D))
    v_pos[:, 0] = [scale, -scale, scale, -scale]
    v_neg = np.zeros((4, 2, D))
    v_neg[:, :, 0] = [[scale, -scale], [scale, scale], [-scale, -scale], [0.0, scale]]
    _check_sgns(u, v_pos, v_neg)
    with np.errstate(over="ignore", divide="ignore"):
        naive_neg = np.log(1 - 1 / (1 + np.exp(-scale)))  # log σ(-scale), naively
    assert not np.isfinite(naive_neg)  # the case that breaks a naive version
    assert abs(E.log_sigmoid(-scale) + scale) < 1e-12 * scale  # log σ(-s) ≈ -s


def test_sigmoid_and_log_sigmoid_match_torch():
    x = np.r_[np.linspace(-60, 60, 241), -800.0, 800.0, 0.0]
    torch.testing.assert_close(
        torch.tensor(E.sigmoid(x)), torch.sigmoid(torch.tensor(x)), rtol=1e-15, atol=0
    )
    torch.testing.assert_close(
        torch.tensor(E.log_sigmoid(x)),
        F.logsigmoid(torch.tensor(x)),
        rtol=1e-14,
        atol=0,
    )


def test_sgns_shapes_are_checked():
    with pytest.raises(ValueError, match="v_neg"):
        E.sgns_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="v_pos"):
        E.sgns_loss(np.ones((2, 3)), np.ones((3, 3)), np.ones((2, 1, 3)))


def test_sgns_step_sums_repeated_words():
    """A word twice in the batch (and as its own negative) gets every gradient."""
    model = E.SGNS(6, 3, seed=0)
    model.W_out = rng.normal(size=(6, 3))
    centers, contexts = np.array([1, 1, 2]), np.array([3, 3, 1])
    negatives = np.array([[3, 4], [5, 5], [1, 1]])
    W_in = torch.tensor(model.W_in, requires_grad=True)
    W_out = torch.tensor(model.W_out, requires_grad=True)
    u = W_in[torch.tensor(centers)]
    pos = (u * W_out[torch.tensor(contexts)]).sum(-1)
    neg = torch.einsum("bd,bkd->bk", u, W_out[torch.tensor(negatives)])
    (-F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)).sum().backward()  # per-pair SGD
    lr = 0.1
    expected_in = W_in.detach() - lr * W_in.grad
    expected_out = W_out.detach() - lr * W_out.grad
    model.step(centers, contexts, negatives, lr)
    torch.testing.assert_close(torch.tensor(model.W_in), expected_in)
    torch.testing.assert_close(torch.tensor(model.W_out), expected_out)


def test_torch_skipgram_equals_numpy_loss():
    V, D = 9, 4
    model = E.SkipGram(V, V, D, torch.ones(V), negatives=3).double()
    with torch.no_grad():
        model.center.weight.normal_()
        model.context.weight.normal_()
    c, x = torch.tensor([0, 4, 4, 8]), torch.tensor([1, 2, 2, 0])
    neg = torch.tensor([[3, 3, 5], [0, 1, 2], [4, 4, 4], [8, 7, 6]])
    loss = model.loss(model(c), x, neg)
    assert loss.shape == (4,)
    Win, Wout = (
        model.center.weight.detach().numpy(),
        model.context.weight.detach().numpy(),
    )
    ref = E.sgns_loss(Win[c.numpy()], Wout[x.numpy()], Wout[neg.numpy()])
    assert abs(loss.mean().item() - ref) < 1e-12
    sampled = model.loss(model(c), x)  # negatives drawn from the noise distribution
    assert sampled.shape == (4,) and torch.isfinite(sampled).all()


def test_noise_distribution_and_subsample():
    counts = np.array([0, 1, 16, 81])
    p = E.noise_distribution(counts)
    np.testing.assert_allclose(p, np.array([0, 1, 8, 27]) / 36)
    ids = np.repeat(np.arange(4), counts)
    keep = E.subsample(ids, counts, 0.05, np.random.default_rng(0))
    assert keep.shape == ids.shape and keep[ids == 1].all()  # rare: always kept
    assert keep[ids == 3].mean() < 0.5  # frequent: mostly dropped
    with pytest.raises(ValueError):
        E.noise_distribution(np.zeros(3))


def _pairs_by_loop(sentences, b, window):
    """Reference: the centre at flat position i pairs with j, |i - j| <= b_i."""
    out, pos = [], 0
    for s in sentences:
        for i in range(len(s)):
            for j in range(len(s)):
                if i != j and abs(i - j) <= b[pos + i]:
                    out.append((s[i], s[j]))
        pos += len(s)
    return sorted(out)


def test_skipgram_pairs_match_a_loop():
    sentences = [np.array([5, 6, 7, 8, 9]), np.array([1]), np.array([2, 3])]
    for seed in range(5):
        c, x = E.skipgram_pairs(sentences, 3, np.random.default_rng(seed))
        b = np.random.default_rng(seed).integers(1, 4, 8)
        assert sorted(zip(c.tolist(), x.tolist())) == _pairs_by_loop(sentences, b, 3)
    with pytest.raises(ValueError):
        E.skipgram_pairs(sentences, 0, rng)


def test_cooccurrence_matches_a_loop():
    sentences = [np.array([0, 1, 0, 2]), np.array([2]), np.array([1, 1])]
    rows, cols, vals = E.cooccurrence(sentences, 3, 2)
    X = np.zeros((3, 3))
    for s in sentences:
        for i in range(len(s)):
            for j in range(len(s)):
                if 0 < abs(i - j) <= 2:
                    X[s[i], s[j]] += 1 / abs(i - j)
    dense = np.zeros((3, 3))
    dense[rows, cols] = vals
    np.testing.assert_allclose(dense, X)
    assert (vals > 0).all() and np.allclose(X, X.T)


def test_glove_grads_match_autograd():
    V, D, N = 7, 3, 20
    W, Wc = rng.normal(size=(V, D)), rng.normal(size=(V, D))
    b, bc = rng.normal(size=V), rng.normal(size=V)
    rows, cols = rng.integers(0, V, N), rng.integers(0, V, N)  # repeats included
    x = np.r_[rng.uniform(0.2, 300, N - 3), 100.0, 99.999, 1e-3]  # both sides of x_max
    J, *grads = E.glove_grads(W, Wc, b, bc, rows, cols, x)
    ts = [torch.tensor(a, requires_grad=True) for a in (W, Wc, b, bc)]
    r, c, xt = torch.tensor(rows), torch.tensor(cols), torch.tensor(x)
    f = torch.where(xt < 100, (xt / 100) ** 0.75, torch.ones_like(xt))
    e = (ts[0][r] * ts[1][c]).sum(-1) + ts[2][r] + ts[3][c] - torch.log(xt)
    ref = (f * e**2).sum()
    ref.backward()
    assert abs(J - ref.item()) <= 1e-12 * abs(ref.item())
    assert abs(E.glove_loss(W, Wc, b, bc, rows, cols, x) - J) <= 1e-12 * abs(J)
    for g, t in zip(grads, ts):
        torch.testing.assert_close(torch.tensor(g), t.grad, rtol=1e-12, atol=1e-12)
    # the module computes the same per-entry terms
    model = E.GloVe(V, D).double()
    with torch.no_grad():
        model.w.weight.copy_(torch.tensor(W))
        model.wc.weight.copy_(torch.tensor(Wc))
        model.b.weight.copy_(torch.tensor(b)[:, None])
        model.bc.weight.copy_(torch.tensor(bc)[:, None])
    target = torch.stack([torch.log(xt), torch.tensor(E.glove_weight(x))], 1)
    mean_loss = E.GloVe.loss(model(torch.stack([r, c], 1)), target)
    assert abs(mean_loss.item() * N - J) <= 1e-12 * abs(J)


def test_glove_weight():
    np.testing.assert_allclose(
        E.glove_weight(np.array([0.0, 1.0, 100.0, 1e6])), [0.0, 100**-0.75, 1.0, 1.0]
    )


def test_nearest_and_analogy():
    emb = np.array([[1.0, 0], [0, 1], [1, 1], [-1, 0], [2, 0.1]])
    ids, sims = E.nearest(emb, emb[[0]], 2, exclude=np.array([[0]]))
    assert ids.tolist() == [[4, 2]]
    np.testing.assert_allclose(sims[0, 1], 1 / np.sqrt(2))
    # king - man + woman: a 2-D toy where the answer is planted
    words = np.array([[1, 1], [1, 0], [0.1, 1.2], [0.1, 0.2], [-1, -1]], dtype=float)
    man, king, woman, queen = 1, 0, 3, 2
    assert E.analogy(words, np.array([man]), np.array([king]), np.array([woman])) == [
        queen
    ]


def test_nearest_never_returns_excluded():
    emb = rng.normal(size=(30, 5))
    ids, _ = E.nearest(emb, emb[:4], 3, exclude=np.arange(4)[:, None])
    assert all(i not in row for i, row in zip(range(4), ids))


def test_spearman_matches_scipy_with_ties():
    for x, y in [
        (rng.normal(size=50), rng.normal(size=50)),
        (rng.integers(0, 5, 40), rng.integers(0, 3, 40)),  # many ties
        (np.array([1.0, 2.0]), np.array([2.0, 1.0])),
    ]:
        ref = scipy.stats.spearmanr(x, y).statistic
        assert abs(E.spearman(x, y) - ref) < 1e-12
    np.testing.assert_allclose(
        E.rankdata(np.array([3, 1, 3, 2])), scipy.stats.rankdata([3, 1, 3, 2])
    )


def test_spearman_permutation_test_matches_scipy():
    # n = 5, x = y: only the identity pairing reaches ρ = 1, exact p = 1/120; the
    # comparison must count the shuffles equal to the observed order (rounding).
    x = np.arange(5.0)
    exact = scipy.stats.permutation_test(
        (x, x),
        lambda a, b: scipy.stats.spearmanr(a, b).statistic,
        permutation_type="pairings",
        alternative="greater",
        n_resamples=np.inf,
    ).pvalue
    rho, p = E.spearman_permutation_test(x, x, n_resamples=50_000, seed=1)
    assert rho == pytest.approx(1.0) and exact == pytest.approx(1 / 120)
    assert abs(p - exact) < 5 * np.sqrt(exact * (1 - exact) / 50_000)
    # n = 200, a weak relation with ties: scipy's t-approximation of the p-value
    a = rng.normal(size=200)
    b = np.round(0.15 * a + rng.normal(size=200), 1)
    ref = scipy.stats.spearmanr(a, b, alternative="greater")
    rho, p = E.spearman_permutation_test(a, b, n_resamples=20_000, seed=2)
    assert abs(rho - ref.statistic) < 1e-12
    assert abs(p - ref.pvalue) < 5 * np.sqrt(ref.pvalue / 20_000) + 2e-3
    # a perfect relation: no shuffle reaches it, p = 1 / (1 + n_resamples), not 0
    assert E.spearman_permutation_test(a, 2 * a, n_resamples=999)[1] == 1 / 1000
    with pytest.raises(ValueError, match="n_resamples"):
        E.spearman_permutation_test(a, b, n_resamples=0)


def test_planted_interactions_and_split():
    users, items, ug, ig, pop = E.planted_interactions(50, 40, 4, 6, p_in=1.0, seed=0)
    assert len(users) == 300 and np.bincount(users).tolist() == [6] * 50
    assert (ug[users] == ig[items]).all()  # p_in = 1: always inside the group
    for u in range(50):
        assert len(set(items[users == u])) == 6  # distinct items
    kept, held = E.split_per_user(users, 2, seed=1)
    assert np.bincount(users[held]).tolist() == [2] * 50
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == 300
    oracle = E.oracle_scores(ug, ig, pop, p_in=1.0)
    np.testing.assert_allclose(oracle.sum(1), 1.0)
    assert (oracle[ug[:, None] != ig[None, :]] == 0).all()


def test_recall_at_k():
    scores = np.array([[5.0, 4, 3, 2, 1], [1.0, 2, 3, 4, 5]])
    # user 0 saw item 0 in training: its top 2 are then items 1, 2
    recall = E.recall_at_k(
        scores,
        np.array([0]),
        np.array([0]),
        np.array([0, 0, 1]),
        np.array([1, 3, 0]),
        2,
    )
    assert recall == pytest.approx((1 / 2 + 0 / 1) / 2)
