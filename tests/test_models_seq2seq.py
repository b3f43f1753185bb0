"""The GRU encoder–decoder (`dlcore.models.seq2seq`): padding does not change the
encoding, teacher forcing equals step-by-step decoding, beam size 1 is greedy, and a
beam wide enough to keep every prefix finds the exact most probable sequence."""

import itertools

import pytest
import torch

from dlcore.models.seq2seq import Seq2Seq, Seq2SeqConfig, seq2seq_loss


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
    return Seq2Seq(config).double().eval()


def batch(seed=1, lengths=(5, 1, 3, 4)):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 15, (len(lengths), max(lengths)), generator=gen)
    for i, n in enumerate(lengths):
        src[i, n:] = 0
    return src, torch.tensor(lengths)


@pytest.mark.parametrize(
    "kw", [{}, {"bidirectional": False}, {"num_layers": 2}, {"num_layers": 3}]
)
def test_padding_does_not_change_the_encoding(kw):
    model = small_model(**kw)
    src, lengths = batch()
    out, context = model.encoder(src, lengths)
    assert out.shape == (4, 5, (2 if kw.get("bidirectional", True) else 1) * 8)
    assert context.shape == (4, 8)
    for i, n in enumerate(lengths.tolist()):
        alone_out, alone = model.encoder(src[i : i + 1, :n], lengths[i : i + 1])
        torch.testing.assert_close(context[i], alone[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out[i, :n], alone_out[0], rtol=1e-12, atol=1e-12)
        assert (out[i, n:] == 0).all()


def test_teacher_forcing_equals_step_by_step_decoding():
    model = small_model(num_layers=2)
    src, lengths = batch()
    tgt_in = torch.randint(2, 11, (4, 6), generator=torch.Generator().manual_seed(3))
    logits = model(src, lengths, tgt_in)
    assert logits.shape == (4, 6, 11)
    _, context = model.encoder(src, lengths)
    state = model.decoder.init_state(context)
    assert state.shape == (2, 4, 8)
    for t in range(6):
        step, state = model.decoder(tgt_in[:, t : t + 1], state, context)
        torch.testing.assert_close(step[:, 0], logits[:, t], rtol=1e-12, atol=1e-12)


def test_loss_ignores_padding_and_trains():
    model = small_model()
    model.train()
    src, lengths = batch()
    tgt = torch.tensor(
        [[2, 5, 6, 3, 0], [2, 7, 3, 0, 0], [2, 8, 9, 10, 3], [2, 3, 0, 0, 0]]
    )
    logits = model(src, lengths, tgt[:, :-1])
    y = tgt[:, 1:]
    flat = torch.nn.functional.log_softmax(logits, -1).gather(-1, y[..., None])[..., 0]
    expected = -(flat * (y != 0)).sum() / (y != 0).sum()
    torch.testing.assert_close(seq2seq_loss(logits, y), expected)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    first = seq2seq_loss(model(src, lengths, tgt[:, :-1]), y).item()
    for _ in range(25):
        opt.zero_grad()
        seq2seq_loss(model(src, lengths, tgt[:, :-1]), y).backward()
        opt.step()
    model.eval()
    assert seq2seq_loss(model(src, lengths, tgt[:, :-1]), y).item() < 0.1 * first
    assert model.greedy(src, lengths, max_len=8) == [[5, 6], [7], [8, 9, 10], []]


@pytest.mark.parametrize("seed", range(5))
def test_beam_of_one_is_greedy(seed):
    model = small_model(seed)
    src, lengths = batch(seed + 10)
    greedy = model.greedy(src, lengths, max_len=7)
    assert model.beam_search(src, lengths, beam_size=1, max_len=7) == greedy
    assert all(
        model.config.pad_id not in g and model.config.bos_id not in g for g in greedy
    )


def brute_force_best(model, src, lengths, max_len):
    """Every sequence of <= max_len tokens that ends in <eos> (or fills max_len),
    scored by teacher forcing; the one with the highest log-probability."""
    c = model.config
    allowed = [t for t in range(c.tgt_vocab) if t not in (c.pad_id, c.bos_id)]
    words = [t for t in allowed if t != c.eos_id]
    candidates = [
        [*body, c.eos_id]
        for n in range(max_len)
        for body in itertools.product(words, repeat=n)
    ] + [list(body) for body in itertools.product(words, repeat=max_len)]
    best = []
    for i in range(len(lengths)):
        n = int(lengths[i])
        x = src[i : i + 1, :n].expand(len(candidates), n)
        scores = model.sequence_logprob(
            x, lengths[i : i + 1].expand(len(candidates)), candidates
        )
        top = candidates[int(scores.argmax())]
        best.append(top[:-1] if top[-1] == c.eos_id else top)
    return best


@pytest.mark.parametrize("seed", range(3))
def test_a_wide_beam_finds_the_most_probable_sequence(seed):
    model = small_model(seed, tgt_vocab=7)  # 3 ordinary tokens + <unk> + <eos>
    src, lengths = batch(seed + 20, lengths=(3, 1, 2))
    max_len = 3
    wide = model.beam_search(
        src, lengths, beam_size=4**3, max_len=max_len, length_penalty=0.0
    )
    assert wide == brute_force_best(model, src, lengths, max_len)


def test_beam_search_scores_and_length_penalty():
    model = small_model(4)
    src, lengths = batch(5)
    narrow = model.greedy(src, lengths, max_len=6)
    wide = model.beam_search(src, lengths, beam_size=6, max_len=6, length_penalty=0.0)

    def full(ids):
        return ids + [model.config.eos_id] if len(ids) < 6 else ids

    greedy_lp = model.sequence_logprob(src, lengths, [full(g) for g in narrow])
    beam_lp = model.sequence_logprob(src, lengths, [full(b) for b in wide])
    assert (beam_lp >= greedy_lp - 1e-12).all()  # here the beam is never worse
    long = model.beam_search(src, lengths, beam_size=6, max_len=6, length_penalty=2.0)
    assert sum(map(len, long)) >= sum(map(len, wide))  # normalising favours length
    with pytest.raises(ValueError, match="beam_size"):
        model.beam_search(src, lengths, beam_size=0)


def test_config_errors():
    with pytest.raises(ValueError, match="tgt_vocab"):
        Seq2SeqConfig(src_vocab=5, tgt_vocab=0)
    with pytest.raises(ValueError, match="dropout"):
        Seq2SeqConfig(src_vocab=5, tgt_vocab=5, dropout=1.0)
    with pytest.raises(ValueError, match="num_layers"):
        Seq2SeqConfig(src_vocab=5, tgt_vocab=5, num_layers=0)
