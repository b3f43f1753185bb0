"""The Transformer tool (dlcore.models.transformer): layers equal to torch's with the
same state_dict (pre/post-norm, padding, float64); the key/value cache equal to
teacher forcing; padding invariance; greedy = beam K = 1; beam search with a beam wide
enough to hold every sequence equal to brute-force search; label smoothing and the
warm-up schedule against their formulas."""

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.models import decoding
from dlcore.models.transformer import (
    DecoderLayer,
    EncoderLayer,
    TransformerConfig,
    TransformerSeq2Seq,
    smoothed_loss,
    warmup_inverse_sqrt,
)

D = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)


def _config(**kw):
    base = dict(
        d_model=16, num_heads=4, d_ff=24, dropout=0.0, enc_layers=2, dec_layers=2
    )
    return TransformerConfig(30, 12, **{**base, **kw})


def _randomise(layer):
    torch.manual_seed(7)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("norm_first", [True, False])
def test_layers_load_torch_weights_and_agree(norm_first):
    c = _config(norm_first=norm_first)
    torch.manual_seed(0)
    kw = dict(dropout=0.0, batch_first=True, norm_first=norm_first, dtype=D)
    ref_enc = _randomise(nn.TransformerEncoderLayer(16, 4, 24, **kw)).eval()
    ref_dec = _randomise(nn.TransformerDecoderLayer(16, 4, 24, **kw)).eval()
    enc, dec = EncoderLayer(c).double().eval(), DecoderLayer(c).double().eval()
    enc.load_state_dict(ref_enc.state_dict())  # same names, same shapes: strict
    dec.load_state_dict(ref_dec.state_dict())
    x, y = torch.randn(3, 5, 16, dtype=D), torch.randn(3, 4, 16, dtype=D)
    real = torch.arange(5)[None] < torch.tensor([5, 2, 1])[:, None]
    out = enc(x, real)
    torch.testing.assert_close(out[real], ref_enc(x, src_key_padding_mask=~real)[real])
    future = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)
    ref = ref_dec(y, x, tgt_mask=future, memory_key_padding_mask=~real)
    torch.testing.assert_close(dec(y, x, real), ref, **TOL)


def _sinusoids(t: int, c: int) -> torch.Tensor:
    # the 2017 formula written out: PE[p, 2i] = sin(p / 10000^(2i/C)), cos at 2i+1
    pe = torch.zeros(t, c, dtype=D)
    for p in range(t):
        for i in range(0, c, 2):
            pe[p, i] = math.sin(p / 10_000 ** (i / c))
            pe[p, i + 1] = math.cos(p / 10_000 ** (i / c))
    return pe


def test_whole_model_equals_nn_transformer():
    # embeddings * sqrt(C) + positions, both stacks with final norms (pre-norm),
    # masks and the tied head, against nn.Transformer with the same layer weights
    c = _config(norm_first=True)
    torch.manual_seed(8)
    ours = TransformerSeq2Seq(c).double().eval()
    with warnings.catch_warnings():  # torch's note on nested tensors and norm_first
        warnings.simplefilter("ignore", UserWarning)
        ref = nn.Transformer(
            16, 4, 2, 2, 24, dropout=0.0, batch_first=True, norm_first=True, dtype=D
        ).eval()
    _randomise(ref)
    for mine, theirs in ((ours.encoder, ref.encoder), (ours.decoder, ref.decoder)):
        for a, b in zip(mine, theirs.layers):
            a.load_state_dict(b.state_dict())
    ours.encoder_norm.load_state_dict(ref.encoder.norm.state_dict())
    ours.decoder_norm.load_state_dict(ref.decoder.norm.state_dict())
    # the model stores its table in float32: give it the float64 one for this check
    ours.positions = _sinusoids(c.max_len, 16)
    src, tgt = torch.randint(4, 30, (3, 6)), torch.randint(2, 12, (3, 5))
    src[1, 4:] = 0
    src[2, 1:] = 0  # a length-1 source
    pad = src == 0
    emb = lambda table, ids: table.weight[ids] * 4.0 + _sinusoids(ids.shape[1], 16)
    future = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    hidden = ref(
        emb(ours.src_embed, src),
        emb(ours.tgt_embed, tgt),
        tgt_mask=future,
        src_key_padding_mask=pad,
        memory_key_padding_mask=pad,
    )
    expected = hidden @ ours.tgt_embed.weight.T  # tied output projection
    torch.testing.assert_close(ours(src, None, tgt), expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("norm_first", [True, False])
def test_cache_equals_teacher_forcing(norm_first):
    torch.manual_seed(1)
    model = TransformerSeq2Seq(_config(norm_first=norm_first)).double().eval()
    src = torch.randint(4, 30, (3, 6))
    src[1, 2:] = 0  # padding; row 2 keeps all 6 tokens
    src[2, 1:] = 0  # a length-1 source
    tgt = torch.randint(2, 12, (3, 7))
    memory, mask = model.encode(src)
    full = model.decode(tgt, memory, mask)
    caches = [{} for _ in model.decoder]
    steps = [model.decode(tgt[:, t : t + 1], memory, mask, caches, t) for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, 1), full, **TOL)


def test_padding_does_not_change_a_sentence():
    torch.manual_seed(2)
    model = TransformerSeq2Seq(_config()).double().eval()
    src = torch.randint(4, 30, (3, 6))
    lengths = [6, 3, 1]
    for i, n in enumerate(lengths):
        src[i, n:] = 0
    tgt = torch.randint(2, 12, (3, 5))
    batch = model(src, None, tgt)
    for i, n in enumerate(lengths):
        alone = model(src[i : i + 1, :n], None, tgt[i : i + 1])
        torch.testing.assert_close(alone[0], batch[i], **TOL)


def test_greedy_is_beam_of_one_and_never_writes_pad_or_bos():
    torch.manual_seed(3)
    model = TransformerSeq2Seq(_config(dropout=0.1)).eval()
    src = torch.randint(4, 30, (5, 4))
    greedy = model.greedy(src, None, 9)
    assert greedy == model.beam_search(src, None, 1, 9)
    assert all(t not in (0, 2, 3) for row in greedy for t in row)


def _sequence_logprob(model, src, seq):
    # log p(seq | src) by teacher forcing: an independent path from the cached decoder
    c = model.config
    tgt_in = torch.tensor([[c.bos_id, *seq[:-1]]])
    logp = model.next_logprobs(model(src, None, tgt_in))[0]
    return sum(logp[t, tok].item() for t, tok in enumerate(seq))


def test_wide_beam_equals_brute_force():
    torch.manual_seed(4)
    c = TransformerConfig(
        10, 6, d_model=8, num_heads=2, d_ff=16, enc_layers=1, dec_layers=1, dropout=0.0
    )
    model = TransformerSeq2Seq(c).double().eval()
    src = torch.tensor([[5, 6, 7]])
    words = [1, 4, 5]  # every token but <pad>, <bos> (banned) and <eos>
    candidates = [[c.eos_id]]
    for n in (1, 2):
        candidates += [[*w, c.eos_id] for w in itertools.product(words, repeat=n)]
    candidates += [list(w) for w in itertools.product(words, repeat=3)]  # hit max_len
    scores = [_sequence_logprob(model, src, s) for s in candidates]
    for alpha in (0.0, 1.0):
        norm = [s / len(q) ** alpha for s, q in zip(scores, candidates)]
        best = candidates[max(range(len(norm)), key=norm.__getitem__)]
        expected = [t for t in best if t != c.eos_id]
        assert model.beam_search(src, None, 64, 3, alpha) == [expected]


def test_smoothed_loss_formula():
    torch.manual_seed(5)
    logits = torch.randn(2, 3, 7, dtype=D) * 20  # large logits
    y = torch.tensor([[4, 5, 0], [6, 0, 0]])  # 0 = padding
    eps = 0.1
    logp = F.log_softmax(logits, -1)
    real = y != 0
    nll = -logp.gather(-1, y[..., None])[..., 0]
    uniform = -logp.mean(-1)
    expected = ((1 - eps) * nll + eps * uniform)[real].mean()
    got = smoothed_loss(logits, y, eps, 0)
    assert got.dtype == D  # float64 is not rounded to float32 on the way
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    plain = F.cross_entropy(logits[real], y[real])
    torch.testing.assert_close(smoothed_loss(logits, y, 0.0, 0), plain)
    assert smoothed_loss(logits.half(), y).dtype == torch.float32


def test_warmup_schedule():
    f = warmup_inverse_sqrt(400)
    assert f(0) == f(1) == 1 / 400
    assert f(200) == 0.5 and f(400) == 1.0
    assert math.isclose(f(1600), 0.5)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_inverse_sqrt(0)


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="d_model"):
        TransformerConfig(10, 10, d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="enc_layers"):
        TransformerConfig(10, 10, enc_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        TransformerConfig(10, 10, dropout=1.0)
    model = TransformerSeq2Seq(
        TransformerConfig(10, 10, d_model=8, num_heads=2, max_len=4)
    )
    with pytest.raises(ValueError, match="max_len"):
        model(
            torch.ones(1, 5, dtype=torch.long), None, torch.ones(1, 2, dtype=torch.long)
        )


def test_decoding_rejects_bad_beam_size():
    step = lambda token, rows: torch.zeros(token.shape[0], 5)
    with pytest.raises(ValueError, match="beam_size"):
        decoding.beam_search(step, 1, 0, 3, bos_id=2, eos_id=3, pad_id=0, device="cpu")


def test_translate_recipe_end_to_end_on_a_few_pairs():
    # the shared recipe: vocabularies, training (the kept epoch has the lowest val
    # loss), and batched decoding that returns one string per pair, in order
    from dlcore.translate import MTData, train_transformer, translate

    pairs = [
        ("I see a cat .", "我看见一只猫。"),
        ("I see a dog .", "我看见一只狗。"),
    ] * 8
    data = MTData.build(pairs, min_freq=1)
    assert data.digest() == MTData.build(pairs, min_freq=1).digest()
    assert data.digest() != MTData.build(pairs[:1], min_freq=1).digest()
    config = data.config(d_model=16, num_heads=2, enc_layers=1, dec_layers=1, d_ff=32)
    model, history, kept = train_transformer(
        config,
        data,
        pairs,
        pairs[:4],
        epochs=3,
        batch_size=4,
        peak_lr=3e-3,
        warmup_steps=2,
        device="cpu",
    )
    nll = history["val_nll"]
    assert len(nll) == 3 and kept == 1 + nll.index(min(nll))
    assert nll[-1] < nll[0]
    out = translate(model, data, pairs[:3] + [("a", "")], beam_size=2, max_len=8)
    assert len(out) == 4 and all(isinstance(s, str) and len(s) <= 8 for s in out)
    assert translate(model, data, pairs[:3], max_len=8) == [
        translate(model, data, [p], max_len=8)[0] for p in pairs[:3]
    ]
