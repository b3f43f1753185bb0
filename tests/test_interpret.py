"""dlcore.interpret: Grad-CAM = ReLU(CAM)/Z on a GAP network, gradient maps, diagnostics
and the LR finder; edge cases (in-place ops, float64, size-1 dims, zeros), bad input."""

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from dlcore import interpret
from dlcore.interpret import GradCAM
from dlcore.models.gapcnn import GapCNN


def _gap_net(seed: int = 0) -> GapCNN:
    torch.manual_seed(seed)
    return GapCNN(in_channels=3, num_classes=5, widths=(6, 8, 7)).double().eval()


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("target", [None, 3, "per-sample"])
def test_gradcam_at_last_layer_equals_cam_over_hw(target):
    model, x = _gap_net(), torch.randn(4, 3, 16, 12, dtype=torch.float64)
    if target == "per-sample":
        target = torch.tensor([0, 4, 2, 2])
    with GradCAM(model, model.features) as gc:
        maps, logits = gc(x, target)
    t = logits.argmax(1) if target is None else interpret._targets(logits, target)
    with torch.no_grad():
        acts = model.features(x)
    cam = interpret.class_activation_map(acts, model.classifier.weight, t)
    h, w = acts.shape[-2:]
    assert maps.shape == (4, h, w) == (4, 4, 3)
    torch.testing.assert_close(maps, torch.relu(cam) / (h * w), rtol=1e-12, atol=1e-14)
    assert cam.amax() > 0 > cam.amin()  # CAM is signed (Zhou et al.): no ReLU inside
    assert _no_hooks(model) and all(p.grad is None for p in model.parameters())


def test_gradcam_hooks_equal_autograd_reference_at_an_inner_layer():
    model, x = _gap_net(1), torch.randn(3, 3, 16, 16, dtype=torch.float64)
    layer = model.features[
        4
    ]  # the second ReLU: (B, 8, 8, 8), followed by pool, conv, ReLU
    with GradCAM(model, layer) as gc:
        maps, logits = gc(x)
        up, _ = gc(x, upsample=True)
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    out = model(x)
    (grad,) = torch.autograd.grad(
        out.gather(1, out.argmax(1, keepdim=True)).sum(), store["a"]
    )
    handle.remove()
    alpha = grad.mean(dim=(2, 3))
    ref = torch.relu(torch.einsum("bk,bkhw->bhw", alpha, store["a"].detach()))
    torch.testing.assert_close(maps, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(logits, out.detach())
    assert up.shape == (3, 16, 16)
    torch.testing.assert_close(
        up,
        F.interpolate(
            ref[:, None], size=(16, 16), mode="bilinear", align_corners=False
        )[:, 0],
    )


def test_gradcam_works_on_a_frozen_model():
    model = _gap_net(2).requires_grad_(False)
    with GradCAM(model, model.features) as gc:
        maps, _ = gc(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    assert maps.shape == (2, 2, 2)


def test_saliency_of_a_linear_model_is_its_weight_row():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 4, 3)).double()
    x = torch.randn(6, 2, 5, 4, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    expected = model[1].weight[target].detach().reshape(6, 2, 5, 4).abs().amax(dim=1)
    torch.testing.assert_close(interpret.saliency(model, x, target), expected)
    # the gradient of a linear model does not depend on x: SmoothGrad gives the same map
    torch.testing.assert_close(
        interpret.smoothgrad(model, x, target, samples=5, noise=0.5), expected
    )


def test_saliency_and_smoothgrad_match_autograd():
    model, x = _gap_net(3), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    (g,) = torch.autograd.grad(out.gather(1, out.argmax(1, keepdim=True)).sum(), xr)
    torch.testing.assert_close(interpret.saliency(model, x), g.abs().amax(1))
    torch.testing.assert_close(
        interpret.smoothgrad(model, x, samples=3, noise=0.0), g.abs().amax(1)
    )
    gen = torch.Generator().manual_seed(0)
    noisy = interpret.smoothgrad(model, x, samples=4, noise=0.2, generator=gen)
    assert noisy.shape == (2, 8, 8) and not torch.allclose(noisy, g.abs().amax(1))


def test_record_activations_and_dead_fraction():
    model, x = _gap_net(4), torch.randn(5, 3, 8, 8, dtype=torch.float64)
    with interpret.record_activations(model, ["features.1", "features"]) as acts:
        model(x)
    torch.testing.assert_close(acts["features.1"], torch.relu(model.features[0](x)))
    torch.testing.assert_close(acts["features"], model.features(x))
    assert _no_hooks(model)
    a = torch.zeros(4, 5, 3, 3)
    a[2, 0, 1, 1] = 0.5  # channel 0 active once: alive
    a[:, 1] = 1.0  # channel 1 always active
    a[:, 2] = -1.0  # channel 2 negative everywhere: dead (as are 3 and 4, all zeros)
    assert interpret.dead_fraction(a) == pytest.approx(3 / 5)
    assert (
        interpret.dead_fraction(torch.tensor([[0.0, 1.0], [0.0, 0.0]])) == 0.5
    )  # (B, units)


def test_activation_stats_records_training_passes_only():
    model, x = _gap_net(5).train(), torch.randn(6, 3, 8, 8, dtype=torch.float64)
    with interpret.ActivationStats(
        model, ["features.1", "features.7"], bins=np.linspace(0, 2, 5)
    ) as st:
        model(x)
        model(x)
        model.eval()
        model(x)
    a = torch.relu(model.features[0](x)).detach()
    s = st.stats["features.1"]
    assert len(s["mean"]) == 2 and s["mean"][0] == pytest.approx(a.mean().item())
    assert s["std"][0] == pytest.approx(a.std().item())
    hist = st.histograms("features.1")
    assert hist.shape == (2, 4) and hist[0].sum() == a.numel()
    assert _no_hooks(model)


def test_grad_norms_agree_with_clip_grad_norm():
    model, x = _gap_net(6), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    norms = interpret.grad_norms(model, weights_only=False)
    total = nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert np.sqrt(sum(v**2 for v in norms.values())) == pytest.approx(
        total.item(), rel=1e-10
    )
    assert set(interpret.grad_norms(model)) == {
        n for n, p in model.named_parameters() if p.dim() > 1
    }


def test_rank_correlation_matches_scipy_spearman_with_ties():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 6, 5, generator=gen, dtype=torch.float64)
    b = a + 0.8 * torch.randn(3, 6, 5, generator=gen, dtype=torch.float64)
    a, b = torch.relu(a).round(decimals=1), b.round()  # many ties, as in ReLU'd maps
    ours = interpret.rank_correlation(a, b)
    for i in range(3):
        ref = scipy.stats.spearmanr(a[i].flatten(), b[i].flatten()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-12)
    torch.testing.assert_close(
        interpret.rank_correlation(a, 2 * a + 1), torch.ones(3, dtype=torch.float64)
    )
    assert (
        interpret.rank_correlation(a[:1], torch.zeros(1, 6, 5)).item() == 0.0
    )  # a constant map


def test_randomized_copy_changes_only_the_named_layers_and_the_map():
    model, x = _gap_net(7), torch.randn(4, 3, 16, 16, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rand = interpret.randomized_copy(model, ["classifier", "features.6"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
        changed = not torch.equal(rand.state_dict()[k], v)
        assert changed == k.startswith(("classifier", "features.6")), k
    with GradCAM(model, model.features) as g1, GradCAM(rand, rand.features) as g2:
        t = model(x).argmax(1)
        m1, m2 = g1(x, t)[0], g2(x, t)[0]
    assert not torch.allclose(m1, m2)


def _linear_regression_problem(n: int = 256, d: int = 8):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen) * torch.linspace(
        0.3, 2.0, d
    )  # anisotropic: curvatures differ
    y = x @ torch.randn(d, 1, generator=gen) + 0.1 * torch.randn(n, 1, generator=gen)
    hessian = 2 * x.T @ x / n  # of F.mse_loss (mean over the n outputs)
    return x, y, torch.linalg.eigvalsh(hessian).max().item()


def test_lr_find_restores_weights_and_brackets_the_stability_limit():
    x, y, lam = _linear_regression_problem()
    critical = 2 / lam  # gradient descent on a quadratic diverges for lr > 2 / λ_max
    torch.manual_seed(0)
    model = nn.Linear(8, 1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = interpret.lr_find(
        model,
        [(x, y)],
        loss_fn=F.mse_loss,
        steps=300,
        start_lr=1e-5,
        end_lr=100,
        optimizer_fn=lambda p, lr: torch.optim.SGD(p, lr=lr),
    )
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not model.training  # mode restored
    assert result.diverged and result.lrs[-1] > critical
    assert critical / 100 < result.suggestion < critical
    # the moving average lags by about 1 / (1 − β) = 20 steps (≈ 0.5 decade here), so
    # its minimum comes after the critical rate, but not far after
    assert result.steepest < critical < result.min_lr < 4 * critical
    assert np.all(np.diff(np.log(result.lrs)) > 0) and len(result.lrs) == len(
        result.losses
    )
    assert result.lrs[0] == pytest.approx(1e-5)


def test_lr_find_restores_batchnorm_buffers_on_a_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = [(torch.randn(8, 3, 6, 6), torch.randint(0, 3, (8,))) for _ in range(3)]
    result = interpret.lr_find(model, data, steps=20, end_lr=1.0)
    assert len(result.lrs) >= 2 and model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# ---------------------------------------------------------- edge cases and bad input


def _inplace_net() -> nn.Sequential:
    """conv → ReLU(inplace=True) → conv → ReLU(inplace=True) → GAP → linear."""
    torch.manual_seed(11)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    ).double()


def test_hooks_survive_an_inplace_relu_after_the_hooked_layer():
    model, x = _inplace_net(), torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        conv_out = model[0](x)  # what the first conv computes, before the ReLU
        logits = model(x)
    with interpret.record_activations(model, ["0"]) as acts:
        model(x)
    torch.testing.assert_close(acts["0"], conv_out)  # not overwritten by the ReLU
    assert (acts["0"] < 0).any()
    with GradCAM(model, model[2]) as gc:  # conv 2, followed by ReLU(inplace=True)
        maps, out = gc(x)
    torch.testing.assert_close(out, logits)  # the copy does not change the output
    # independent reference: cut the network after conv 2 and differentiate there
    a = model[:3](x).detach().requires_grad_(True)
    y = model[3:](a.clone())
    t = y.argmax(1)
    (g,) = torch.autograd.grad(y.gather(1, t[:, None]).sum(), a)
    alpha = g.sum(dim=(2, 3)) / (g.shape[-2] * g.shape[-1])
    ref = torch.relu(torch.einsum("bk,bkhw->bhw", alpha, a.detach()))
    torch.testing.assert_close(maps, ref, rtol=1e-12, atol=1e-14)
    assert maps.dtype == torch.float64 and maps.amax() > 0 and _no_hooks(model)


@pytest.mark.parametrize("batch", [1, 3])
def test_saliency_in_float64_equals_per_sample_autograd(batch):
    model = _gap_net(12)
    x = 10 * torch.randn(batch, 3, 8, 8, dtype=torch.float64)  # large |x| too
    target = torch.arange(batch) % 5
    got = interpret.saliency(model, x, target)
    assert got.dtype == torch.float64 and got.shape == (batch, 8, 8)
    for i in range(batch):  # one image at a time, no batching
        xi = x[i : i + 1].clone().requires_grad_(True)
        (gi,) = torch.autograd.grad(model(xi)[0, target[i]], xi)
        torch.testing.assert_close(got[i], gi[0].abs().amax(0), rtol=1e-12, atol=0)
    smooth = interpret.smoothgrad(model, x, target, samples=2, noise=0.1)
    assert smooth.dtype == torch.float64 and smooth.shape == (batch, 8, 8)


@pytest.mark.parametrize("batch", [1, 2])
def test_gradcam_float64_equals_autograd_with_size_one_dims(batch):
    model = _gap_net(13)
    x = torch.randn(batch, 3, 4, 4, dtype=torch.float64)  # last maps are 1 × 1
    with GradCAM(model, model.features) as gc:
        maps, logits = gc(x, 2)
        up, _ = gc(x, 2, upsample=True)
    a = model.features(x)
    (g,) = torch.autograd.grad(model.classifier(a.mean((2, 3)))[:, 2].sum(), a)
    ref = torch.relu((g.mean((2, 3), keepdim=True) * a.detach()).sum(1))
    assert maps.shape == (batch, 1, 1) and up.shape == (batch, 4, 4)
    torch.testing.assert_close(maps, ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(up, ref[:, :, :].expand(batch, 4, 4))  # constant


def test_zero_gradients_give_zero_maps_and_no_nan_on_normalisation():
    model = _gap_net(14)
    with torch.no_grad():
        model.classifier.weight.zero_()  # y_c does not depend on A: ∂y_c/∂A = 0
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with GradCAM(model, model.features) as gc:
        maps, _ = gc(x, upsample=True)
    assert torch.equal(maps, torch.zeros_like(maps))
    normed = interpret.normalize_maps(maps)
    assert torch.equal(normed, torch.zeros_like(maps)) and not normed.isnan().any()
    sal = interpret.saliency(model, x)
    assert torch.equal(interpret.normalize_maps(sal), torch.zeros_like(sal))


def test_normalize_maps_divides_each_map_by_its_largest_magnitude():
    maps = torch.tensor(
        [[[1.0, 4.0], [2.0, 0.0]], [[-6.0, 3.0], [0.0, 0.0]], [[0.0] * 2] * 2],
        dtype=torch.float64,
    )
    expected = torch.tensor(
        [[[0.25, 1.0], [0.5, 0.0]], [[-1.0, 0.5], [0.0, 0.0]], [[0.0] * 2] * 2],
        dtype=torch.float64,
    )
    got = interpret.normalize_maps(maps)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    tiny = torch.full((1, 3), 1e-300, dtype=torch.float64)
    torch.testing.assert_close(
        interpret.normalize_maps(tiny), torch.ones(1, 3).double()
    )
    with pytest.raises(ValueError, match="maps"):
        interpret.normalize_maps(torch.ones(4))


def test_class_activation_map_is_signed_as_in_zhou_et_al():
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(2, 4, 3, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    t = torch.tensor([1, 4])
    cam = interpret.class_activation_map(a, w, t)
    ref = torch.stack([sum(w[t[b], k] * a[b, k] for k in range(4)) for b in range(2)])
    torch.testing.assert_close(cam, ref)
    neg = interpret.class_activation_map(a, -w.abs(), t)
    assert (neg < 0).all()  # all evidence against the class: CAM < 0 everywhere
    with pytest.raises(ValueError, match="weight"):
        interpret.class_activation_map(a, w[:, :3], t)
    with pytest.raises(ValueError, match="target"):
        interpret.class_activation_map(a, w, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="target"):
        interpret.class_activation_map(a, w, torch.tensor([0]))


def test_rank_correlation_ties_constants_extremes_and_bad_input():
    a = torch.tensor([[1.0, 1.0, 2.0, 3.0, 3.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 5.0, 5.0, 1e300, -1e300, 7.0]], dtype=torch.float64)
    ref = scipy.stats.spearmanr(a[0], b[0]).statistic
    got = interpret.rank_correlation(a, b)
    assert got.dtype == torch.float64 and got.shape == (1,)
    assert got.item() == pytest.approx(ref, abs=1e-12)
    const = torch.full((2, 3, 3), 7.0)
    assert torch.equal(
        interpret.rank_correlation(const, const), torch.zeros(2).double()
    )
    assert interpret.rank_correlation(const[:1], torch.randn(1, 3, 3)).item() == 0.0
    x = torch.randn(1, 10, dtype=torch.float64)
    assert interpret.rank_correlation(x, -x).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same shape"):
        interpret.rank_correlation(torch.ones(2, 4), torch.ones(2, 5))
    with pytest.raises(ValueError, match="at least 2"):
        interpret.rank_correlation(torch.ones(2, 1), torch.ones(2, 1))
    with pytest.raises(ValueError, match="nan"):
        interpret.rank_correlation(
            torch.tensor([[1.0, float("nan")]]), torch.ones(1, 2)
        )


def test_dead_fraction_extremes():
    assert interpret.dead_fraction(torch.zeros(1, 4)) == 1.0  # exact zeros: dead
    assert interpret.dead_fraction(torch.full((1, 4, 1, 1), 1e30)) == 0.0
    a = -torch.rand(3, 5, 2, 2, dtype=torch.float64)  # negative, not only zero
    a[0, 1, 1, 1] = 1e-300  # one tiny positive value keeps channel 1 alive
    assert interpret.dead_fraction(a) == pytest.approx(4 / 5)
    with pytest.raises(ValueError, match="activations"):
        interpret.dead_fraction(torch.ones(5))
    with pytest.raises(ValueError, match="activations"):
        interpret.dead_fraction(torch.ones(0, 3))


def test_public_functions_name_the_bad_argument():
    model, x = _gap_net(15), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="target"):
        interpret.saliency(model, x, 5)  # 5 classes: 0..4
    with pytest.raises(ValueError, match="target"):
        interpret.saliency(model, x, -1)
    with pytest.raises(ValueError, match="target"):
        interpret.saliency(model, x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="target"):
        interpret.saliency(model, x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="x must be"):
        interpret.saliency(model, x[0])
    with pytest.raises(ValueError, match="samples"):
        interpret.smoothgrad(model, x, samples=0)
    with pytest.raises(ValueError, match="noise"):
        interpret.smoothgrad(model, x, noise=-0.1)
    with pytest.raises(ValueError, match="activations and gradients"):
        interpret.gradcam_map(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 4))
    with pytest.raises(ValueError, match="sub-module of model"):
        GradCAM(model, nn.ReLU())
    with pytest.raises(ValueError, match="names"):
        with interpret.record_activations(model, ["features.99"]):
            pass
    with pytest.raises(TypeError, match="names"):
        with interpret.record_activations(model, "features"):
            pass
    with pytest.raises(ValueError, match="names"):
        interpret.randomized_copy(model, ["nope"])
    with pytest.raises(ValueError, match="reset_parameters"):
        interpret.randomized_copy(model, ["features.1"])  # a ReLU
    with pytest.raises(ValueError, match="every"):
        interpret.ActivationStats(model, ["features.1"], every=0)
    with pytest.raises(ValueError, match="names"):
        interpret.ActivationStats(model, ["features.42"])
    assert _no_hooks(model)


def test_lr_find_rejects_bad_arguments_and_an_empty_loader():
    model = nn.Linear(2, 1)
    data = [(torch.randn(4, 2), torch.randn(4, 1))]
    for kwargs, word in [
        ({"start_lr": 0.0}, "start_lr"),
        ({"start_lr": 1.0, "end_lr": 0.5}, "end_lr"),
        ({"steps": 1}, "steps"),
        ({"beta": 1.0}, "beta"),
        ({"diverge": 1.0}, "diverge"),
    ]:
        with pytest.raises(ValueError, match=word):
            interpret.lr_find(model, data, loss_fn=F.mse_loss, **kwargs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="no batches"):
        interpret.lr_find(model, [], loss_fn=F.mse_loss, steps=5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_gapcnn_validates_its_arguments():
    for kwargs, word in [
        ({"widths": ()}, "widths"),
        ({"widths": (8, 0)}, "widths"),
        ({"first_kernel": 4}, "first_kernel"),
        ({"num_classes": 0}, "num_classes"),
    ]:
        with pytest.raises(ValueError, match=word):
            GapCNN(**kwargs)
    out = GapCNN(in_channels=1, num_classes=2, widths=(3,)).double()(
        torch.randn(1, 1, 5, 5, dtype=torch.float64)
    )
    assert out.shape == (1, 2) and out.dtype == torch.float64
