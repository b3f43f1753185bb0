"""Part III's shared tools: Vocab and tokenisers, LM windows and padded batches, the RNN
language model (against a plain nn.LSTM with the same weights), perplexity, and fit on
tuple inputs."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import dlcore
from dlcore.data.sequences import (
    PaddedLoader,
    batch_order,
    check_batch_size,
    lm_windows,
    pad_batch,
)
from dlcore.metrics import perplexity
from dlcore.models.rnn import RNNLM, RNNLMConfig, lm_loss
from dlcore.tokenize import SPECIALS, Vocab, char_tokens, to_simplified, word_tokens

# ---------------------------------------------------------------- tokens and Vocab


def test_vocab_puts_specials_first_then_frequency_then_first_appearance():
    vocab = Vocab(list("abracadabra!"))
    assert vocab.itos[:4] == list(SPECIALS)
    # a:5, b:2, r:2, c:1, d:1, !:1 — ties keep first appearance (b before r, c, d, !)
    assert vocab.itos[4:] == ["a", "b", "r", "c", "d", "!"]
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert vocab.decode(vocab.encode("cab")) == ["c", "a", "b"]


def test_vocab_maps_unknown_and_rare_tokens_to_unk():
    vocab = Vocab("a a a b b c".split(), min_freq=2)
    assert "c" not in vocab and vocab["c"] == vocab.unk_id == 1
    assert vocab.encode(["a", "zzz", "b"]) == [vocab["a"], 1, vocab["b"]]
    assert len(Vocab("a a b".split(), max_size=1)) == len(SPECIALS) + 1
    assert len(Vocab("a a b".split(), max_size=0)) == len(SPECIALS)  # specials only


def test_a_special_in_the_text_is_not_counted_twice():
    vocab = Vocab(["<eos>", "x", "<eos>"])
    assert vocab.itos.count("<eos>") == 1 and vocab["<eos>"] == 3


def test_vocab_without_unk_names_the_missing_token():
    vocab = Vocab(["x"], specials=("<pad>",))
    with pytest.raises(KeyError, match="'y'"):
        vocab["y"]
    with pytest.raises(AttributeError, match="<bos>"):
        _ = vocab.bos_id


def test_vocab_argument_errors():
    with pytest.raises(TypeError, match="not one string"):
        Vocab("abc")
    with pytest.raises(ValueError, match="min_freq"):
        Vocab(["a"], min_freq=0)
    with pytest.raises(ValueError, match="distinct"):
        Vocab(["a"], specials=("<pad>", "<pad>"))


def test_tokenisers():
    assert char_tokens("ab 你") == ["a", "b", " ", "你"]
    assert word_tokens("Don't STOP, 2 go!") == ["don't", "stop", ",", "2", "go", "!"]
    assert word_tokens("Tom", lower=False) == ["Tom"]
    assert word_tokens("我爱你。") == ["我", "爱", "你", "。"]


def test_to_simplified_converts_traditional_characters():
    assert to_simplified("壯皇居，離宮") == "壮皇居，离宫"
    assert to_simplified(["風煙", "雲日"]) == ["风烟", "云日"]


# ---------------------------------------------------------------- batches of sequences


def test_lm_windows_shift_targets_by_one_and_drop_the_tail():
    x, y = lm_windows(torch.arange(11), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    x, y = lm_windows(torch.arange(2), 1)  # the smallest stream that fills a window
    assert x.tolist() == [[0]] and y.tolist() == [[1]]
    with pytest.raises(ValueError, match="cannot fill one window"):
        lm_windows(torch.arange(3), 3)
    with pytest.raises(ValueError, match="1-D"):
        lm_windows(torch.zeros(2, 5, dtype=torch.long), 2)


def test_pad_batch_pads_right_and_keeps_lengths_on_cpu():
    tokens, lengths = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=0)
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert lengths.tolist() == [3, 1] and lengths.device.type == "cpu"
    with pytest.raises(ValueError, match="length 0"):
        pad_batch([torch.tensor([], dtype=torch.long)], pad_id=0)


@pytest.mark.parametrize("bucket", [False, True])
def test_padded_loader_yields_every_sequence_once_with_its_label(bucket):
    g = torch.Generator().manual_seed(0)
    seqs = [
        torch.full((int(n),), i)
        for i, n in enumerate(torch.randint(1, 30, (203,), generator=g))
    ]
    labels = torch.arange(203)
    loader = PaddedLoader(
        seqs, labels, 16, pad_id=-1, shuffle=True, bucket=bucket, device="cpu", seed=1
    )
    seen = []
    for (tokens, lengths), yb in loader:
        for row, label in enumerate(yb.tolist()):
            assert tokens[row, : lengths[row]].tolist() == seqs[label].tolist()
            assert (tokens[row, lengths[row] :] == -1).all()
        seen += yb.tolist()
    assert sorted(seen) == list(range(203)) and len(loader) == 13


def test_bucketing_reduces_padding():
    g = torch.Generator().manual_seed(0)
    seqs = [
        torch.ones(int(n), dtype=torch.long)
        for n in torch.randint(1, 100, (2000,), generator=g)
    ]
    labels = torch.zeros(2000)

    def padded_cells(bucket):
        loader = PaddedLoader(
            seqs,
            labels,
            32,
            pad_id=0,
            shuffle=True,
            bucket=bucket,
            device="cpu",
            seed=0,
        )
        return sum(t.numel() for (t, _), _ in loader)

    assert padded_cells(True) < 0.7 * padded_cells(False)


@pytest.mark.parametrize("chunk_batches", [None, 2])
def test_batch_order_buckets_by_length_within_chunks(chunk_batches):
    """Every index once; a batch never mixes sequences from two chunks; inside a chunk
    lengths ascend (checked against a plain sort, not the code under test)."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (101,), generator=g).tolist()
    batches = batch_order(
        lengths, 5, shuffle=False, bucket=True, chunk_batches=chunk_batches
    )
    flat = torch.cat(batches).tolist()
    assert sorted(flat) == list(range(101)) and [len(b) for b in batches][-1] == 1
    chunk = 101 if chunk_batches is None else 10
    for start in range(0, 101, chunk):
        part = flat[start : start + chunk]
        assert sorted(part) == list(range(start, min(start + chunk, 101)))
        assert [lengths[i] for i in part] == sorted(lengths[start : start + chunk])
    # size-1 batches, one sequence, shuffling with a seed is reproducible
    assert [b.tolist() for b in batch_order([3], 1, shuffle=True, bucket=True)] == [[0]]
    runs = [
        [
            b.tolist()
            for b in batch_order(
                lengths,
                7,
                shuffle=True,
                bucket=True,
                generator=torch.Generator().manual_seed(4),
            )
        ]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_loaders_reject_a_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        check_batch_size(bad)
    with pytest.raises(ValueError, match="batch_size"):
        PaddedLoader([torch.ones(2)], torch.zeros(1), bad, pad_id=0)


# ------------------------------------------------------------ the RNN language model


def test_rnnlm_equals_a_plain_lstm_with_the_same_weights():
    torch.manual_seed(0)
    model = RNNLM(
        RNNLMConfig(vocab_size=11, embed_dim=5, hidden_size=7, num_layers=2)
    ).double()
    embed = nn.Embedding(11, 5).double()
    lstm = nn.LSTM(5, 7, num_layers=2, batch_first=True).double()
    head = nn.Linear(7, 11).double()
    embed.load_state_dict(model.embed.state_dict())
    lstm.load_state_dict(model.rnn.state_dict())
    head.load_state_dict(model.head.state_dict())
    x = torch.randint(0, 11, (3, 1))  # a length-1 sequence
    torch.testing.assert_close(model(x), head(lstm(embed(x))[0]), rtol=0, atol=1e-12)
    # state carried across two windows = one pass over the concatenation
    x = torch.randint(0, 11, (3, 9))
    first, state = model.step(x[:, :4])
    second, _ = model.step(x[:, 4:], state)
    torch.testing.assert_close(
        torch.cat([first, second], 1), model(x), rtol=0, atol=1e-12
    )


def test_rnnlm_ties_weights_and_checks_its_config():
    model = RNNLM(
        RNNLMConfig(
            vocab_size=9, cell="gru", embed_dim=6, hidden_size=6, tie_weights=True
        )
    )
    assert model.head.weight is model.embed.weight
    with pytest.raises(ValueError, match="cell must be one of"):
        RNNLMConfig(vocab_size=9, cell="transformer")
    with pytest.raises(ValueError, match="tie_weights"):
        RNNLMConfig(vocab_size=9, embed_dim=4, hidden_size=5, tie_weights=True)
    with pytest.raises(ValueError, match="vocab_size"):
        RNNLMConfig(vocab_size=0)


def test_lm_loss_is_mean_nats_per_token_and_uniform_gives_log_v():
    logits = torch.zeros(2, 5, 13)
    y = torch.randint(0, 13, (2, 5))
    assert lm_loss(logits, y).item() == pytest.approx(math.log(13))
    assert perplexity(lm_loss(logits, y).item()) == pytest.approx(13)


def test_perplexity_edges():
    assert perplexity(0.0) == 1.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="nats_per_token"):
            perplexity(bad)


def test_fit_trains_a_char_lm_and_accepts_tuple_inputs():
    """An RNNLM memorises a repeated string; a packed classifier trains on
    PaddedLoader's ((tokens, lengths), y) batches through fit and evaluate."""
    torch.manual_seed(0)
    ids = torch.tensor([0, 1, 2, 3, 4] * 80)
    x, y = lm_windows(ids, 10)
    model = RNNLM(RNNLMConfig(vocab_size=5, embed_dim=8, hidden_size=16))
    loader = dlcore.TensorLoader(x, y, 8, shuffle=True, device="cpu")
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    dlcore.fit(
        model,
        loader,
        epochs=20,
        optimizer=opt,
        loss_fn=lm_loss,
        metrics={},
        progress=False,
    )
    assert dlcore.evaluate(model, loader, loss_fn=lm_loss, metrics={})["loss"] < 0.1

    class LastState(nn.Module):  # label = whether the sequence ends in token 1
        def __init__(self):
            super().__init__()
            self.embed, self.rnn = nn.Embedding(3, 4), nn.GRU(4, 8, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, tokens, lengths):
            packed = pack_padded_sequence(
                self.embed(tokens), lengths, batch_first=True, enforce_sorted=False
            )
            return self.head(self.rnn(packed)[1][-1])

    g = torch.Generator().manual_seed(0)
    seqs = [
        torch.randint(1, 3, (int(n),), generator=g)
        for n in torch.randint(1, 12, (256,), generator=g)
    ]
    labels = torch.tensor([int(s[-1] == 1) for s in seqs])
    loader = PaddedLoader(
        seqs, labels, 32, pad_id=0, shuffle=True, device="cpu", seed=0
    )
    model = LastState()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    dlcore.fit(model, loader, epochs=15, optimizer=opt, progress=False)
    assert dlcore.evaluate(model, loader)["accuracy"] > 0.98
