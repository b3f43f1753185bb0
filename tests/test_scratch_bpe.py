"""dlcore.scratch.bpe against Hugging Face `tokenizers` (same pre-tokenisation, same
merges in the same order, same encodings), plus hand-checked small cases."""

import json

import numpy as np
import pytest

from dlcore.scratch.bpe import PATTERN, merge_word, pretokenize, train_bpe

tokenizers = pytest.importorskip("tokenizers")
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]

CORPUS = (
    "low lower lowest newer newest wider widest\n" * 3
    + "the cat sat on the mat; the rat sat on the cat.\n\n"
    + "Don't stop -- it's   spaced\tout!  \n"
)


def library_bpe(text, vocab_size):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PATTERN), behavior="isolated")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False
    )
    tok.train_from_iterator([text], trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    return tok, merges


def random_text(seed, n_words=400):
    """Words over a 4-letter alphabet: many equal pair counts, so ties decide."""
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list("abcd"), size=rng.integers(1, 7))) for _ in
             range(n_words)]  # fmt: skip
    return " ".join(words) + "\n"


def test_pretokenize_is_lossless_and_matches_library():
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(Regex(PATTERN), behavior="isolated")
    for text in [CORPUS, random_text(0), " a", "a  b\n\nc", "x"]:
        words = pretokenize(text)
        assert "".join(words) == text
        assert words == [w for w, _ in split.pre_tokenize_str(text)]


def test_merge_word_left_to_right():
    assert merge_word(list("aaa"), "a", "a") == ["aa", "a"]
    assert merge_word(list("aaaa"), "a", "a") == ["aa", "aa"]
    assert merge_word(["a"], "a", "a") == ["a"]  # length 1: nothing to merge
    assert merge_word(list("abab"), "b", "a") == ["a", "ba", "b"]


def test_hand_example():
    # words: "aab" x 2, " ab" x 1 -> pairs (a,a):2, (a,b):3, ( ,a):1 -> merge a+b
    bpe = train_bpe("aab aab ab", vocab_size=5)
    assert bpe.merges[0] == ("a", "b") and bpe.counts[0] == 3
    # then (a,ab): 2 beats ( ,ab): 1
    assert bpe.merges[1] == ("a", "ab")
    assert bpe.vocab == [" ", "a", "b", "ab", "aab"]


@pytest.mark.parametrize("vocab_size", [30, 60, 120])
def test_same_merges_as_tokenizers(vocab_size):
    for text in [CORPUS, random_text(1), random_text(2)]:
        ours = train_bpe(text, vocab_size, special_tokens=SPECIALS)
        tok, merges = library_bpe(text, vocab_size)
        assert ours.merges == merges
        assert len(ours.vocab) == tok.get_vocab_size()
        assert set(ours.vocab) == set(tok.get_vocab())
        for probe in [text, text[::-1], "lowest newest cat", "dcba abcd"]:
            # only characters seen in training: the library silently drops the
            # others (and merges across the gap); ours keeps them for <unk>
            probe = "".join(c for c in probe if c in ours.vocab)
            assert ours.encode(probe) == tok.encode(probe).tokens


def test_encode_decode_round_trip_and_stops():
    bpe = train_bpe(CORPUS, 10_000)  # more than there are pairs: stops when none left
    assert all(len(bpe.encode_word(w)) == 1 for w in pretokenize(CORPUS))
    assert bpe.decode(bpe.encode(CORPUS)) == CORPUS
    assert bpe.decode(bpe.encode("unseen words!")) == "unseen words!"
    few = train_bpe(CORPUS, 10_000, min_frequency=4)
    assert min(few.counts) >= 4 and len(few.merges) < len(bpe.merges)
    assert train_bpe("ab", 2).merges == []  # the alphabet already fills vocab_size
