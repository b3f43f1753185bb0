"""Position encodings from scratch: the sinusoidal table against the paper's formula,
its shift matrix against a least-squares fit, RoPE against complex multiplication (both
pairings), RoPE's relative-position property and norm preservation, learned
positions."""

import math

import pytest
import torch

from dlcore.scratch import positions as P

D = torch.float64


def test_sinusoidal_table_is_the_papers_formula():
    t, c = 30, 10
    pe = P.sinusoidal_table(t, c, dtype=D)
    for pos in range(t):
        for i in range(c // 2):
            angle = pos / 10_000 ** (2 * i / c)
            assert abs(pe[pos, 2 * i].item() - math.sin(angle)) < 1e-12
            assert abs(pe[pos, 2 * i + 1].item() - math.cos(angle)) < 1e-12


@pytest.mark.parametrize("offset", [1, 5, 37, -4])
def test_shift_matrix_equals_least_squares_fit(offset):
    """PE(p + k) = M_k PE(p): fit M_k from the table alone, compare. The slowest
    channels turn by 1e-4 rad per position: the fit needs positions far apart."""
    c = 16
    pe = P.sinusoidal_table(100_000, c, dtype=D)
    p = torch.randperm(99_000, generator=torch.Generator().manual_seed(0))[:2_000] + 50
    src, dst = pe[p], pe[p + offset]
    fit = torch.linalg.lstsq(src, dst).solution.T  # dst ≈ src @ fit.T
    m = P.sinusoidal_shift(offset, c)
    torch.testing.assert_close(fit, m, rtol=0, atol=1e-9)
    torch.testing.assert_close(dst, src @ m.T, rtol=0, atol=1e-10)


def _complex_rope(x, pos, interleaved, base=10_000.0):
    """Reference: pair -> complex number, multiply by exp(i p theta)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=D) / d)
    rot = torch.polar(torch.ones(len(pos), d // 2, dtype=D), pos[:, None] * theta)
    if interleaved:
        z = torch.view_as_complex(x.reshape(*x.shape[:-1], d // 2, 2).contiguous())
        return torch.view_as_real(z * rot).flatten(-2)
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :]) * rot
    return torch.cat([z.real, z.imag], -1)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (1, 1, 2), (5, 4)])
def test_rope_equals_complex_rotation(interleaved, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=D)
    pos = torch.arange(shape[-2], dtype=D) * 3 + 2
    got = P.apply_rope(x, pos, interleaved=interleaved)
    torch.testing.assert_close(got, _complex_rope(x, pos, interleaved))


def test_conventions_differ_by_a_channel_permutation():
    x = torch.randn(6, 8, dtype=D)
    perm = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])  # half layout -> interleaved
    a = P.apply_rope(x, interleaved=False)[:, perm]
    b = P.apply_rope(x[:, perm], interleaved=True)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_scores_depend_only_on_offset(interleaved):
    torch.manual_seed(1)
    d, t = 16, 300
    q, k = torch.randn(d, dtype=D), torch.randn(d, dtype=D)
    rq = P.apply_rope(q.expand(t, d), interleaved=interleaved)  # R_m q, m = 0..t-1
    rk = P.apply_rope(k.expand(t, d), interleaved=interleaved)
    scores = rq @ rk.T  # scores[m, n] = <R_m q, R_n k>
    for offset in range(-t + 1, t):
        diag = torch.diagonal(scores, offset)  # n - m = offset
        spread = (diag.max() - diag.min()).item()
        assert spread < 1e-11 * (1 + diag.abs().max().item()), offset
        # and it is <q, R_{n-m} k>
        shifted = P.apply_rope(
            k[None], torch.tensor([float(offset)]), interleaved=interleaved
        )[0]
        assert abs(diag[0].item() - (q @ shifted).item()) < 1e-11
    assert (scores[0, 1] - scores[0, 2]).abs() > 1e-3  # yet it does vary with offset


def test_rope_preserves_norms_even_far_out():
    x = torch.randn(3, 50, 12, dtype=D)
    pos = torch.linspace(0, 1e5, 50, dtype=D)
    for interleaved in (False, True):
        y = P.apply_rope(x, pos, interleaved=interleaved)
        torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))


def test_sinusoidal_module_and_learned_positions():
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(
        P.SinusoidalPositions(6)(x), x + P.sinusoidal_table(5, 6)
    )
    learned = P.LearnedPositions(8, 6)
    learned(x).sum().backward()
    grad_rows = learned.table.grad.abs().sum(-1)
    assert (grad_rows[:5] > 0).all() and (grad_rows[5:] == 0).all()
    with pytest.raises(ValueError, match="max_len"):
        learned(torch.randn(1, 9, 6))


def test_errors():
    with pytest.raises(ValueError, match="even"):
        P.sinusoidal_table(4, 5)
    with pytest.raises(ValueError, match="even"):
        P.apply_rope(torch.randn(3, 5))
    with pytest.raises(ValueError, match="positions"):
        P.apply_rope(torch.randn(3, 4), torch.arange(4))
    with pytest.raises(ValueError, match="num_positions"):
        P.sinusoidal_table(0, 4)
