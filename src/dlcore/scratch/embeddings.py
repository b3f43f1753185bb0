"""Word and item embeddings from scratch: skip-gram with negative sampling (SGNS) in
NumPy with a hand-derived gradient, the same model with `nn.Embedding`, GloVe's
weighted least squares, and the tools to evaluate an embedding (cosine neighbours,
analogies, Spearman's rank correlation, recall@k on a planted recommender data set).

Shapes: a vocabulary of V words (or items), embeddings of dimension D, a batch of B
(centre, context) pairs with K negatives each: centre vectors `u: (B, D)`, positive
context vectors `v_pos: (B, D)`, negative context vectors `v_neg: (B, K, D)`. The
losses are dtype-agnostic (float64 in, float64 out for checking against autograd).
Every log-sigmoid is computed as `-logaddexp(0, -x)`, so dot products of ±50 or ±800
give finite losses and exact gradients, where `log(sigmoid(x))` returns -inf.

Chapter: Part III, 2 — Embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Array = np.ndarray

__all__ = [
    "sigmoid",
    "log_sigmoid",
    "sgns_loss",
    "sgns_grads",
    "SGNS",
    "SkipGram",
    "noise_distribution",
    "subsample",
    "skipgram_pairs",
    "cooccurrence",
    "glove_weight",
    "glove_loss",
    "glove_grads",
    "GloVe",
    "normalize_rows",
    "nearest",
    "analogy",
    "rankdata",
    "spearman",
    "spearman_permutation_test",
    "planted_interactions",
    "oracle_scores",
    "split_per_user",
    "recall_at_k",
]


# ---------------------------------------------------------------- the SGNS loss


def sigmoid(x: Array) -> Array:
    """σ(x) = 1 / (1 + e^{-x}) without overflow: e^{-|x|} is never larger than 1."""
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_sigmoid(x: Array) -> Array:
    """log σ(x) = -log(1 + e^{-x}) = -logaddexp(0, -x): finite for every finite x."""
    return -np.logaddexp(0.0, -np.asarray(x))


def _check_sgns(u: Array, v_pos: Array, v_neg: Array) -> None:
    if u.ndim != 2 or v_pos.shape != u.shape:
        raise ValueError(
            f"u and v_pos must both be (B, D): got {u.shape} and {v_pos.shape}"
        )
    if v_neg.ndim != 3 or v_neg.shape[0] != u.shape[0] or v_neg.shape[2] != u.shape[1]:
        raise ValueError(f"v_neg must be (B, K, D) = ({u.shape[0]}, K, {u.shape[1]})")


def sgns_loss(u: Array, v_pos: Array, v_neg: Array) -> float:
    """Mean over the batch of ℓ = -log σ(u·v⁺) - Σ_k log σ(-u·v⁻_k).

    u: (B, D) centre vectors; v_pos: (B, D) their true contexts; v_neg: (B, K, D)
    K noise contexts per pair."""
    _check_sgns(u, v_pos, v_neg)
    pos = np.einsum("bd,bd->b", u, v_pos)  # (B,)
    neg = np.einsum("bd,bkd->bk", u, v_neg)  # (B, K)
    per_pair = -log_sigmoid(pos) - log_sigmoid(-neg).sum(axis=1)
    return float(per_pair.mean())


def sgns_grads(
    u: Array, v_pos: Array, v_neg: Array
) -> tuple[float, Array, Array, Array]:
    """The loss of `sgns_loss` and its gradients, derived by hand:

    ∂ℓ/∂u = (σ(u·v⁺) - 1) v⁺ + Σ_k σ(u·v⁻_k) v⁻_k,  ∂ℓ/∂v⁺ = (σ(u·v⁺) - 1) u,
    ∂ℓ/∂v⁻_k = σ(u·v⁻_k) u; each divided by B (the loss is a mean).
    Returns (loss, du (B, D), dv_pos (B, D), dv_neg (B, K, D))."""
    _check_sgns(u, v_pos, v_neg)
    B = u.shape[0]
    pos = np.einsum("bd,bd->b", u, v_pos)
    neg = np.einsum("bd,bkd->bk", u, v_neg)
    loss = float((-log_sigmoid(pos) - log_sigmoid(-neg).sum(axis=1)).mean())
    g_pos = (sigmoid(pos) - 1.0) / B  # (B,)   = -σ(-u·v⁺) / B, exact for large |x|
    g_neg = sigmoid(neg) / B  # (B, K)
    du = g_pos[:, None] * v_pos + np.einsum("bk,bkd->bd", g_neg, v_neg)
    dv_pos = g_pos[:, None] * u
    dv_neg = g_neg[:, :, None] * u[:, None, :]
    return loss, du, dv_pos, dv_neg


class SGNS:
    """Skip-gram with negative sampling in NumPy: two tables, `W_in` (V, D) for
    centre words and `W_out` (V, D) for context words, trained by plain SGD.

    Initialised as word2vec does: `W_in` uniform in ±0.5/D, `W_out` zero."""

    def __init__(self, vocab_size: int, dim: int, *, seed: int = 0):
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be >= 1: {vocab_size}, {dim}")
        rng = np.random.default_rng(seed)
        self.W_in = rng.uniform(-0.5 / dim, 0.5 / dim, (vocab_size, dim))
        self.W_out = np.zeros((vocab_size, dim))

    def loss_and_grads(self, centers: Array, contexts: Array, negatives: Array):
        """Loss of a batch and the gradients of the rows it touched.

        centers, contexts: (B,) word ids; negatives: (B, K). Returns (loss, du,
        dv_pos, dv_neg) as `sgns_grads`."""
        return sgns_grads(
            self.W_in[centers], self.W_out[contexts], self.W_out[negatives]
        )

    def step(self, centers: Array, contexts: Array, negatives: Array, lr: float):
        """One SGD step; returns the batch loss. A word that occurs twice in the batch
        receives the sum of its gradients: `np.add.at`, not `W[ids] -= g`, which
        would keep only one of them."""
        loss, du, dv_pos, dv_neg = self.loss_and_grads(centers, contexts, negatives)
        B = len(centers)  # the per-pair gradients are /B: scale back for per-pair SGD
        np.add.at(self.W_in, centers, -lr * B * du)
        np.add.at(self.W_out, contexts, -lr * B * dv_pos)
        np.add.at(self.W_out, negatives, -lr * B * dv_neg)
        return loss


class SkipGram(nn.Module):
    """SGNS with `nn.Embedding`; also the matrix-factorisation recommender (users as
    centres, items as contexts). `forward(centers (B,))` -> centre vectors u (B, D);
    `loss(u, contexts (B,), negatives (B, K) or None)` -> per-pair losses (B,), the
    K negatives drawn from `noise` (a probability vector over the contexts) when
    None. With `dlcore.fit`: `loss_fn=lambda u, ctx: model.loss(u, ctx).mean()`."""

    def __init__(
        self,
        num_centers: int,
        num_contexts: int,
        dim: int,
        noise: torch.Tensor,
        *,
        negatives: int = 5,
    ):
        super().__init__()
        if noise.shape != (num_contexts,):
            raise ValueError(f"noise must have shape ({num_contexts},)")
        self.center = nn.Embedding(num_centers, dim)
        self.context = nn.Embedding(num_contexts, dim)
        nn.init.uniform_(self.center.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.context.weight)
        self.register_buffer("noise", noise.float() / noise.sum())
        self.negatives = negatives

    def forward(self, centers: torch.Tensor) -> torch.Tensor:
        return self.center(centers)

    def loss(self, u, contexts, negatives=None) -> torch.Tensor:
        if negatives is None:
            n = contexts.numel() * self.negatives
            negatives = torch.multinomial(self.noise, n, replacement=True)
            negatives = negatives.view(-1, self.negatives)
        pos = (u * self.context(contexts)).sum(-1)  # (B,)
        neg = torch.einsum("bd,bkd->bk", u, self.context(negatives))  # (B, K)
        return -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)


# ---------------------------------------------------------------- training pairs


def noise_distribution(counts: Array, power: float = 0.75) -> Array:
    """P_n(w) ∝ count(w)^power (word2vec: 3/4). Zero counts get probability 0."""
    weights = np.asarray(counts, dtype=float) ** power
    weights[np.asarray(counts) == 0] = 0.0
    if weights.sum() <= 0:
        raise ValueError("noise_distribution: all counts are zero")
    return weights / weights.sum()


def subsample(ids: Array, counts: Array, t: float, rng: np.random.Generator) -> Array:
    """Mikolov et al.'s subsampling of frequent words: keep each occurrence of w with
    probability min(1, sqrt(t/f) + t/f), f = count(w)/Σ counts (word2vec's C code).
    Returns a boolean keep-mask of ids' shape."""
    f = np.asarray(counts, dtype=float)[ids] / np.sum(counts)
    keep = np.minimum(1.0, np.sqrt(t / f) + t / f)
    return rng.random(len(ids)) < keep


def _flatten(sentences: list[Array]) -> tuple[Array, Array]:
    ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in sentences])
    sid = np.repeat(np.arange(len(sentences)), [len(s) for s in sentences])
    return ids, sid


def skipgram_pairs(
    sentences: list[Array], window: int, rng: np.random.Generator
) -> tuple[Array, Array]:
    """(centre, context) pairs within each sentence. As in word2vec, each centre draws
    its own window b ~ Uniform{1..window} and pairs with the words at distance ≤ b on
    either side, so near words are paired more often than far ones.
    Returns (centers (N,), contexts (N,)) int64."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    ids, sid = _flatten(sentences)
    b = rng.integers(1, window + 1, len(ids))  # each centre's reduced window
    centers, contexts = [], []
    for d in range(1, window + 1):
        same = sid[:-d] == sid[d:]  # position i and i + d in the same sentence
        right = same & (b[:-d] >= d)  # centre i, context i + d
        left = same & (b[d:] >= d)  # centre i + d, context i
        centers += [ids[:-d][right], ids[d:][left]]
        contexts += [ids[d:][right], ids[:-d][left]]
    return np.concatenate(centers), np.concatenate(contexts)


def cooccurrence(
    sentences: list[Array], vocab_size: int, window: int
) -> tuple[Array, Array, Array]:
    """GloVe's co-occurrence counts: X_ij = Σ 1/d over the occurrences of j at
    distance d ≤ window of i in the same sentence (symmetric). Returns the nonzero
    entries as (rows, cols, values), sorted by (row, col)."""
    ids, sid = _flatten(sentences)
    keys, weights = [], []
    for d in range(1, window + 1):
        same = sid[:-d] == sid[d:]
        a, c = ids[:-d][same], ids[d:][same]
        keys += [a * vocab_size + c, c * vocab_size + a]
        weights += [np.full(2 * len(a), 1.0 / d)]
    keys = np.concatenate(keys)
    unique, inverse = np.unique(keys, return_inverse=True)
    values = np.bincount(inverse, weights=np.concatenate(weights))
    return unique // vocab_size, unique % vocab_size, values


# ---------------------------------------------------------------- GloVe


def glove_weight(x: Array, x_max: float = 100.0, alpha: float = 0.75) -> Array:
    """f(x) = (x / x_max)^alpha for x < x_max, else 1 (Pennington et al. 2014)."""
    x = np.asarray(x, dtype=float)
    return np.where(x < x_max, (x / x_max) ** alpha, 1.0)


def glove_loss(W, Wc, b, bc, rows, cols, x, x_max=100.0, alpha=0.75) -> float:
    """J = Σ_(i,j) f(X_ij) (w_i·w̃_j + b_i + b̃_j - log X_ij)² over the given nonzero
    entries. W, Wc: (V, D) word and context vectors; b, bc: (V,) biases;
    rows, cols, x: (N,) the entries (x > 0)."""
    e = np.einsum("nd,nd->n", W[rows], Wc[cols]) + b[rows] + bc[cols] - np.log(x)
    return float((glove_weight(x, x_max, alpha) * e**2).sum())


def glove_grads(W, Wc, b, bc, rows, cols, x, x_max=100.0, alpha=0.75):
    """J of `glove_loss` and its gradients, by hand: with g = 2 f(X_ij) e_ij,
    ∂J/∂w_i = Σ_j g w̃_j, ∂J/∂w̃_j = Σ_i g w_i, ∂J/∂b_i = Σ_j g, ∂J/∂b̃_j = Σ_i g.
    Returns (J, dW (V, D), dWc (V, D), db (V,), dbc (V,)); a word in several entries
    sums their gradients (np.add.at)."""
    e = np.einsum("nd,nd->n", W[rows], Wc[cols]) + b[rows] + bc[cols] - np.log(x)
    f = glove_weight(x, x_max, alpha)
    g = 2.0 * f * e  # (N,)
    dW, dWc = np.zeros_like(W), np.zeros_like(Wc)
    db, dbc = np.zeros_like(b), np.zeros_like(bc)
    np.add.at(dW, rows, g[:, None] * Wc[cols])
    np.add.at(dWc, cols, g[:, None] * W[rows])
    np.add.at(db, rows, g)
    np.add.at(dbc, cols, g)
    return float((f * e**2).sum()), dW, dWc, db, dbc


class GloVe(nn.Module):
    """GloVe as an `nn.Module`. forward(pairs (B, 2) of (i, j) ids) -> the predicted
    log co-occurrence w_i·w̃_j + b_i + b̃_j (B,); `GloVe.loss(pred, target)` with
    target (B, 2) = (log X_ij, f(X_ij)) -> the batch mean of f (pred - log X)², so
    `dlcore.fit(model, loader, loss_fn=GloVe.loss, ...)` trains it. The embedding
    of word i is w_i + w̃_i, as in the paper."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.w = nn.Embedding(vocab_size, dim)
        self.wc = nn.Embedding(vocab_size, dim)
        self.b = nn.Embedding(vocab_size, 1)
        self.bc = nn.Embedding(vocab_size, 1)
        for table in (self.w, self.wc):
            nn.init.uniform_(table.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.bc.weight)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        rows, cols = pairs[:, 0], pairs[:, 1]
        dot = (self.w(rows) * self.wc(cols)).sum(-1)
        return dot + self.b(rows)[:, 0] + self.bc(cols)[:, 0]

    @staticmethod
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_x, f = target[:, 0], target[:, 1]
        return (f * (pred - log_x) ** 2).mean()

    def embeddings(self) -> torch.Tensor:
        return (self.w.weight + self.wc.weight).detach()


# ---------------------------------------------------------------- evaluation


def normalize_rows(E: Array) -> Array:
    """Rows scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    return E / np.where(norms > 0, norms, 1.0)


def nearest(E: Array, query: Array, k: int, exclude: Array | None = None):
    """The k rows of E with the largest cosine similarity to each query vector.
    E: (V, D); query: (Q, D); exclude: (Q, m) ids to skip (e.g. the query words).
    Returns (ids (Q, k), cosines (Q, k)), most similar first."""
    sims = normalize_rows(np.atleast_2d(query)) @ normalize_rows(E).T  # (Q, V)
    if exclude is not None:
        np.put_along_axis(sims, np.atleast_2d(exclude), -np.inf, axis=1)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(sims, top, axis=1)


def analogy(E: Array, a: Array, b: Array, c: Array) -> Array:
    """3CosAdd: "a is to b as c is to ?" -> argmax_x cos(x, b̂ - â + ĉ) over the unit
    vectors, x not in {a, b, c}. a, b, c: (Q,) ids; returns (Q,) ids."""
    En = normalize_rows(E)
    target = En[b] - En[a] + En[c]
    ids, _ = nearest(En, target, 1, exclude=np.stack([a, b, c], axis=1))
    return ids[:, 0]


def rankdata(x: Array) -> Array:
    """Ranks 1..n, ties given the mean of the ranks they span ('average' ranks)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]  # first element of each tie
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    ranks = np.empty(len(x))
    ranks[order] = (first[group] + last[group]) / 2 + 1
    return ranks


def spearman(x: Array, y: Array) -> float:
    """Spearman's ρ: Pearson's correlation of the (average) ranks of x and y."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("spearman needs two sequences of the same length >= 2")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx**2).sum() * (ry**2).sum()))


def spearman_permutation_test(
    x: Array, y: Array, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Spearman's ρ of x, y (n,) and its one-sided permutation p-value for ρ > 0.

    Under "no relation" every pairing of x with a shuffled y is equally likely, so
    p = (1 + #{shuffles with ρ* >= ρ}) / (1 + n_resamples): the observed pairing
    counts as one of them, and p is never 0. Ties in the comparison are allowed a
    rounding slack of 1e-12 (a shuffle that equals the observed order must count).
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rho = spearman(x, y)
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = np.sqrt((rx**2).sum() * (ry**2).sum())
    rng, hits = np.random.default_rng(seed), 0
    for start in range(0, n_resamples, 1_000):  # (≤ 1000, n) shuffles at a time
        rows = min(1_000, n_resamples - start)
        shuffled = rng.permuted(np.tile(ry, (rows, 1)), axis=1)
        hits += int(((shuffled @ rx) / scale >= rho - 1e-12).sum())
    return rho, (1 + hits) / (1 + n_resamples)


# ---------------------------------------------------------------- recommender


def planted_interactions(
    n_users: int,
    n_items: int,
    n_groups: int,
    per_user: int,
    *,
    p_in: float = 0.8,
    zipf: float = 1.0,
    seed: int = 0,
) -> tuple[Array, Array, Array, Array, Array]:
    """Synthetic implicit feedback with a known structure. Users and items are each
    split into `n_groups` groups; item popularity follows a Zipf law (weight ∝
    rank^-zipf, ranks shuffled over items). Each user picks `per_user` distinct items
    from the mixture p_in · (popularity within the user's group) + (1 - p_in) ·
    (popularity over all items). Returns (users (N,), items (N,), user_group
    (n_users,), item_group (n_items,), popularity (n_items,)); `oracle_scores` turns
    the last three into the mixture every user was drawn from."""
    if per_user > n_items // n_groups:
        raise ValueError("per_user must be at most the size of one item group")
    rng = np.random.default_rng(seed)
    user_group = rng.integers(0, n_groups, n_users)
    item_group = rng.permutation(np.arange(n_items) % n_groups)
    popularity = 1.0 / rng.permutation(np.arange(1, n_items + 1)) ** zipf
    users, items = [], []
    for u in range(n_users):
        p = _mixture(popularity, item_group, user_group[u], p_in)
        chosen = rng.choice(n_items, per_user, replace=False, p=p)
        users.append(np.full(per_user, u))
        items.append(chosen)
    users, items = np.concatenate(users), np.concatenate(items)
    return users, items, user_group, item_group, popularity


def oracle_scores(
    user_group: Array, item_group: Array, popularity: Array, p_in: float = 0.8
) -> Array:
    """(n_users, n_items): the probability of each item in the mixture its user was
    drawn from -- the best any ranking can know about the planted data."""
    return np.stack([_mixture(popularity, item_group, g, p_in) for g in user_group])


def _mixture(popularity: Array, item_group: Array, group: int, p_in: float) -> Array:
    inside = np.where(item_group == group, popularity, 0.0)
    return p_in * inside / inside.sum() + (1 - p_in) * popularity / popularity.sum()


def split_per_user(users: Array, n_holdout: int, seed: int = 0) -> tuple[Array, Array]:
    """Hold out `n_holdout` random interactions of every user. users: (N,) the user of
    each interaction; returns (kept_index, held_index) into the N interactions."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users))
    order = order[np.argsort(users[order], kind="stable")]  # grouped by user, shuffled
    first = np.searchsorted(users[order], users[order])  # start of each user's block
    position = np.arange(len(users)) - first
    held = position < n_holdout
    return np.sort(order[~held]), np.sort(order[held])


def recall_at_k(
    scores: Array,
    train_users: Array,
    train_items: Array,
    test_users: Array,
    test_items: Array,
    k: int = 10,
) -> float:
    """Mean over test users of |top-k ∩ held-out items| / |held-out items|, where the
    top k are the highest-scoring items the user did not interact with in training.
    scores: (n_users, n_items)."""
    scores = np.array(scores, dtype=float, copy=True)
    scores[train_users, train_items] = -np.inf  # never recommend what was seen
    top = np.argpartition(-scores, k, axis=1)[:, :k]  # (n_users, k), unordered
    hit = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(hit, top, True, axis=1)
    hits = np.bincount(test_users, weights=hit[test_users, test_items])
    held = np.bincount(test_users)
    users = held > 0
    return float(np.mean(hits[users] / held[users]))
