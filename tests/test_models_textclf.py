"""The packed BiLSTM classifier reads each sequence exactly as if it were alone.

Reference: the same `nn.LSTM` run on one sequence at a time, unpadded, in float64. The
batch mixes a length-1 sequence with very unequal lengths and fills the padding with
ordinary token ids, so a model that reads padding, or takes the last *padded* position
(instead of the last real one) for the forward state, or max-pools over padding, fails.
"""

import io

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from dlcore.data.sequences import pad_batch
from dlcore.models.textclf import POOLINGS, BiLSTMClassifier, TextClassifierConfig

LENGTHS = [1, 9, 3, 23, 2, 1, 14]
VOCAB = 30


def make_model(pooling="max+last", num_layers=1, **kw):
    torch.manual_seed(0)
    config = TextClassifierConfig(
        VOCAB,
        num_classes=3,
        embed_dim=5,
        hidden_size=6,
        num_layers=num_layers,
        pooling=pooling,
        **kw,
    )
    return BiLSTMClassifier(config).double().eval()


def make_batch(lengths=LENGTHS, seed=1):
    gen = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(1, VOCAB, (n,), generator=gen) for n in lengths]
    tokens, lens = pad_batch(seqs, pad_id=0)
    # padding filled with real token ids: reading it would change the answer
    noise = torch.randint(1, VOCAB, tokens.shape, generator=gen)
    pad = torch.arange(tokens.shape[1])[None, :] >= lens[:, None]
    return seqs, torch.where(pad, noise, tokens), lens


def alone(model, seq):
    """Outputs (L, 2H) and final states (2H,) of the model's LSTM on seq alone."""
    out, (h, _) = model.lstm(model.embed(seq[None]))
    return out[0], torch.cat([h[-2, 0], h[-1, 0]])


def pooled_alone(model, seq):
    out, last = alone(model, seq)
    return {
        "last": last,
        "max": out.max(0).values,
        "mean": out.mean(0),
        "max+last": torch.cat([out.max(0).values, last]),
    }[model.config.pooling]


@pytest.mark.parametrize("num_layers", [1, 2])
def test_outputs_and_states_equal_each_sequence_alone(num_layers):
    model = make_model(num_layers=num_layers)
    seqs, tokens, lengths = make_batch()
    with torch.no_grad():
        out, last = model.run_lstm(tokens, lengths)
        assert out.shape == (len(seqs), max(LENGTHS), 12)
        for b, seq in enumerate(seqs):
            ref_out, ref_last = alone(model, seq)
            n = len(seq)
            torch.testing.assert_close(out[b, :n], ref_out, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(out[b, n:], torch.zeros_like(out[b, n:]))
            torch.testing.assert_close(last[b], ref_last, rtol=1e-12, atol=1e-12)
            # the forward state is the output at the last REAL step, the backward
            # state the output at step 0
            torch.testing.assert_close(last[b, :6], out[b, n - 1, :6])
            torch.testing.assert_close(last[b, 6:], out[b, 0, 6:])


@pytest.mark.parametrize("pooling", POOLINGS)
def test_features_and_logits_equal_each_sequence_alone(pooling):
    model = make_model(pooling)
    seqs, tokens, lengths = make_batch()
    with torch.no_grad():
        logits = model(tokens, lengths)
        feats = model.features(tokens, lengths)
        assert feats.shape == (len(seqs), model.config.features)
        assert logits.shape == (len(seqs), 3) and logits.dtype == torch.float64
        for b, seq in enumerate(seqs):
            ref = pooled_alone(model, seq)
            torch.testing.assert_close(feats[b], ref, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(
                logits[b], model.head(ref), rtol=1e-12, atol=1e-12
            )


def test_the_check_catches_naive_models():
    """The inputs are hard enough: reading the padded batch without packing, taking
    the last padded position, or max-pooling over zero padding gives other numbers."""
    model = make_model("max")
    seqs, tokens, lengths = make_batch()
    with torch.no_grad():
        naive_out, _ = model.lstm(model.embed(tokens))  # reads the padding
        out, last = model.run_lstm(tokens, lengths)
        short = lengths < tokens.shape[1]
        assert not torch.allclose(naive_out[short, 0], out[short, 0])
        last_padded = out[:, -1, :6]  # zeros for short rows, not the real last state
        assert not torch.allclose(last_padded[short], last[short, :6])
        zero_padded_max = out.amax(dim=1)  # pad_packed_sequence pads with 0
        assert not torch.allclose(zero_padded_max, model.features(tokens, lengths))


def test_padding_and_batch_order_do_not_matter():
    model = make_model()
    seqs, tokens, lengths = make_batch()
    with torch.no_grad():
        logits = model(tokens, lengths)
        wider = torch.cat([tokens, torch.randint(1, VOCAB, (len(seqs), 5))], dim=1)
        torch.testing.assert_close(model(wider, lengths), logits, rtol=0, atol=0)
        perm = torch.tensor([3, 0, 6, 2, 5, 1, 4])
        torch.testing.assert_close(
            model(tokens[perm], lengths[perm]), logits[perm], rtol=1e-12, atol=1e-12
        )
        one = model(tokens[:1, :1], lengths[:1])  # a batch of one length-1 sequence
        torch.testing.assert_close(one, logits[:1], rtol=1e-12, atol=1e-12)


def test_large_embeddings_saturate_without_nan():
    model = make_model()
    with torch.no_grad():
        model.embed.weight.mul_(1e6)
    seqs, tokens, lengths = make_batch()
    with torch.no_grad():
        logits = model(tokens, lengths)
        assert torch.isfinite(logits).all()
        for b, seq in enumerate(seqs):
            torch.testing.assert_close(logits[b], model.head(pooled_alone(model, seq)))


def test_gradients_flow_and_skip_padding_embedding():
    model = make_model().train()
    seqs, tokens, lengths = make_batch()
    tokens[lengths < tokens.shape[1], -1] = 0  # some real pad ids too
    loss = model(tokens, lengths).logsumexp(1).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.embed.weight.grad[0].abs().max() == 0  # padding_idx row
    assert model.embed.weight.grad[1:].abs().max() > 0


def test_matches_pack_padded_sequence_on_sorted_input():
    """Unsorted input (enforce_sorted=False) gives the same as sorting by hand."""
    model = make_model("last")
    seqs, tokens, lengths = make_batch()
    order = lengths.argsort(descending=True)
    with torch.no_grad():
        packed = pack_padded_sequence(
            model.embed(tokens[order]), lengths[order], batch_first=True
        )
        _, (h, _) = model.lstm(packed)
        by_hand = torch.cat([h[-2], h[-1]], 1)
        torch.testing.assert_close(
            model.features(tokens, lengths)[order], by_hand, rtol=1e-12, atol=1e-12
        )


def test_state_dict_round_trip_with_weights_only():
    model = make_model()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    other = make_model(dropout=0.1)
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    other.load_state_dict(torch.load(buffer, weights_only=True))
    seqs, tokens, lengths = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            other.eval()(tokens, lengths), model(tokens, lengths), rtol=0, atol=0
        )


def test_dropout_is_active_only_in_training():
    model = make_model(dropout=0.5).train()
    seqs, tokens, lengths = make_batch()
    with torch.no_grad():
        a, b = model(tokens, lengths), model(tokens, lengths)
        assert not torch.equal(a, b)
        model.eval()
        torch.testing.assert_close(model(tokens, lengths), model(tokens, lengths))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_size": 2.5}, "hidden_size"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"pooling": "first"}, "pooling"),
        ({"pad_id": 30}, "pad_id"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    args = {"vocab_size": VOCAB, **kwargs}
    with pytest.raises(ValueError, match=message):
        TextClassifierConfig(**args)


def test_bad_lengths_are_errors():
    model = make_model()
    _, tokens, lengths = make_batch()
    with pytest.raises(ValueError, match="lengths must lie"):
        model(tokens, torch.where(lengths == 1, 0, lengths))
    with pytest.raises(ValueError, match="lengths must lie"):
        model(tokens, lengths + tokens.shape[1])
    with pytest.raises(ValueError, match="lengths must be"):
        model(tokens, lengths[:-1])
    with pytest.raises(ValueError, match="tokens must be"):
        model(tokens[0], lengths[:1])
