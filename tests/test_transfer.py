"""Transfer learning helpers: freezing really freezes, per-layer learning rates, heads,
checkpoints; edge cases (float64, size-1 dims, large |x|, zeros) and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import dlcore
from dlcore import transfer as T
from dlcore.models.resnet import resnet

CKPT_DIR = (
    Path(__file__).resolve().parents[1] / "notebooks" / "part2_cnn" / "checkpoints"
)


def small_net(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return resnet(8, width=4, num_classes=num_classes)


def train_steps(model: nn.Module, steps: int = 3, lr: float = 0.1) -> None:
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad],
        lr=lr,
        momentum=0.9,
        weight_decay=1e-2,
    )
    model.train()
    for _ in range(steps):
        x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def test_freeze_stops_gradients_updates_and_batchnorm_statistics():
    model = small_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    T.freeze(model, except_=["stages.2", "fc"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("stages.2.", "fc.")) for n in trainable)
    assert T.count_parameters(model, trainable_only=True) == sum(
        p.numel() for n, p in model.named_parameters() if n in trainable
    )
    train_steps(model)
    after = model.state_dict()
    for key, old in before.items():
        if key.endswith("num_batches_tracked") and key not in after:
            continue  # frozen BatchNorm keeps no counter
        changed = not torch.equal(old, after[key])
        assert changed == key.startswith(("stages.2.", "fc.")) or key.endswith(
            "num_batches_tracked"
        ), key
    for n, p in model.named_parameters():
        assert (p.grad is None) == (n not in trainable), n
    assert not any(
        isinstance(m, nn.BatchNorm2d)
        for m in (model.stem, model.stages[0], model.stages[1])
    )
    assert isinstance(
        model.stages[2].residual[0][1], nn.BatchNorm2d
    )  # the trainable part keeps real BN


def test_frozen_part_computes_the_same_in_train_and_eval_mode():
    model = T.freeze(small_net(), except_="fc")
    x = torch.randn(4, 3, 16, 16)
    model.train()
    a = model.features(x)
    model.eval()
    torch.testing.assert_close(a, model.features(x))


def test_freeze_without_batchnorm_freezing_lets_statistics_drift():
    model = T.freeze(small_net(), except_="fc", batchnorm="train")
    mean = model.stem[0][1].running_mean.clone()
    train_steps(model, steps=1)
    assert not torch.equal(
        mean, model.stem[0][1].running_mean
    )  # the pitfall the chapter shows


def test_freeze_prefixes_match_whole_names_and_typos_fail():
    net = nn.Sequential(*[nn.Linear(2, 2) for _ in range(11)])
    T.freeze(net, except_="1")
    assert [n for n, p in net.named_parameters() if p.requires_grad] == [
        "1.weight",
        "1.bias",
    ]  # not "10.*"
    with pytest.raises(ValueError, match="no submodule"):
        T.freeze(small_net(), except_="stage.2")
    T.unfreeze(net)
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_frozen_batchnorm_equals_batchnorm_in_eval_mode(dims):
    torch.manual_seed(dims)
    bn = getattr(nn, f"BatchNorm{dims}d")(5).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 3)
    frozen = T.freeze_batchnorm(bn)
    x = torch.randn((4, 5) + (3,) * dims, dtype=torch.float64)
    frozen.train()
    torch.testing.assert_close(frozen(x), bn.eval()(x))
    assert not list(frozen.parameters())


def test_frozen_batchnorm_equals_torchvision_and_loads_a_batchnorm_state_dict():
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 3)
    ours, theirs = T.FrozenBatchNorm(4), torchvision.ops.FrozenBatchNorm2d(4)
    ours.load_state_dict(bn.state_dict())
    theirs.load_state_dict(bn.state_dict())
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x))


def test_param_groups_longest_prefix_and_per_group_step():
    model = T.freeze(small_net(), except_=["stages", "fc"])
    lrs = {"fc": 0.1, "stages.2": 0.01, "": 0.001}
    groups = T.param_groups(model, lrs, weight_decay=0.0)
    assert [g["name"] for g in groups] == ["fc", "stages.2", "(rest)"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(p.requires_grad for p in model.parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            expected = (
                0.1
                if n.startswith("fc.")
                else 0.01
                if n.startswith("stages.2.")
                else 0.001
            )
            assert g["lr"] == expected, n
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(groups)
    model.train()
    F.cross_entropy(
        model(torch.randn(8, 3, 16, 16)), torch.randint(0, 3, (8,))
    ).backward()
    grads = {
        n: (p.grad.clone() if p.grad is not None else None)
        for n, p in model.named_parameters()
    }
    opt.step()
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            torch.testing.assert_close(p.detach(), before[n] - g["lr"] * grads[n])
    with pytest.raises(ValueError, match="matches no prefix"):
        T.param_groups(model, {"fc": 0.1})


def test_layerwise_lrs_decay_towards_the_input():
    lrs = T.layerwise_lrs(["stem", "stages.0", "fc"], top_lr=0.1, decay=10)
    assert list(lrs) == ["stem", "stages.0", "fc"]
    np.testing.assert_allclose(list(lrs.values()), [0.001, 0.01, 0.1])


def test_replace_head_keeps_the_body_on_dlcore_and_torchvision_resnets():
    for model in (small_net(6), torchvision.models.resnet18(weights=None)):
        body = {
            k: v.clone()
            for k, v in model.state_dict().items()
            if not k.startswith("fc.")
        }
        head = T.replace_head(model, 4)
        assert model.fc is head and head.out_features == 4
        model.eval()
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
        for k, v in model.state_dict().items():
            if not k.startswith("fc."):
                assert torch.equal(v, body[k]), k


def test_replace_head_rejects_a_non_linear_head():
    with pytest.raises(TypeError, match="not nn.Linear"):
        T.replace_head(torchvision.models.resnet18(weights=None), 3, head="avgpool")


def test_load_verified_round_trip_and_tampering(tmp_path):
    model = small_net()
    path = dlcore.save_checkpoint(tmp_path / "m.pt", model, note="hello")
    digest = T.sha256sum(path)
    fresh = resnet(8, width=4, num_classes=3)
    _, extra = T.load_verified(path, fresh, digest)
    assert extra == {"note": "hello"}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    untouched = resnet(8, width=4, num_classes=3)
    reference = {k: v.clone() for k, v in untouched.state_dict().items()}
    with pytest.raises(dlcore.ChecksumError, match="sha256"):
        T.load_verified(path, untouched, digest)
    assert all(torch.equal(v, reference[k]) for k, v in untouched.state_dict().items())


def test_hub_weights_path_looks_only_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    assert T.hub_weights_path(weights) is None
    target = tmp_path / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    target.parent.mkdir()
    target.write_bytes(b"x")
    assert T.hub_weights_path(weights) == target


def test_extract_features_equals_pooled_features_and_restores_the_model():
    model = small_net()
    model.train()
    fc = model.fc
    x, y = torch.randn(10, 3, 16, 16), torch.arange(10)
    loader = [(x[:6], y[:6]), (x[6:], y[6:])]
    feats, labels = T.extract_features(model, loader)
    model.eval()
    with torch.no_grad():
        expected = model.pool(model.features(x)).flatten(1)
    torch.testing.assert_close(feats, expected)
    assert torch.equal(labels, y) and model.fc is fc


def test_linear_probe_matches_sklearn_logistic_regression():
    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 5, generator=g) * 1.5
    y = torch.randint(0, 3, (300,), generator=g)
    x = centres[y] + torch.randn(300, 5, generator=g)
    train_x, train_y, test_x, test_y = x[:200], y[:200], x[200:], y[200:]
    wd = 1e-2
    ours = T.linear_probe(train_x, train_y, test_x, test_y, weight_decay=wd, steps=200)
    mean, std = train_x.double().mean(0), train_x.double().std(0)
    clf = sklearn_lm.LogisticRegression(
        C=1 / (len(train_y) * wd), tol=1e-10, max_iter=5000
    )
    clf.fit(((train_x - mean) / std).numpy(), train_y.numpy())
    theirs = clf.score(((test_x - mean) / std).numpy(), test_y.numpy())
    assert abs(ours - theirs) < 1e-9 and ours > 0.6


def test_shipped_checkpoint_matches_its_sidecar():
    meta_path = CKPT_DIR / "resnet_cifar_animals.json"
    if not meta_path.exists():
        pytest.skip("the pretrained checkpoint has not been made yet")
    meta = json.loads(meta_path.read_text())
    model = resnet(8, width=16, num_classes=len(meta["classes"]))
    _, extra = T.load_verified(CKPT_DIR / meta["file"], model, meta["sha256"])
    assert (
        extra["classes"] == meta["classes"]
        and abs(extra["test_accuracy"] - meta["test_accuracy"]) < 1e-3
    )
    assert (CKPT_DIR / meta["file"]).stat().st_size <= 3 * 2**20


def toy_data(n: int = 60) -> dlcore.TensorData:
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    y = torch.arange(n) % 3
    return dlcore.TensorData(x, y, ["a", "b", "c"], (0.0,), (1.0,), "toy")


def test_select_classes_relabels_in_the_given_order():
    data = T.select_classes(toy_data(), ["c", "a"])
    assert data.classes == ["c", "a"] and len(data) == 40
    original = (
        data.x.flatten().long() % 3
    )  # x encodes the original index, whose class is index % 3
    assert torch.equal(data.y, torch.where(original == 2, 0, 1))


def test_balanced_subset_counts_nesting_and_seeds():
    data = toy_data(90)
    small, large = (
        T.balanced_subset(data, 5, seed=1),
        T.balanced_subset(data, 20, seed=1),
    )
    assert torch.equal(torch.bincount(small.y), torch.tensor([5, 5, 5]))
    assert set(small.x.flatten().tolist()) <= set(large.x.flatten().tolist())
    assert set(small.x.flatten().tolist()) != set(
        T.balanced_subset(data, 5, seed=2).x.flatten().tolist()
    )
    assert torch.equal(
        data.y[small.x.flatten().long()], small.y
    )  # labels travel with their images
    with pytest.raises(ValueError, match="fewer than"):
        T.balanced_subset(data, 31)


# ---------------------------------------------------------- edge cases and bad input


def test_take_select_and_subset_name_their_bad_arguments():
    data = toy_data(30)
    with pytest.raises(TypeError, match="index"):
        T.take(data, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="index"):
        T.take(data, torch.tensor([0, 30]))
    with pytest.raises(ValueError, match="index"):
        T.take(data, torch.tensor([-1]))
    with pytest.raises(ValueError, match="index"):
        T.take(data, torch.zeros(2, 2, dtype=torch.long))
    assert len(T.take(data, torch.tensor([], dtype=torch.long))) == 0
    with pytest.raises(ValueError, match="classes"):
        T.select_classes(data, ["a", "z"])
    with pytest.raises(ValueError, match="classes"):
        T.select_classes(data, ["a", "a"])
    with pytest.raises(ValueError, match="classes"):
        T.select_classes(data, "a")
    with pytest.raises(ValueError, match="per_class"):
        T.balanced_subset(data, 0)
    one = T.balanced_subset(data, 1)  # size-1 per class
    assert torch.equal(torch.bincount(one.y), torch.ones(3, dtype=torch.long))


def test_frozen_batchnorm_float64_extremes_and_size_one_dims():
    bn = nn.BatchNorm2d(1).double()
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.bias.fill_(-2.0)
        bn.running_mean.fill_(1e6)
        bn.running_var.fill_(1e-8)
    frozen = T.freeze_batchnorm(bn).train()
    x = 1e6 + torch.randn(
        1, 1, 1, 1, dtype=torch.float64
    )  # large |x|, B = C = H = W = 1
    out = frozen(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, bn.eval()(x), rtol=1e-10, atol=1e-6)
    torch.testing.assert_close(
        out,
        F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps
        ),
    )
    zero = T.FrozenBatchNorm(2, eps=0.0).double()  # unit variance: eps = 0 is fine
    x2 = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(zero(x2), x2)
    with pytest.raises(ValueError, match="x must be"):
        zero(torch.randn(3, 5))
    with pytest.raises(ValueError, match="num_features"):
        T.FrozenBatchNorm(0)
    with pytest.raises(ValueError, match="eps"):
        T.FrozenBatchNorm(3, eps=-1e-5)


def test_heads_and_learning_rates_reject_bad_arguments():
    net = small_net()
    with pytest.raises(ValueError, match="head"):
        T.replace_head(net, 4, head="classifier")
    with pytest.raises(ValueError, match="num_classes"):
        T.replace_head(net, 0)
    assert T.replace_head(net, 1).out_features == 1  # one output is allowed
    for lrs, word in [
        ({"": -0.1}, "lrs"),
        ({"fc": float("nan"), "": 0.1}, "lrs"),
        ({"": float("inf")}, "lrs"),
        ({}, "lrs"),
    ]:
        with pytest.raises(ValueError, match=word):
            T.param_groups(net, lrs)
    with pytest.raises(TypeError, match="lrs"):
        T.param_groups(net, {"": "0.1"})
    groups = T.param_groups(net, {"": 0.0})  # lr 0 is valid (the BatchNorm demo)
    assert groups[0]["lr"] == 0.0
    with pytest.raises(ValueError, match="decay"):
        T.layerwise_lrs(["a", "b"], 0.1, 0.0)
    with pytest.raises(ValueError, match="top_lr"):
        T.layerwise_lrs(["a", "b"], -0.1, 2.0)
    with pytest.raises(ValueError, match="prefixes"):
        T.layerwise_lrs([], 0.1, 2.0)
    assert T.layerwise_lrs(["fc"], 0.1, 10.0) == {"fc": 0.1}


def test_extract_features_and_load_verified_reject_bad_input(tmp_path):
    net = small_net()
    with pytest.raises(ValueError, match="head"):
        T.extract_features(net, [], head="nope")
    with pytest.raises(ValueError, match="no batches"):
        T.extract_features(net, [])
    assert isinstance(net.fc, nn.Linear)  # restored after the error
    with pytest.raises(ValueError, match="sha256"):
        T.load_verified(tmp_path / "x.pt", net, "abc")


def test_linear_probe_edge_cases():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    x[:, 0] = 5.0  # a constant feature: std 0, must not produce nan
    x[:, 1] += 3 * y  # an informative one
    acc = T.linear_probe(x, y, x, y)
    assert acc > 0.8 and acc == acc
    big = T.linear_probe(1e6 * x, y, 1e6 * x, y)  # standardisation removes the scale
    assert big == pytest.approx(acc)
    one_d = T.linear_probe(x[:, 1:2].float(), y, x[:, 1:2].float(), y)  # D = 1, float32
    assert one_d > 0.8
    with pytest.raises(ValueError, match="train_x and test_x"):
        T.linear_probe(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="train_y"):
        T.linear_probe(x, y.double(), x, y)
    with pytest.raises(ValueError, match="train_y"):
        T.linear_probe(x, y - 1, x, y)
    with pytest.raises(ValueError, match="test_y"):
        T.linear_probe(x, y, x, y[:10])
    with pytest.raises(ValueError, match="weight_decay"):
        T.linear_probe(x, y, x, y, weight_decay=-1.0)
    with pytest.raises(ValueError, match="steps"):
        T.linear_probe(x, y, x, y, steps=0)


def test_linear_probe_standardises_with_augment_normalize(monkeypatch):
    calls = []
    real = T.normalize

    def spy(x, mean, std):
        calls.append(x.shape)
        return real(x, mean, std)

    monkeypatch.setattr(T, "normalize", spy)
    x, y = torch.randn(10, 4), torch.arange(10) % 2
    T.linear_probe(x, y, x[:6], y[:6], steps=2)
    assert calls == [(10, 4, 1, 1), (6, 4, 1, 1)]
