"""dlcore.models.vit against torchvision's VisionTransformer with the same weights."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import VisionTransformer

from dlcore.models.vit import ViT, ViTConfig, attention_maps


def _pair(cfg: ViTConfig, seed: int = 0) -> tuple[ViT, VisionTransformer]:
    torch.manual_seed(seed)
    ours = ViT(cfg).double()
    for p in ours.parameters():  # the zero-initialised head and token would hide bugs
        p.data.normal_(std=0.2)
    theirs = VisionTransformer(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        num_layers=cfg.depth,
        num_heads=cfg.num_heads,
        hidden_dim=cfg.hidden_dim,
        mlp_dim=cfg.mlp_dim,
        num_classes=cfg.num_classes,
    ).double()
    theirs.load_state_dict(ours.state_dict())  # strict: every name must match
    return ours.eval(), theirs.eval()


@pytest.mark.parametrize(
    "cfg",
    [
        ViTConfig(image_size=16, patch_size=4, hidden_dim=24, depth=2, num_heads=3),
        ViTConfig(
            image_size=8,
            patch_size=8,
            hidden_dim=8,
            depth=1,
            num_heads=1,
            mlp_dim=4,
            num_classes=1,
        ),  # one patch, one class
        ViTConfig(
            image_size=12,
            patch_size=2,
            hidden_dim=16,
            depth=3,
            num_heads=4,
            num_classes=5,
        ),
    ],
)
def test_equals_torchvision_vit_float64(cfg):
    ours, theirs = _pair(cfg)
    x = 5.0 * torch.randn(
        3, cfg.channels, cfg.image_size, cfg.image_size, dtype=torch.float64
    )
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-10, atol=1e-10)


def test_gradients_equal_torchvision():
    cfg = ViTConfig(image_size=8, patch_size=2, hidden_dim=16, depth=2, num_heads=2)
    ours, theirs = _pair(cfg, seed=1)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 3, 9, 3])
    F.cross_entropy(ours(x), y).backward()
    F.cross_entropy(theirs(x), y).backward()
    named = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, named[name].grad, rtol=1e-9, atol=1e-10)


def test_mean_pooling_is_the_mean_of_patch_tokens():
    cfg = ViTConfig(
        image_size=8, patch_size=4, hidden_dim=8, depth=1, num_heads=2, pool="mean"
    )
    torch.manual_seed(0)
    model = ViT(cfg).double().eval()
    assert not hasattr(model, "class_token")
    assert model.encoder.pos_embedding.shape == (1, 4, 8)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    h = model.encoder(model.tokens(x))  # (B, 4, C)
    expected = model.heads(h.mean(dim=1))
    torch.testing.assert_close(model(x), expected)
    # one patch changed changes the mean: every token contributes
    x2 = x.clone()
    x2[:, :, :4, :4] += 1.0
    assert (model.features(x2) - model.features(x)).abs().max() > 1e-3


def test_attention_maps_are_the_softmax_of_the_block():
    cfg = ViTConfig(image_size=8, patch_size=4, hidden_dim=12, depth=2, num_heads=3)
    ours, theirs = _pair(cfg, seed=2)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    maps = attention_maps(ours, x)
    assert len(maps) == 2 and maps[0].shape == (2, 3, 5, 5)
    # reference: nn.MultiheadAttention's own weights on torchvision's first block
    h = theirs._process_input(x)
    h = torch.cat([theirs.class_token.expand(2, -1, -1), h], dim=1)
    h = h + theirs.encoder.pos_embedding
    block = theirs.encoder.layers[0]
    z = block.ln_1(h)
    _, weights = block.self_attention(
        z, z, z, need_weights=True, average_attn_weights=False
    )
    torch.testing.assert_close(maps[0], weights, rtol=1e-10, atol=1e-12)
    second = block(h)
    z = theirs.encoder.layers[1].ln_1(second)
    _, weights = theirs.encoder.layers[1].self_attention(
        z, z, z, need_weights=True, average_attn_weights=False
    )
    torch.testing.assert_close(maps[1], weights, rtol=1e-10, atol=1e-12)
    assert ours.training is False


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="patch_size=5"):
        ViTConfig(image_size=32, patch_size=5)
    with pytest.raises(ValueError, match="num_heads=3"):
        ViTConfig(hidden_dim=128, num_heads=3)
    with pytest.raises(ValueError, match="pool"):
        ViTConfig(pool="max")
    with pytest.raises(ValueError, match="depth"):
        ViTConfig(depth=0)
    model = ViT(ViTConfig(image_size=8, patch_size=4, hidden_dim=8, num_heads=2))
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        model(torch.randn(2, 3, 16, 16))
