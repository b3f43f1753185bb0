"""dlcore.scratch.optim at the edges: extreme settings against torch.optim in float64,
and bad arguments refused at the public boundary with an error that names them."""

import math

import pytest
import torch

from dlcore.scratch import optim as so

F64 = torch.float64

# (name, ours, torch's, hyper-parameters): every optimiser torch also ships
PAIRS = [
    ("sgd", so.SGD, torch.optim.SGD, dict(lr=0.1)),
    ("momentum", so.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    ("nesterov", so.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("adagrad", so.AdaGrad, torch.optim.Adagrad, dict(lr=0.1)),
    ("rmsprop", so.RMSProp, torch.optim.RMSprop, dict(lr=0.01)),
    (
        "rmsprop-centered",
        so.RMSProp,
        torch.optim.RMSprop,
        dict(lr=0.01, centered=True, momentum=0.5),
    ),
    ("adadelta", so.Adadelta, torch.optim.Adadelta, dict()),
    ("adam", so.Adam, torch.optim.Adam, dict(lr=0.01)),
    ("amsgrad", so.Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    ("adamw", so.AdamW, torch.optim.AdamW, dict(lr=0.01)),
    ("nadam", so.NAdam, torch.optim.NAdam, dict(lr=0.01)),
    ("radam", so.RAdam, torch.optim.RAdam, dict(lr=0.01)),
]
IDS = [p[0] for p in PAIRS]
ADAM_FAMILY = [so.Adam, so.AdamW, so.NAdam, so.RAdam]
TORCH_OF = {
    so.Adam: torch.optim.Adam,
    so.AdamW: torch.optim.AdamW,
    so.NAdam: torch.optim.NAdam,
    so.RAdam: torch.optim.RAdam,
}


def run_both(ours, theirs, kwargs, grads, init):
    """Step both optimisers on the given gradient sequence; return both parameter lists.

    grads: a list (one per step) of lists of tensors shaped like `init`."""
    a = [x.clone().requires_grad_() for x in init]
    b = [x.clone().requires_grad_() for x in init]
    with so.float64_default():
        opt_a, opt_b = ours(a, **kwargs), theirs(b, **kwargs)
        for step in grads:
            for pa, pb, g in zip(a, b, step):
                pa.grad, pb.grad = g.clone(), g.clone()
            opt_a.step()
            opt_b.step()
            for pa, pb in zip(a, b):
                torch.testing.assert_close(
                    pa.detach(), pb.detach(), rtol=1e-12, atol=1e-12, equal_nan=True
                )
    return a, b, opt_a


def initial(shapes=((3, 2), (4,)), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=F64) for s in shapes]


def constant_grads(init, value, steps=8):
    """The same gradient every step, with alternating signs across coordinates."""
    signs = [torch.where(torch.arange(x.numel()) % 2 == 0, 1.0, -1.0) for x in init]
    signs = [s.to(F64).reshape(x.shape) for s, x in zip(signs, init)]
    return [[value * s for s in signs] for _ in range(steps)]


def assert_float64(params, opt):
    """float64 in, float64 out: parameters and every tensor of optimiser state."""
    for p in params:
        assert p.dtype == F64
        for value in opt.state[p].values():
            if isinstance(value, torch.Tensor):
                assert value.dtype == F64


@pytest.mark.parametrize("name, ours, theirs, kwargs", PAIRS, ids=IDS)
def test_zero_gradients(name, ours, theirs, kwargs):
    """g = 0 exactly: no 0/0 (ε keeps the adaptive denominators positive)."""
    init = initial()
    kw = {**kwargs, "weight_decay": 0.0}  # AdamW's default decay would move θ
    a, _, opt = run_both(ours, theirs, kw, constant_grads(init, 0.0), init)
    for p, x in zip(a, init):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.detach(), x, rtol=0, atol=0)  # nothing moves
    assert_float64(a, opt)


@pytest.mark.parametrize("name, ours, theirs, kwargs", PAIRS, ids=IDS)
def test_zero_gradients_with_weight_decay(name, ours, theirs, kwargs):
    """g = 0 but weight decay > 0: only the decay moves θ, identically to torch."""
    init = initial()
    kw = {**kwargs, "weight_decay": 0.1}
    a, _, opt = run_both(ours, theirs, kw, constant_grads(init, 0.0), init)
    assert all(not torch.equal(p.detach(), x) for p, x in zip(a, init))
    assert_float64(a, opt)


@pytest.mark.parametrize("scale", [1e-150, 1e100, 1e200])
@pytest.mark.parametrize("name, ours, theirs, kwargs", PAIRS, ids=IDS)
def test_extreme_gradient_scales(name, ours, theirs, kwargs, scale):
    """Tiny (g² near underflow), huge, and overflowing (g² = inf) gradients."""
    init = initial()
    a, _, opt = run_both(ours, theirs, kwargs, constant_grads(init, scale), init)
    assert_float64(a, opt)


@pytest.mark.parametrize("name, ours, theirs, kwargs", PAIRS, ids=IDS)
def test_learning_rate_zero_leaves_parameters(name, ours, theirs, kwargs):
    init = initial()
    kw = {**kwargs, "lr": 0.0, "weight_decay": 0.5}  # decay is scaled by lr in AdamW
    grads = [[torch.randn_like(x) for x in init] for _ in range(5)]
    a, b, _ = run_both(ours, theirs, kw, grads, init)
    for p, q in zip(a, b):  # equal to torch; and for these rules lr = 0 freezes θ
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)
    for p, x in zip(a, init):
        torch.testing.assert_close(p.detach(), x, rtol=0, atol=0)


@pytest.mark.parametrize("name, ours, theirs, kwargs", PAIRS, ids=IDS)
def test_size_one_and_scalar_parameters(name, ours, theirs, kwargs):
    gaps = so.compare_with_torch(
        lambda p: ours(p, **kwargs),
        lambda p: theirs(p, **kwargs),
        steps=20,
        shapes=((1,), (1, 1), ()),
    )
    assert max(gaps) < 1e-12


@pytest.mark.parametrize("name, ours, theirs, kwargs", PAIRS, ids=IDS)
def test_large_weight_decay(name, ours, theirs, kwargs):
    kw = {**kwargs, "weight_decay": 5.0}
    gaps = so.compare_with_torch(
        lambda p: ours(p, **kw), lambda p: theirs(p, **kw), steps=20
    )
    assert max(gaps) < 1e-10


@pytest.mark.parametrize(
    "betas", [(0.0, 0.0), (0.0, 0.999), (0.9, 0.0), (0.999999, 0.999999)]
)
@pytest.mark.parametrize("ours", ADAM_FAMILY, ids=lambda c: c.__name__)
def test_betas_at_their_limits(ours, betas):
    """β = 0 (no averaging) and β just below 1, the ends of torch's [0, 1)."""
    kw = dict(lr=0.01, betas=betas, weight_decay=0.01)
    gaps = so.compare_with_torch(
        lambda p: ours(p, **kw), lambda p: TORCH_OF[ours](p, **kw), steps=30
    )
    assert max(gaps) < 1e-12


@pytest.mark.parametrize(
    "ours, theirs, kwargs",
    [
        (so.SGD, torch.optim.SGD, dict(lr=0.01, momentum=0.999999)),
        (so.SGD, torch.optim.SGD, dict(lr=0.01, momentum=0.5, dampening=1.0)),
        (so.RMSProp, torch.optim.RMSprop, dict(lr=0.01, alpha=0.0)),
        (so.RMSProp, torch.optim.RMSprop, dict(lr=0.01, alpha=1.0)),
        (so.RMSProp, torch.optim.RMSprop, dict(lr=0.01, momentum=0.999999)),
        (so.Adadelta, torch.optim.Adadelta, dict(rho=0.0)),
        (so.Adadelta, torch.optim.Adadelta, dict(rho=1.0)),
        (so.AdaGrad, torch.optim.Adagrad, dict(lr=0.1, initial_accumulator_value=0.0)),
        (so.NAdam, torch.optim.NAdam, dict(lr=0.01, momentum_decay=0.0)),
    ],
    ids=lambda v: getattr(v, "__name__", None) or str(v),
)
def test_other_hyperparameters_at_their_limits(ours, theirs, kwargs):
    gaps = so.compare_with_torch(
        lambda p: ours(p, **kwargs), lambda p: theirs(p, **kwargs), steps=30
    )
    assert max(gaps) < 1e-12


def lion_paper(theta, grads, lr, beta1, beta2, wd):
    """Chen et al. (2023), Algorithm 2, on one tensor (torch does not ship Lion)."""
    m = torch.zeros_like(theta)
    for g in grads:
        theta = theta - lr * (torch.sign(beta1 * m + (1 - beta1) * g) + wd * theta)
        m = beta2 * m + (1 - beta2) * g
    return theta


@pytest.mark.parametrize(
    "scale, lr, betas, wd",
    [
        (0.0, 0.01, (0.9, 0.99), 0.1),  # g = 0: sign(0) = 0, only the decay acts
        (1e200, 0.01, (0.9, 0.99), 0.0),  # huge g: the step is still exactly η
        (1e-300, 0.01, (0.9, 0.99), 0.0),  # tiny g: likewise
        (1.0, 0.0, (0.9, 0.99), 0.5),  # lr = 0: frozen
        (1.0, 0.01, (0.0, 0.0), 0.0),  # β = 0: sign of the current gradient
        (1.0, 0.01, (0.999999, 0.999999), 0.1),
    ],
)
def test_lion_edges_match_the_paper(scale, lr, betas, wd):
    gen = torch.Generator().manual_seed(1)
    for shape in [(3, 2), (1,), ()]:
        theta0 = torch.randn(shape, generator=gen, dtype=F64)
        grads = [scale * torch.randn(shape, generator=gen, dtype=F64) for _ in range(9)]
        p = theta0.clone().requires_grad_()
        opt = so.Lion([p], lr=lr, betas=betas, weight_decay=wd)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        expected = lion_paper(theta0, grads, lr, *betas, wd)
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-14)
        assert p.dtype == F64 and opt.state[p]["exp_avg"].dtype == F64


# ------------------------------------------------------------------ bad arguments

ALL = [
    so.SGD,
    so.AdaGrad,
    so.RMSProp,
    so.Adadelta,
    so.Adam,
    so.AdamW,
    so.NAdam,
    so.RAdam,
    so.Lion,
]
WITH_EPS = [c for c in ALL if c is not so.SGD and c is not so.Lion]
WITH_BETAS = [*ADAM_FAMILY, so.Lion]


def leaf():
    return [torch.zeros(3, requires_grad=True)]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("lr", [-1e-3, float("nan"), float("inf")])
def test_bad_learning_rate(cls, lr):
    with pytest.raises(ValueError, match=r"\blr\b"):
        cls(leaf(), lr=lr)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_negative_weight_decay(cls):
    with pytest.raises(ValueError, match="weight_decay"):
        cls(leaf(), weight_decay=-0.1)


@pytest.mark.parametrize("cls", [so.SGD, so.RMSProp], ids=lambda c: c.__name__)
@pytest.mark.parametrize("momentum", [-0.1, 1.0, 1.5])
def test_momentum_outside_unit_interval(cls, momentum):
    with pytest.raises(ValueError, match="momentum"):
        cls(leaf(), lr=0.1, momentum=momentum)


@pytest.mark.parametrize("cls", WITH_BETAS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "betas, which",
    [
        ((1.0, 0.999), r"betas\[0\]"),
        ((-0.1, 0.999), r"betas\[0\]"),
        ((0.9, 1.0), r"betas\[1\]"),
        ((0.9, 1.5), r"betas\[1\]"),
        ((0.9,), "betas"),
    ],
)
def test_betas_outside_unit_interval(cls, betas, which):
    with pytest.raises(ValueError, match=which):
        cls(leaf(), betas=betas)


@pytest.mark.parametrize("cls", WITH_EPS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("eps", [0.0, -1e-8])
def test_eps_must_be_positive(cls, eps):
    with pytest.raises(ValueError, match="eps"):
        cls(leaf(), eps=eps)


@pytest.mark.parametrize(
    "cls, kwargs, name",
    [
        (so.SGD, dict(dampening=1.5), "dampening"),
        (so.SGD, dict(momentum=0.0, nesterov=True), "momentum"),
        (so.RMSProp, dict(alpha=1.5), "alpha"),
        (so.RMSProp, dict(alpha=-0.5), "alpha"),
        (so.Adadelta, dict(rho=1.1), "rho"),
        (so.AdaGrad, dict(lr_decay=-1.0), "lr_decay"),
        (so.AdaGrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
        (so.NAdam, dict(momentum_decay=-1.0), "momentum_decay"),
        (so.Adam, dict(lr="fast"), "lr"),
    ],
)
def test_other_bad_hyperparameters(cls, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        cls(leaf(), **kwargs)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_a_tensor_is_not_a_parameter_list(cls):
    """torch.optim raises TypeError here; iterating over the tensor would give rows that
    never receive a gradient, and step() would silently do nothing."""
    w = torch.zeros(4, 3, requires_grad=True)
    with pytest.raises(TypeError, match="params"):
        torch.optim.SGD(w, lr=0.1)
    with pytest.raises(TypeError, match="params"):
        cls(w)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_empty_parameter_list(cls):
    with pytest.raises(ValueError, match="params"):
        cls([])
    with pytest.raises(ValueError, match="params"):
        cls(torch.nn.Sequential().parameters())  # an empty generator


def test_bad_parameter_entries():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match=r"params\[1\]"):
        so.Adam([w, 3.0])
    with pytest.raises(TypeError, match="params"):
        so.Adam(5)
    with pytest.raises(ValueError, match=r"params\[0\].*leaf"):
        so.Adam([w * 2])
    with pytest.raises(ValueError, match="more than once"):
        so.Adam([w, w])


def test_a_generator_of_parameters_still_works():
    model = torch.nn.Linear(3, 2)
    opt = so.SGD(model.parameters(), lr=0.1)
    assert len(opt.param_groups[0]["params"]) == 2


# ------------------------------------------------------------------- schedules


def torch_lr_after(make_scheduler, t):
    """The learning rate torch uses after t calls of scheduler.step()."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = make_scheduler(opt)
    for _ in range(t):
        opt.step()
        sched.step()
    return opt.param_groups[0]["lr"]


@pytest.mark.parametrize("total", [1, 2, 3, 7, 10, 100, 1000])
@pytest.mark.parametrize("pct_start", [0.0, 0.25, 0.3, 0.5, 1.0])
def test_one_cycle_endpoints_match_torch(total, pct_start):
    """t = 0, t = T - 1 and t = T (after the last step) against OneCycleLR."""

    def make(o):
        return torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=0.4, total_steps=total, pct_start=pct_start, cycle_momentum=False
        )

    for t in sorted({0, total - 1, total}):
        ours = so.one_cycle_lr(t, 0.4, total, pct_start=pct_start)
        try:
            theirs = torch_lr_after(make, t)
        except ZeroDivisionError:  # a phase of length 0 at t: torch cannot say
            assert math.isfinite(ours)
            continue
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15), (t, ours, theirs)


def test_one_cycle_endpoint_values():
    """Start at max/div, end at max/(div·final), with the defaults (pct·T > 1)."""
    assert so.one_cycle_lr(0, 0.4, 100) == pytest.approx(0.4 / 25)
    assert so.one_cycle_lr(99, 0.4, 100) == pytest.approx(0.4 / 25 / 1e4)
    assert so.one_cycle_lr(29, 0.4, 100) == pytest.approx(0.4)  # peak at pT - 1
    assert so.one_cycle_lr(0, 0.0, 100) == 0.0  # max_lr = 0 is allowed


@pytest.mark.parametrize("total", [1, 2, 5])
def test_cosine_endpoints_match_torch(total):
    def make(o):
        return torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=1e-3)

    for t in [0, total]:
        assert so.cosine_lr(t, 0.1, total, 1e-3) == pytest.approx(
            torch_lr_after(make, t), rel=1e-12
        )


def test_warmup_zero_is_plain_cosine():
    for t in range(11):
        assert so.warmup_cosine_lr(t, 0.1, 0, 10) == so.cosine_lr(t, 0.1, 10)


def test_step_schedules_at_gamma_limits():
    assert so.step_lr(5, 0.1, 1, gamma=0.0) == 0.0
    assert so.exponential_lr(0, 0.1, 0.0) == 0.1  # 0**0 = 1: the first step keeps η0
    assert so.multistep_lr(10, 0.1, [], 0.5) == 0.1  # no milestones: constant


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: so.cosine_lr(0, 0.1, 0), "total"),
        (lambda: so.cosine_lr(0, 0.1, -3), "total"),
        (lambda: so.one_cycle_lr(0, 0.1, 0), "total"),
        (lambda: so.one_cycle_lr(0, 0.1, -1), "total"),
        (lambda: so.warmup_cosine_lr(0, 0.1, 0, 0), "total"),
        (lambda: so.cosine_lr(0, 0.1, 2.5), "total"),
        (lambda: so.step_lr(0, 0.1, 0), "step_size"),
        (lambda: so.cosine_lr(-1, 0.1, 10), r"\bt\b"),
        (lambda: so.one_cycle_lr(11, 0.1, 10), r"\bt\b"),
        (lambda: so.cosine_lr(0, -0.1, 10), "base_lr"),
        (lambda: so.step_lr(0, -0.1, 10), "base_lr"),
        (lambda: so.multistep_lr(0, -0.1, [3]), "base_lr"),
        (lambda: so.exponential_lr(0, -0.1, 0.9), "base_lr"),
        (lambda: so.exponential_lr(0, 0.1, -0.9), "gamma"),
        (lambda: so.one_cycle_lr(0, -0.1, 10), "max_lr"),
        (lambda: so.one_cycle_lr(0, 0.1, 10, pct_start=1.5), "pct_start"),
        (lambda: so.one_cycle_lr(0, 0.1, 10, div_factor=0.0), "div_factor"),
        (lambda: so.one_cycle_lr(0, 0.1, 10, final_div_factor=-1), "final_div_factor"),
        (lambda: so.warmup_cosine_lr(0, 0.1, 10, 10), "warmup"),
        (lambda: so.warmup_cosine_lr(0, 0.1, -1, 10), "warmup"),
        (lambda: so.warmup_cosine_lr(0, 0.1, 2, 10, start_factor=2.0), "start_factor"),
    ],
)
def test_schedule_arguments_are_checked(call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call()


def test_schedule_refuses_a_negative_learning_rate():
    p = torch.zeros(1, requires_grad=True)
    opt = so.SGD([p], lr=0.1)
    sched = so.Schedule(opt, lambda t: 0.1 - 0.1 * t)
    sched.step()  # lr(1) = 0 is allowed
    with pytest.raises(ValueError, match="learning rate"):
        sched.step()
