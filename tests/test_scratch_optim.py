"""dlcore.scratch.optim against torch.optim: parameters equal after every step, in
float64. Extreme settings and bad arguments: test_scratch_optim_edges.py."""

import math

import pytest
import torch

from dlcore.scratch import optim as so

# (name, our optimiser, torch's, hyper-parameters): defaults, non-default and
# weight-decay variants
CASES = [
    ("sgd", so.SGD, torch.optim.SGD, dict(lr=0.1)),
    ("sgd-wd", so.SGD, torch.optim.SGD, dict(lr=0.1, weight_decay=0.1)),
    ("momentum", so.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (
        "momentum-dampening-wd",
        so.SGD,
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    ),
    ("nesterov", so.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (
        "nesterov-wd",
        so.SGD,
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05),
    ),
    ("adagrad", so.AdaGrad, torch.optim.Adagrad, dict(lr=0.1)),
    (
        "adagrad-decay-wd-init",
        so.AdaGrad,
        torch.optim.Adagrad,
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5),
    ),
    ("rmsprop", so.RMSProp, torch.optim.RMSprop, dict(lr=0.01)),
    (
        "rmsprop-centered-momentum-wd",
        so.RMSProp,
        torch.optim.RMSprop,
        dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.1),
    ),
    ("adadelta", so.Adadelta, torch.optim.Adadelta, dict()),
    (
        "adadelta-wd",
        so.Adadelta,
        torch.optim.Adadelta,
        dict(lr=0.5, rho=0.95, weight_decay=0.1),
    ),
    ("adam", so.Adam, torch.optim.Adam, dict(lr=0.01)),
    (
        "adam-l2-amsgrad",
        so.Adam,
        torch.optim.Adam,
        dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True),
    ),
    ("adamw", so.AdamW, torch.optim.AdamW, dict(lr=0.01)),
    (
        "adamw-wd-amsgrad",
        so.AdamW,
        torch.optim.AdamW,
        dict(lr=0.01, weight_decay=0.3, amsgrad=True),
    ),
    ("nadam", so.NAdam, torch.optim.NAdam, dict(lr=0.01)),
    (
        "nadam-l2",
        so.NAdam,
        torch.optim.NAdam,
        dict(lr=0.01, weight_decay=0.1, momentum_decay=0.01),
    ),
    (
        "nadam-decoupled",
        so.NAdam,
        torch.optim.NAdam,
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    ),
    ("radam", so.RAdam, torch.optim.RAdam, dict(lr=0.01)),
    ("radam-l2", so.RAdam, torch.optim.RAdam, dict(lr=0.01, weight_decay=0.1)),
    (
        "radam-decoupled",
        so.RAdam,
        torch.optim.RAdam,
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    ),
]


@pytest.mark.parametrize("name, ours, theirs, kwargs", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_every_step(name, ours, theirs, kwargs):
    gaps = so.compare_with_torch(
        lambda p: ours(p, **kwargs), lambda p: theirs(p, **kwargs), steps=30
    )
    assert len(gaps) == 30
    assert max(gaps) < 1e-12, f"{name}: largest parameter difference {max(gaps):.3e}"


def test_comparison_detects_a_wrong_rule():
    """The check can fail: Adam without bias correction is not torch's Adam."""

    class NoBiasCorrection(so.Adam):
        def update(self, p, g, state, group):
            state["step"] = 10_000  # 1 - β^t ≈ 1: the corrections vanish
            super().update(p, g, state, group)

    gaps = so.compare_with_torch(
        lambda p: NoBiasCorrection(p, lr=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01),
        steps=3,
    )
    assert gaps[0] > 1e-4


def lion_reference(theta, grads, lr, beta1, beta2, wd):
    """Chen et al. (2023), Algorithm 2, written out directly on one tensor."""
    m = torch.zeros_like(theta)
    for g in grads:
        update = torch.sign(beta1 * m + (1 - beta1) * g)
        theta = theta - lr * (update + wd * theta)
        m = beta2 * m + (1 - beta2) * g
    return theta


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lion_matches_the_paper(wd):
    gen = torch.Generator().manual_seed(0)
    theta0 = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    grads = [torch.randn(5, 4, generator=gen, dtype=torch.float64) for _ in range(20)]
    p = theta0.clone().requires_grad_()
    opt = so.Lion([p], lr=0.01, betas=(0.9, 0.99), weight_decay=wd)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(
        p.detach(),
        lion_reference(theta0, grads, 0.01, 0.9, 0.99, wd),
        rtol=0,
        atol=1e-14,
    )


def test_lion_by_hand():
    """Two steps on a scalar: θ=1, g=(2, -1), η=0.1, β=(0.9, 0.99).
    Step 1: c = 0.1·2 > 0 → θ = 0.9; m = 0.02.
    Step 2: c = 0.9·0.02 + 0.1·(-1) = -0.082 < 0 → θ = 1.0."""
    p = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = so.Lion([p], lr=0.1)
    for g, expected in [(2.0, 0.9), (-1.0, 1.0)]:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        assert p.item() == pytest.approx(expected, abs=1e-15)
    assert opt.state[p]["exp_avg"].item() == pytest.approx(
        0.99 * 0.02 + 0.01 * -1.0, abs=1e-15
    )


def test_trains_through_dlcore_fit():
    """Our optimisers plug into dlcore.fit (zero_grad, step, param_groups) and reduce
    the loss."""
    import dlcore

    torch.manual_seed(0)
    x = torch.randn(256, 5)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Linear(5, 2)
    opt = so.AdamW(model.parameters(), lr=0.05)
    sched = so.Schedule(opt, lambda t: so.cosine_lr(t, 0.05, 40))
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
    history = dlcore.fit(
        model,
        batches,
        epochs=10,
        optimizer=opt,
        scheduler=sched,
        device=torch.device("cpu"),
        progress=False,
    )
    assert history.steps[-1] < 0.5 * history.steps[0]
    assert opt.param_groups[0]["lr"] == pytest.approx(
        0.0, abs=1e-12
    )  # cosine ended at zero


def test_zero_grad_and_no_grad_params():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    opt = so.SGD([a, b], lr=1.0)
    a.grad = torch.ones(2)
    opt.step()  # b has no gradient: untouched, no state
    assert a.tolist() == [0.0, 0.0] and b.tolist() == [1.0, 1.0] and b not in opt.state
    opt.zero_grad()
    assert a.grad is None


def test_gradient_descent_on_a_quadratic_contracts_as_predicted():
    """On f = ½(x² + κy²), GD multiplies each coordinate by (1 - ηλ) per step."""
    kappa, lr = 10.0, 0.15
    f = lambda v: 0.5 * (v[0] ** 2 + kappa * v[1] ** 2)  # noqa: E731
    path, losses = so.trajectory(lambda p: so.SGD(p, lr=lr), f, (1.0, 1.0), steps=20)
    t = torch.arange(21, dtype=torch.float64)
    torch.testing.assert_close(path[:, 0], (1 - lr) ** t)
    torch.testing.assert_close(path[:, 1], (1 - lr * kappa) ** t)
    assert losses.shape == (21,)


def test_trajectory_marks_divergence():
    f = lambda v: 0.5 * (v**2).sum()  # noqa: E731
    _, losses = so.trajectory(lambda p: so.SGD(p, lr=3.0), f, (1.0, 1.0), steps=2000)
    assert math.isinf(losses[-1].item()) and len(losses) == 2001


def torch_lrs(make_scheduler, steps):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


S = torch.optim.lr_scheduler
SCHEDULES = [
    (
        "step",
        lambda o: S.StepLR(o, step_size=30, gamma=0.5),
        lambda t: so.step_lr(t, 0.1, 30, 0.5),
    ),
    (
        "multistep",
        lambda o: S.MultiStepLR(o, milestones=[40, 70, 90], gamma=0.3),
        lambda t: so.multistep_lr(t, 0.1, [40, 70, 90], 0.3),
    ),
    (
        "exponential",
        lambda o: S.ExponentialLR(o, gamma=0.97),
        lambda t: so.exponential_lr(t, 0.1, 0.97),
    ),
    (
        "cosine",
        lambda o: S.CosineAnnealingLR(o, T_max=100, eta_min=1e-3),
        lambda t: so.cosine_lr(t, 0.1, 100, 1e-3),
    ),
    (
        "one-cycle",
        lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=100),
        lambda t: so.one_cycle_lr(t, 0.1, 100),
    ),
    (
        "one-cycle-odd",
        lambda o: S.OneCycleLR(
            o, max_lr=0.3, total_steps=77, pct_start=0.25, div_factor=10
        ),
        lambda t: so.one_cycle_lr(t, 0.3, 77, pct_start=0.25, div_factor=10),
    ),
    (
        "warmup-cosine",
        lambda o: S.SequentialLR(
            o,
            [
                S.LinearLR(o, start_factor=0.01, total_iters=10),
                S.CosineAnnealingLR(o, T_max=90),
            ],
            milestones=[10],
        ),
        lambda t: so.warmup_cosine_lr(t, 0.1, 10, 100),
    ),
]


@pytest.mark.parametrize("name, make, ours", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_match_torch(name, make, ours):
    steps = 77 if name == "one-cycle-odd" else 100
    expected = torch_lrs(make, steps)
    got = [ours(t) for t in range(steps)]
    torch.testing.assert_close(
        torch.tensor(got, dtype=torch.float64),
        torch.tensor(expected, dtype=torch.float64),
        rtol=1e-9,
        atol=1e-12,
    )


def test_schedule_wrapper_sets_lr():
    p = torch.zeros(1, requires_grad=True)
    opt = so.SGD([p], lr=1.0)
    sched = so.Schedule(opt, lambda t: 0.5**t)
    assert opt.param_groups[0]["lr"] == 1.0
    sched.step()
    sched.step()
    assert sched.get_last_lr() == [0.25]
