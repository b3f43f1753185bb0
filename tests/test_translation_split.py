"""The fixed cmn-eng split (`dlcore.data.translation`): reproduced exactly from the
cached file (sizes and SHA-256 recorded in the module), split by source sentence,
and a changed split fails loudly; `PairLoader` batches for teacher forcing."""

import pytest
import torch

from dlcore.data import data_dir, text, translation
from dlcore.data.translation import (
    CMN_ENG_SHA256,
    CMN_ENG_SIZES,
    PairLoader,
    SplitChangedError,
    cmn_eng_split,
    normalise_source,
    pairs_digest,
    split_of,
    split_pairs,
)


@pytest.fixture(scope="module")
def parts():
    if not (data_dir() / text.TEXT_FILES["cmn-eng"].name).exists():
        pytest.skip(f"cmn-eng is not cached in {data_dir()}")
    return cmn_eng_split()


def test_split_reproduces_the_recorded_sizes_and_digests(parts):
    assert {k: len(v) for k, v in parts.items()} == CMN_ENG_SIZES
    assert {k: pairs_digest(v) for k, v in parts.items()} == CMN_ENG_SHA256
    assert sum(CMN_ENG_SIZES.values()) == 29_155
    assert CMN_ENG_SIZES["test"] >= 1_000 and CMN_ENG_SIZES["val"] >= 1_000


def test_no_source_sentence_is_in_two_parts(parts):
    keys = {k: {normalise_source(en) for en, _ in v} for k, v in parts.items()}
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["val"]
    assert not keys["val"] & keys["test"]
    # and duplicates exist: some English sentences have several Chinese translations
    assert len(keys["test"]) < len(parts["test"])


def test_a_changed_split_fails_loudly(parts, monkeypatch):
    monkeypatch.setitem(translation.CMN_ENG_SHA256, "test", "0" * 64)
    with pytest.raises(SplitChangedError, match="split changed"):
        cmn_eng_split()
    assert cmn_eng_split(verify=False)["test"] == parts["test"]


def test_split_depends_only_on_the_normalised_source():
    assert split_of("Hi.") == split_of("hi .") == split_of("  HI  . ")
    assert normalise_source("Don't stop!") == "don't stop !"
    english = [f"Sentence number {i}." for i in range(3000)]
    chinese = [f"第{i}句。" for i in range(3000)]
    parts = split_pairs(english, chinese)
    shuffled = split_pairs(english[::-1], chinese[::-1])
    for name in parts:
        assert sorted(parts[name]) == sorted(shuffled[name])  # order does not matter
    share = len(parts["test"]) / 3000
    assert 0.03 < share < 0.05  # 40 of 1000 buckets
    with pytest.raises(ValueError, match="English but"):
        split_pairs(["a"], [])


def test_pairs_digest_sees_every_character():
    pairs = [("Hi.", "你好。"), ("Run.", "跑。")]
    assert pairs_digest(pairs) != pairs_digest([("Hi.", "你好。"), ("Run.", "跑!")])
    assert pairs_digest(pairs) != pairs_digest(pairs[::-1])
    assert pairs_digest(pairs) != pairs_digest([("Hi.\t你好。", ""), ("Run.", "跑。")])


def test_pair_loader_shifts_targets_for_teacher_forcing():
    src = [torch.tensor([5, 6, 7]), torch.tensor([8]), torch.tensor([9, 10])]
    tgt = [torch.tensor([2, 11, 3]), torch.tensor([2, 12, 13, 3]), torch.tensor([2, 3])]
    loader = PairLoader(src, tgt, 2, pad_id=0, device="cpu")
    assert len(loader) == 2
    (s, lengths, tgt_in), tgt_out = next(iter(loader))
    assert s.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    assert tgt_in.tolist() == [[2, 11, 3], [2, 12, 13]]
    assert tgt_out.tolist() == [[11, 3, 0], [12, 13, 3]]
    seen = [
        tuple(x[0][i, : x[1][i]].tolist())
        for x, _ in PairLoader(
            src, tgt, 2, pad_id=0, shuffle=True, bucket=True, seed=1, device="cpu"
        )
        for i in range(len(x[1]))
    ]
    assert sorted(seen) == sorted(tuple(s.tolist()) for s in src)
    with pytest.raises(ValueError, match="<bos> and <eos>"):
        PairLoader(src, [torch.tensor([2])] * 3, 2, pad_id=0)
    with pytest.raises(ValueError, match="sources but"):
        PairLoader(src, tgt[:2], 2, pad_id=0)
    with pytest.raises(ValueError, match="batch_size"):
        PairLoader(src, tgt, 0, pad_id=0)
