"""Text corpora through `dlcore.load`: the real files (from the offline mirror), and for
every name a wrong-checksum, a corrupt-file and an offline-and-uncached test."""

import dataclasses
import hashlib
import shutil

import pytest
import torch

import dlcore
from dlcore import data
from dlcore.data import text

# (load arguments, the file it reads) for every text name dlcore.load knows
ALL_FILES = [((name,), {}, file) for name, file in text.TEXT_FILES.items()] + [
    (("sst2",), {"split": split}, file) for split, file in text.SST2_FILES.items()
]
IDS = [f"{args[0]}-{kwargs.get('split', 'all')}" for args, kwargs, _ in ALL_FILES]


@pytest.fixture
def mirror():
    root = data.data_dir()
    if not (root / text.TEXT_FILES["tinyshakespeare"].name).exists():
        pytest.skip(f"the text corpora are not cached in {root}")
    return root


def test_every_text_name_is_covered_here():
    assert {args[0] for args, _, _ in ALL_FILES} == set(text.TEXT_DATASETS)


def test_corpora_have_their_published_sizes(mirror):
    shakespeare = dlcore.load("tinyshakespeare")
    assert isinstance(shakespeare, dlcore.Corpus)
    assert len(shakespeare) == 1_115_394 and len(set(shakespeare.text)) == 65
    assert shakespeare.text.startswith("First Citizen:")
    assert dlcore.load("time-machine").text.startswith(
        "The Time Machine, by H. G. Wells"
    )
    poems = dlcore.load("tang-poems")
    assert len(poems) == 36_922 and poems.labels is None
    assert poems.texts[0] == "秦川雄帝宅，函谷壯皇居。綺殿千尋起，離宮百雉餘。" + (
        "連甍遙接漢，飛觀迥凌虛。雲日隱層闕，風煙出綺疎。"
    )
    pairs = dlcore.load("cmn-eng")
    assert len(pairs) == len(pairs.targets) == 29_155
    assert (pairs.texts[0], pairs.targets[0]) == ("Hi.", "嗨。")
    assert not any("\t" in s for s in pairs.texts + pairs.targets)


@pytest.mark.parametrize(
    "split, n, positives",
    [("train", 67_349, 37_569), ("dev", 872, 444), ("test", 1_821, 909)],
)
def test_sst2_splits_have_their_published_label_counts(mirror, split, n, positives):
    sst = dlcore.load("sst2", split=split)
    assert len(sst) == len(sst.labels) == n
    assert sst.labels.dtype == torch.int64 and int(sst.labels.sum()) == positives
    assert sst.classes == ["negative", "positive"]
    assert not any(t.endswith("\r") or "\t" in t for t in sst.texts)  # CRLF in train


@pytest.mark.parametrize("args, kwargs, file", ALL_FILES, ids=IDS)
def test_a_file_with_the_wrong_bytes_is_refused(
    tmp_path, monkeypatch, args, kwargs, file
):
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    path = tmp_path / file.name
    path.parent.mkdir(parents=True)
    path.write_text("label\tsentence\n1\tnot the published file\n", encoding="utf-8")
    with pytest.raises(data.ChecksumError, match=str(path)):
        dlcore.load(*args, **kwargs)


@pytest.mark.parametrize("args, kwargs, file", ALL_FILES, ids=IDS)
def test_a_truncated_copy_is_refused(tmp_path, monkeypatch, mirror, args, kwargs, file):
    """The real file with its last byte cut (a half-finished copy) fails the md5."""
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    path = tmp_path / file.name
    path.parent.mkdir(parents=True)
    shutil.copyfile(mirror / file.name, path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 1)
    with pytest.raises(data.ChecksumError, match="delete it and load again"):
        dlcore.load(*args, **kwargs)


@pytest.mark.parametrize("args, kwargs, file", ALL_FILES, ids=IDS)
def test_offline_and_uncached_is_one_clear_error(
    tmp_path, monkeypatch, args, kwargs, file
):
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    unreachable = dataclasses.replace(file, urls=("http://127.0.0.1:9/" + file.name,))
    for table in (text.TEXT_FILES, text.SST2_FILES):
        for key, value in list(table.items()):
            if value is file:
                monkeypatch.setitem(table, key, unreachable)
    with pytest.raises(data.DataUnavailableError) as err:
        dlcore.load(*args, **kwargs)
    message = str(err.value)
    assert str(tmp_path / file.name) in message and "../shared/data" in message
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing half-written


def test_a_derived_file_without_a_url_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path))
    with pytest.raises(data.DataUnavailableError, match="no download URL"):
        dlcore.load("tang-poems")


def test_a_served_copy_is_verified_and_stored_whole(tmp_path, monkeypatch):
    """A mirror (here a file:// URL) that serves the right bytes fills the cache."""
    source = tmp_path / "served.txt"
    source.write_text("To be, or not to be\n", encoding="utf-8")
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    monkeypatch.setenv("DLCORE_DATA", str(cache))
    file = data.RemoteFile("text/timemachine.txt", md5, (source.as_uri(),))
    monkeypatch.setitem(text.TEXT_FILES, "timemachine", file)
    assert dlcore.load("timemachine").text == "To be, or not to be\n"
    assert (cache / "text" / "timemachine.txt").read_bytes() == source.read_bytes()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="split='train', 'dev' or 'test'"):
        dlcore.load("sst2")
    with pytest.raises(ValueError, match="comes whole"):
        dlcore.load("tinyshakespeare", split="train")
    with pytest.raises(ValueError, match="not train="):
        dlcore.load("cmn-eng", train=True)
    with pytest.raises(ValueError, match="tang-poems"):
        dlcore.load("tang")
    with pytest.raises(ValueError, match="split='train' or 'test'"):
        dlcore.load("mnist", split="dev")
    with pytest.raises(ValueError, match="contradicts"):
        dlcore.load("mnist", train=True, split="test")
