"""The Bahdanau attention encoder–decoder (`dlcore.models.attention_seq2seq`): shapes,
padding positions get exactly zero attention and do not change anything, attention
scores equal the scratch `additive_scores`, teacher forcing equals step-by-step
decoding, beam size 1 is greedy (ids and attention), a wide beam finds the exact most
probable sequence, and the returned attention rows match the written tokens."""

import pytest
import torch
from test_models_seq2seq import brute_force_best

from dlcore.models.attention_seq2seq import AttentionSeq2Seq
from dlcore.models.seq2seq import Seq2SeqConfig, seq2seq_loss
from dlcore.scratch import attention as A

TOL = dict(rtol=1e-12, atol=1e-12)


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    config = Seq2SeqConfig(
        src_vocab=15,
        tgt_vocab=kw.pop("tgt_vocab", 11),
        embed_dim=6,
        hidden_size=8,
        dropout=0.0,
        **kw,
    )
    return AttentionSeq2Seq(config).double().eval()


def batch(seed=1, lengths=(5, 1, 3, 4)):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 15, (len(lengths), max(lengths)), generator=gen)
    for i, n in enumerate(lengths):
        src[i, n:] = 0
    return src, torch.tensor(lengths)


def target(b=4, t=6, seed=3):
    return torch.randint(2, 11, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kw", [{}, {"bidirectional": False}, {"num_layers": 2}])
def test_shapes_and_padding_gets_zero_attention(kw):
    model = small_model(**kw)
    src, lengths = batch()
    logits, w = model.attention(src, lengths, target())
    assert logits.shape == (4, 6, 11) and w.shape == (4, 6, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 6, dtype=w.dtype), **TOL)
    pad = torch.arange(5) >= lengths[:, None]  # (B, S)
    assert (w.masked_select(pad[:, None, :]) == 0).all()
    assert (w[1, :, 0] == 1).all()  # a one-word source: all weight on it


def test_padded_batch_equals_each_sentence_alone():
    model = small_model(num_layers=2)
    src, lengths = batch()
    tgt_in = target()
    logits, w = model.attention(src, lengths, tgt_in)
    for i, n in enumerate(lengths.tolist()):
        one, w1 = model.attention(
            src[i : i + 1, :n], lengths[i : i + 1], tgt_in[i : i + 1]
        )
        torch.testing.assert_close(logits[i], one[0], **TOL)
        torch.testing.assert_close(w[i, :, :n], w1[0], **TOL)


def test_scores_equal_scratch_additive_scores():
    model = small_model()
    src, lengths = batch()
    state, memory = model.encode(src, lengths)
    att = model.decoder.attention
    _, w = att(state[-1], memory)
    # the module's W_k has a bias: append a constant 1 to every key instead
    k_with_bias = torch.cat(
        [memory.values, torch.ones_like(memory.values[..., :1])], -1
    )
    w_k = torch.cat([att.w_k.weight, att.w_k.bias[:, None]], -1)
    scores = A.additive_scores(
        state[-1][:, None, :], k_with_bias, att.w_q.weight, w_k, att.v.weight[0]
    )
    ref = A.masked_softmax(scores, memory.mask[:, None, :])[:, 0]
    torch.testing.assert_close(w, ref, **TOL)


@pytest.mark.parametrize("kw", [{}, {"num_layers": 2}])
def test_teacher_forcing_equals_step_by_step_decoding(kw):
    model = small_model(**kw)
    src, lengths = batch()
    tgt_in = target()
    logits, w = model.attention(src, lengths, tgt_in)
    state, memory = model.encode(src, lengths)
    assert state.shape == (kw.get("num_layers", 1), 4, 8)
    for t in range(6):
        step, state, wt = model.decoder.step(tgt_in[:, t], state, memory)
        torch.testing.assert_close(step, logits[:, t], **TOL)
        torch.testing.assert_close(wt, w[:, t], **TOL)


def test_loss_trains_and_greedy_reproduces_the_targets():
    model = small_model()
    model.train()
    src, lengths = batch()
    tgt = torch.tensor(
        [[2, 5, 6, 3, 0], [2, 7, 3, 0, 0], [2, 8, 9, 10, 3], [2, 3, 0, 0, 0]]
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    first = seq2seq_loss(model(src, lengths, tgt[:, :-1]), tgt[:, 1:]).item()
    for _ in range(30):
        opt.zero_grad()
        seq2seq_loss(model(src, lengths, tgt[:, :-1]), tgt[:, 1:]).backward()
        opt.step()
    model.eval()
    assert seq2seq_loss(model(src, lengths, tgt[:, :-1]), tgt[:, 1:]) < 0.1 * first
    assert model.greedy(src, lengths, max_len=8) == [[5, 6], [7], [8, 9, 10], []]


@pytest.mark.parametrize("seed", range(4))
def test_beam_of_one_is_greedy_with_the_same_attention(seed):
    model = small_model(seed)
    src, lengths = batch(seed + 10)
    ids, att = model.greedy(src, lengths, max_len=7, return_attention=True)
    ids_b, att_b = model.beam_search(
        src, lengths, beam_size=1, max_len=7, return_attention=True
    )
    assert ids_b == ids and model.beam_search(src, lengths, 1, 7) == ids
    for a, b in zip(att, att_b):
        torch.testing.assert_close(a.double(), b.double(), **TOL)


@pytest.mark.parametrize("beam", [1, 3])
def test_returned_attention_rows_match_the_written_tokens(beam):
    model = small_model(2)
    src, lengths = batch(7)
    ids, att = model.beam_search(
        src, lengths, beam_size=beam, max_len=6, return_attention=True
    )
    for i, (row, a) in enumerate(zip(ids, att)):
        n = len(row) + (1 if len(row) < 6 else 0)  # + the <eos> row if written
        assert a.shape == (n, int(lengths[i]))
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[0], dtype=a.dtype))
    # the rows of the chosen hypothesis are its teacher-forced attention
    full = [r + [model.config.eos_id] for r in ids]
    width = max(map(len, full))
    tgt_in = torch.zeros(len(ids), width, dtype=torch.long)
    for i, r in enumerate(full):
        tgt_in[i, : len(r)] = torch.tensor([model.config.bos_id, *r[:-1]])
    _, w = model.attention(src, lengths, tgt_in)
    for i, a in enumerate(att):
        torch.testing.assert_close(a, w[i, : a.shape[0], : a.shape[1]], **TOL)


@pytest.mark.parametrize("seed", range(2))
def test_a_wide_beam_finds_the_most_probable_sequence(seed):
    model = small_model(seed, tgt_vocab=7)
    src, lengths = batch(seed + 20, lengths=(3, 1, 2))
    wide = model.beam_search(
        src, lengths, beam_size=4**3, max_len=3, length_penalty=0.0
    )
    assert wide == brute_force_best(model, src, lengths, 3)


def test_beam_size_error():
    model = small_model()
    src, lengths = batch()
    with pytest.raises(ValueError, match="beam_size"):
        model.beam_search(src, lengths, beam_size=0)
