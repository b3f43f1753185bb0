"""dlcore.models.gpt against references it does not share code with: the 2017 variant
against torch's own pre-norm TransformerEncoderLayer, the modern variant against a
forward pass written here (complex-number RoPE, scratch RMSNorm / SwiGLU / GQA), and
cached generation against the uncached model."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcore.models.gpt import GPT, GPTConfig, KVCache, flops_per_token, generate
from dlcore.scratch.gpt import grouped_query_attention, rms_norm, swiglu

V = 11


def _perturbed(cfg: GPTConfig, seed: int = 0) -> GPT:
    """A GPT whose gains are not all ones (so a dropped norm weight shows)."""
    torch.manual_seed(seed)
    model = GPT(cfg).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
            else:
                p.mul_(10.0)  # 0.02-scale weights would make every variant look alike
    return model.eval()


@pytest.mark.parametrize(
    "bad",
    [
        dict(norm="batch"),
        dict(position="sinusoidal"),
        dict(mlp="relu"),
        dict(n_kv_head=3),
        dict(n_embd=12, n_head=4),  # head size 3 is odd: RoPE pairs need even
        dict(vocab_size=0),
        dict(block_size=True),
        dict(dropout=1.0),
    ],
)
def test_config_rejects_bad_values(bad):
    kw = dict(vocab_size=V, n_embd=16, n_head=4) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        GPTConfig(**kw)


def test_modern_switches_and_sizes():
    cfg = GPTConfig(vocab_size=65).modern()
    assert (cfg.norm, cfg.position, cfg.mlp, cfg.kv_heads, cfg.tie_weights) == (
        "rms",
        "rope",
        "swiglu",
        2,
        True,
    )
    assert cfg.mlp_hidden == 344 and abs(3 * cfg.mlp_hidden - 8 * 128) <= 24
    model = GPT(cfg)
    assert model.head.weight is model.embed.weight
    kv = model.blocks[0].attn.key_value.weight
    assert kv.shape == (2 * 2 * 32, 128)  # two kv heads of size 32, keys and values
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total  # tied table is the output layer: kept
    classic = GPT(GPTConfig(vocab_size=65))
    n = classic.num_params(non_embedding=False)
    assert classic.num_params() == n - 65 * 128 - 64 * 128


def test_classic_block_equals_torch_encoder_layer():
    cfg = GPTConfig(vocab_size=V, block_size=9, n_layer=2, n_head=2, n_embd=8)
    model = _perturbed(cfg)
    layers = []
    for block in model.blocks:
        layer = nn.TransformerEncoderLayer(
            8,
            2,
            32,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
            bias=False,
        ).double()
        attn = block.attn
        with torch.no_grad():
            layer.self_attn.in_proj_weight.copy_(
                torch.cat([attn.query.weight, attn.key_value.weight])
            )
            layer.self_attn.out_proj.weight.copy_(attn.proj.weight)
            layer.linear1.weight.copy_(block.mlp.fc.weight)
            layer.linear2.weight.copy_(block.mlp.proj.weight)
            layer.norm1.weight.copy_(block.norm1.weight)
            layer.norm2.weight.copy_(block.norm2.weight)
        layers.append(layer.eval())
    idx = torch.randint(V, (3, 9), generator=torch.Generator().manual_seed(1))
    x = model.embed.weight[idx] + model.positions.weight[:9]
    mask = torch.triu(torch.full((9, 9), float("-inf"), dtype=torch.float64), 1)
    for layer in layers:
        x = layer(x, src_mask=mask)
    ln = F.layer_norm(x, (8,), model.norm.weight, None, 1e-5)
    torch.testing.assert_close(model(idx), ln @ model.head.weight.T, rtol=0, atol=1e-10)


def _rope_complex(x: torch.Tensor, theta: float = 10_000.0) -> torch.Tensor:
    """RoPE as complex multiplication, pairing dim i with i + D/2: x (B, H, T, D)."""
    d, t = x.shape[-1], x.shape[-2]
    freqs = theta ** (-torch.arange(0, d // 2, dtype=torch.float64) * 2 / d)
    angles = torch.arange(t, dtype=torch.float64)[:, None] * freqs  # (T, D/2)
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :]) * torch.polar(
        torch.ones_like(angles), angles
    )
    return torch.cat([z.real, z.imag], dim=-1)


def _modern_reference(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    cfg = model.config
    b, t = idx.shape
    x = model.embed.weight[idx]
    for block in model.blocks:
        a = block.attn
        h = rms_norm(x, block.norm1.weight)
        q = (h @ a.query.weight.T).view(b, t, cfg.n_head, -1).transpose(1, 2)
        kv = (h @ a.key_value.weight.T).view(b, t, 2, cfg.kv_heads, -1)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        y = grouped_query_attention(_rope_complex(q), _rope_complex(k), v, causal=True)
        x = x + y.transpose(1, 2).reshape(b, t, -1) @ a.proj.weight.T
        m = block.mlp
        x = x + swiglu(
            rms_norm(x, block.norm2.weight), m.fc.weight, m.up.weight, m.proj.weight
        )
    return rms_norm(x, model.norm.weight) @ model.embed.weight.T


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_modern_model_equals_written_out_forward(kv_heads):
    cfg = GPTConfig(vocab_size=V, block_size=10, n_layer=2, n_head=4, n_embd=16)
    model = _perturbed(cfg.modern(n_kv_head=kv_heads))
    idx = torch.randint(V, (2, 10), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        model(idx), _modern_reference(model, idx), rtol=0, atol=1e-9
    )


def test_float32_rope_tables_match_the_float64_reference_at_every_offset():
    """Training and generation use the float32 cos/sin tables, sliced from `start`:
    cached float32 logits, one position at a time, against the float64 reference."""
    cfg = GPTConfig(vocab_size=V, block_size=12, n_layer=2, n_head=4, n_embd=16)
    model64 = _perturbed(cfg.modern(n_kv_head=2))
    idx = torch.randint(V, (2, 12), generator=torch.Generator().manual_seed(5))
    reference = _modern_reference(model64, idx)
    model32 = copy.deepcopy(model64).float()
    caches = model32.new_caches(2)
    steps = [model32(idx[:, :3], caches)]
    steps += [model32(idx[:, i : i + 1], caches) for i in range(3, 12)]
    scale = reference.abs().max().item()
    for got in (model32(idx), torch.cat(steps, 1)):
        err = (got.double() - reference).abs().max().item()
        assert err < 1e-5 * scale, (err, scale)
    shifted = model32.rope_sin.roll(1, 0)  # tables off by one position must show
    model32.rope_sin.copy_(shifted)
    assert (model32(idx).double() - reference).abs().max().item() > 1e-3 * scale


@pytest.mark.parametrize("modern", [False, True])
def test_cache_gives_the_uncached_logits(modern):
    cfg = GPTConfig(vocab_size=V, block_size=12, n_layer=2, n_head=4, n_embd=16)
    model = _perturbed(cfg.modern() if modern else cfg)
    idx = torch.randint(V, (2, 12), generator=torch.Generator().manual_seed(3))
    full = model(idx)
    caches = model.new_caches(2)
    steps = [model(idx[:, :5], caches)]  # prompt of 5, then one token at a time
    steps += [model(idx[:, i : i + 1], caches) for i in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="block_size"):
        model(idx[:, :1], caches)


def test_cache_rejects_a_second_multi_token_feed():
    cfg = GPTConfig(vocab_size=V, block_size=12, n_layer=1, n_head=2, n_embd=8)
    model = GPT(cfg)
    caches = model.new_caches(1)
    model(torch.zeros(1, 3, dtype=torch.long), caches)
    with pytest.raises(ValueError, match="one token"):
        model(torch.zeros(1, 2, dtype=torch.long), caches)
    cache = KVCache(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    with pytest.raises(ValueError, match="holds 2"):
        cache.append(torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4))


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(top_k=5, top_p=0.9)])
def test_generate_cached_equals_uncached(sampling):
    cfg = GPTConfig(vocab_size=V, block_size=20, n_layer=2, n_head=4, n_embd=16)
    model = _perturbed(cfg.modern()).float()
    prompt = torch.randint(V, (3, 4), generator=torch.Generator().manual_seed(4))
    runs = [
        generate(
            model,
            prompt,
            16,
            use_cache=c,
            generator=torch.Generator().manual_seed(5),
            **sampling,
        )
        for c in (True, False)
    ]
    assert runs[0].shape == (3, 20) and torch.equal(runs[0][:, :4], prompt)
    assert torch.equal(runs[0], runs[1])
    if "temperature" in sampling:  # greedy: every token is the argmax of the prefix
        logits = model(runs[0][:, :-1])
        assert torch.equal(logits[:, 3:].argmax(-1), runs[0][:, 4:])
    with pytest.raises(ValueError, match="exceed block_size"):
        generate(model, prompt, 17)
    assert generate(model, prompt, 30, use_cache=False).shape == (3, 34)  # slides


def test_flops_per_token():
    cfg = GPTConfig(vocab_size=65)
    n = GPT(cfg).num_params()
    assert flops_per_token(cfg, n) == 6 * n + 12 * 4 * 128 * 64
    assert flops_per_token(cfg, n, context=1) == 6 * n + 12 * 4 * 128
    assert n == 4 * (12 * 128 * 128 + 2 * 128) + 128 + 65 * 128  # 12 C^2 a layer, head
