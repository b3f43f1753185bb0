"""dlcore.timed: the budgeted schedule and loop."""

import math

import pytest
import torch
from torch import nn

from dlcore.data import TensorData
from dlcore.timed import train_classifier, warmup_cosine


def _data(n: int = 64) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    y = (x.float().mean(dim=(1, 2, 3)) > 127).long()
    return TensorData(x, y, ["low", "high"], (0.5,), (0.25,), "toy")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))


def test_warmup_cosine_shape():
    assert warmup_cosine(0.0, 0.1) == 0.0
    assert warmup_cosine(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(0.1, 0.1) == 1.0
    assert warmup_cosine(0.55, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(1.0, 0.1) == pytest.approx(0.0, abs=1e-15)
    assert warmup_cosine(1.7, 0.1) == pytest.approx(0.0, abs=1e-15)  # clamps


def test_epoch_budget_uses_the_schedule_on_every_step():
    seen = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen.append([g["lr"] for g in self.param_groups])
            return super().step(closure)

    data = _data()
    run = train_classifier(
        _model(),
        data,
        data,
        epochs=3,
        batch_size=16,
        warmup=0.25,
        evals=3,
        make_optimizer=lambda m: Recording(
            [dict(params=[m[1].weight], lr=0.4), dict(params=[m[1].bias], lr=0.1)]
        ),
        show_progress=False,
    )
    total = 3 * 4
    assert run.steps == total and run.images == total * 16 and len(run.losses) == total
    for step, (lr_w, lr_b) in enumerate(seen):
        factor = warmup_cosine(step / total, 0.25)
        assert math.isclose(lr_w, 0.4 * factor) and math.isclose(lr_b, 0.1 * factor)
    assert [e[0] for e in run.evals] == [4, 8, 12]
    assert 0.0 <= run.val_accuracy <= 1.0


def test_time_budget_stops_on_time_and_learns():
    data = _data(256)
    run = train_classifier(
        _model(),
        data,
        data,
        seconds=0.5,
        batch_size=32,
        evals=4,
        make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=0.05),
        show_progress=False,
    )
    assert 0.5 <= run.seconds < 0.5 + 0.2  # one step past the budget at most
    assert len(run.evals) == 4 and run.evals[-1][1] == run.seconds
    assert run.val_accuracy > 0.8  # the toy task is linearly separable


def test_errors_name_the_argument():
    data, opt = _data(), lambda m: torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        train_classifier(_model(), data, None, make_optimizer=opt)
    with pytest.raises(ValueError, match="exactly one"):
        train_classifier(_model(), data, None, make_optimizer=opt, epochs=1, seconds=1)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(_model(), data, None, make_optimizer=opt, epochs=0)
    with pytest.raises(ValueError, match="batch_size=128"):
        train_classifier(
            _model(), data, None, make_optimizer=opt, epochs=1, batch_size=128
        )


def test_optimisers_decay_weights_only():
    from dlcore.models.vit import ViT, ViTConfig
    from dlcore.timed import adamw, sgd_nesterov

    model = ViT(
        ViTConfig(image_size=8, patch_size=4, hidden_dim=8, num_heads=2, depth=1)
    )
    decay, rest = adamw(model).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "encoder.pos_embedding" not in decayed and "class_token" not in decayed
    assert "conv_proj.weight" in decayed and "heads.head.weight" in decayed
    assert not any(n.endswith("bias") or "ln_" in n for n in decayed)
    assert decay["weight_decay"] == 0.05 and rest["weight_decay"] == 0.0
    assert len(decay["params"]) + len(rest["params"]) == len(list(model.parameters()))
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    decay, rest = sgd_nesterov(conv).param_groups
    assert [p.shape for p in decay["params"]] == [(4, 3, 3, 3)]
    assert decay["nesterov"] and decay["momentum"] == 0.9
