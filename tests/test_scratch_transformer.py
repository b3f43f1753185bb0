"""Transformer layers from scratch (dlcore.scratch.transformer) against
nn.TransformerEncoderLayer / nn.TransformerDecoderLayer with the same weights: values
and gradients (inputs and every weight), float64, pre- and post-norm, padding, a
length-1 source, T = 1, one head; and the pre-norm identity path."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.scratch import transformer as TR

D = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)


def _randomise(layer: nn.Module) -> nn.Module:
    # torch starts biases at 0 and LayerNorm at (1, 0): make every parameter count
    torch.manual_seed(7)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return layer


def _encoder(c, h, f, norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        c, h, f, dropout=0.0, batch_first=True, norm_first=norm_first, dtype=D
    )
    return _randomise(layer).eval()


def _decoder(c, h, f, norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(
        c, h, f, dropout=0.0, batch_first=True, norm_first=norm_first, dtype=D
    )
    return _randomise(layer).eval()


def _real(lengths, t):
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]


CASES = [  # B, S, C, h, F, source lengths
    (3, 5, 8, 2, 12, [5, 2, 1]),
    (1, 1, 4, 1, 6, [1]),  # one position, one head
    (2, 6, 12, 3, 20, [6, 6]),  # no padding
    (4, 7, 16, 4, 8, [7, 6, 3, 1]),
]


def _grads(out, inputs, layer, seed=3):
    torch.manual_seed(seed)
    weight = torch.randn_like(out)
    params = list(layer.parameters())
    return torch.autograd.grad((out * weight).sum(), [*inputs, *params])


@pytest.mark.parametrize("b,s,c,h,f,lengths", CASES)
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_layer_equals_torch(b, s, c, h, f, lengths, norm_first):
    layer = _encoder(c, h, f, norm_first)
    torch.manual_seed(1)
    x = torch.randn(b, s, c, dtype=D, requires_grad=True)
    real = _real(lengths, s)
    ours = TR.encoder_layer(
        x, TR.encoder_params_from_torch(layer), h, real, norm_first=norm_first
    )
    ref = layer(x, src_key_padding_mask=~real)
    # torch's fast path leaves padded rows as zeros in some versions: compare real rows
    torch.testing.assert_close(ours[real], ref[real], **TOL)
    g_ours = _grads(torch.where(real[..., None], ours, 0.0), [x], layer)
    g_ref = _grads(torch.where(real[..., None], ref, 0.0), [x], layer)
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r, **TOL)


@pytest.mark.parametrize("b,s,c,h,f,lengths", CASES)
@pytest.mark.parametrize("t", [1, 4])
@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer_equals_torch(b, s, c, h, f, lengths, t, norm_first):
    layer = _decoder(c, h, f, norm_first)
    torch.manual_seed(2)
    y = torch.randn(b, t, c, dtype=D, requires_grad=True)
    memory = torch.randn(b, s, c, dtype=D, requires_grad=True)
    real = _real(lengths, s)
    ours = TR.decoder_layer(
        y, memory, TR.decoder_params_from_torch(layer), h, real, norm_first=norm_first
    )
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # True = hide
    ref = layer(y, memory, tgt_mask=future, memory_key_padding_mask=~real)
    torch.testing.assert_close(ours, ref, **TOL)
    for a, r in zip(_grads(ours, [y, memory], layer), _grads(ref, [y, memory], layer)):
        torch.testing.assert_close(a, r, **TOL)


def test_decoder_is_causal():
    # changing a later target position leaves earlier outputs unchanged
    layer = _decoder(8, 2, 12, True)
    p = TR.decoder_params_from_torch(layer)
    torch.manual_seed(4)
    y, memory = torch.randn(2, 5, 8, dtype=D), torch.randn(2, 3, 8, dtype=D)
    changed = y.clone()
    changed[:, 3:] += 100.0
    a = TR.decoder_layer(y, memory, p, 2)
    b = TR.decoder_layer(changed, memory, p, 2)
    torch.testing.assert_close(a[:, :3], b[:, :3], **TOL)
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1.0


def test_pre_norm_keeps_an_identity_path():
    # with every sublayer's output weights at zero, pre-norm returns x exactly;
    # post-norm returns LN(x), not x
    layer = _encoder(8, 2, 12, True)
    p = TR.encoder_params_from_torch(layer)
    zero = lambda t: torch.zeros_like(t)
    p.attn.w_o, p.attn.b_o = zero(p.attn.w_o), zero(p.attn.b_o)
    p.ffn.w2, p.ffn.b2 = zero(p.ffn.w2), zero(p.ffn.b2)
    x = torch.randn(2, 4, 8, dtype=D) * 50.0
    assert torch.equal(TR.encoder_layer(x, p, 2, norm_first=True), x)
    post = TR.encoder_layer(x, p, 2, norm_first=False)
    twice = F.layer_norm(x, (8,), p.norm1.weight, p.norm1.bias, p.norm1.eps)
    twice = F.layer_norm(twice, (8,), p.norm2.weight, p.norm2.bias, p.norm2.eps)
    torch.testing.assert_close(post, twice, **TOL)
    assert (post - x).abs().max() > 1.0


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_layer_norm_equals_torch(scale):
    torch.manual_seed(5)
    x = (
        torch.randn(3, 4, 16) * scale + scale
    ).requires_grad_()  # large mean and spread
    w, b = torch.randn(16), torch.randn(16)
    ours = TR.layer_norm(x, TR.NormParams(w, b, 1e-5))
    ref = F.layer_norm(x, (16,), w, b, 1e-5)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    const = torch.full((2, 8), 3.0, dtype=D)  # zero variance: eps keeps it finite
    out = TR.layer_norm(const, TR.NormParams(torch.ones(8, dtype=D), torch.zeros(8)))
    assert torch.equal(out, torch.zeros(2, 8, dtype=D))


def test_gelu_layers_are_refused():
    layer = nn.TransformerEncoderLayer(8, 2, 12, activation="gelu", batch_first=True)
    with pytest.raises(ValueError, match="relu"):
        TR.encoder_params_from_torch(layer)
    dec = nn.TransformerDecoderLayer(8, 2, 12, activation="gelu", batch_first=True)
    with pytest.raises(ValueError, match="relu"):
        TR.decoder_params_from_torch(dec)
