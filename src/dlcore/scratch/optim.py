"""Optimisers and learning-rate schedules from scratch (Part I, chapter 4).

Every optimiser has the torch-like API that `dlcore.fit` and `torch.amp.GradScaler`
use: `param_groups` (a list of dicts with "params" and the hyper-parameters, "lr"
among them), `state` (per-parameter buffers), `zero_grad()` and `step()`. A subclass
only writes `update`, the rule for one parameter tensor `p` with gradient `g` (any
shape, the same shape as `p`). The equations in the docstrings use t = 1, 2, ... for
the step, η for the learning rate and λ for the weight decay; they follow `torch.optim`
exactly (checked step by step in the tests), except `Lion`, which torch does not ship
and which is checked against the paper's Algorithm 2. Arguments are checked where they
enter (a negative learning rate, betas outside [0, 1), eps <= 0, a single tensor in
place of a list of parameters, ...), and each error names the argument.

The schedules are plain functions `lr(t)` of the number t = 0, 1, ... of optimiser
steps taken, with the values `torch.optim.lr_scheduler` gives after t calls of
`scheduler.step()`.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Optimizer",
    "SGD",
    "AdaGrad",
    "RMSProp",
    "Adadelta",
    "Adam",
    "AdamW",
    "NAdam",
    "RAdam",
    "Lion",
    "step_lr",
    "multistep_lr",
    "exponential_lr",
    "cosine_lr",
    "one_cycle_lr",
    "warmup_cosine_lr",
    "Schedule",
    "trajectory",
    "compare_with_torch",
    "float64_default",
]


def _number(name: str, value: Any) -> float:
    """`value` as a finite float, or a TypeError/ValueError that names the argument."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _at_least(name: str, value: Any, low: float = 0.0) -> None:
    """Check `value >= low` (learning rates, weight decay, ...)."""
    if _number(name, value) < low:
        raise ValueError(f"{name} must be >= {low:g}, got {value!r}")


def _positive(name: str, value: Any) -> None:
    """Check `value > 0` (eps, div factors)."""
    if _number(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _fraction(name: str, value: Any, *, one: bool = False) -> None:
    """Check 0 <= value < 1 (momentum, betas), or 0 <= value <= 1 with `one`."""
    x = _number(name, value)
    if not (0.0 <= x <= 1.0 if one else 0.0 <= x < 1.0):
        bounds = "[0, 1]" if one else "[0, 1)"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")


def _betas(betas: Any) -> None:
    """Check a pair (β1, β2), each in [0, 1)."""
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(
            f"betas must be a pair (beta1, beta2), got {betas!r}"
        ) from None
    _fraction("betas[0]", beta1)
    _fraction("betas[1]", beta2)


def _parameter_list(params: Any) -> list[Tensor]:
    """The parameters as a list of distinct leaf tensors, or an error naming `params`.

    A single tensor is refused (iterating over it would give its rows, which never get a
    gradient, so the optimiser would silently do nothing), as in torch.optim."""
    if isinstance(params, Tensor):
        raise TypeError(
            "params must be an iterable of tensors, e.g. model.parameters() or [p], "
            f"got a single Tensor of shape {tuple(params.shape)}"
        )
    try:
        params = list(params)
    except TypeError:
        raise TypeError(
            f"params must be an iterable of tensors, got {type(params).__name__}"
        ) from None
    if not params:
        raise ValueError("params: the optimiser got an empty parameter list")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] must be a Tensor, got {type(p).__name__}")
        if not p.is_leaf:
            raise ValueError(
                f"params[{i}] is not a leaf tensor: it cannot be optimised"
            )
    if len({id(p) for p in params}) != len(params):
        raise ValueError("params contains the same tensor more than once")
    return params


class Optimizer:
    """Base class: one parameter group, per-parameter state created lazily, torch's API.

    `params` must be an iterable of distinct leaf tensors (not a single tensor, not
    empty); the subclasses check their hyper-parameters, and every error names the
    argument at fault."""

    def __init__(self, params: Iterable[Tensor], **defaults: Any) -> None:
        params = _parameter_list(params)
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = [{"params": params, **defaults}]
        self.state: dict[Tensor, dict[str, Any]] = {}  # tensors hash by identity

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update every parameter that has a gradient, in place."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {"step": 0})
                state["step"] += 1
                self.update(p, p.grad, state, group)
        return loss

    def update(
        self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """Update `p` in place from its gradient `g`; `state["step"]` is t (already
        incremented)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({hyper})"


def _buffer(
    state: dict[str, Any], name: str, like: Tensor, value: float = 0.0
) -> Tensor:
    """The state tensor `name`, created full of `value` (shape and dtype of `like`) on
    first use."""
    if name not in state:
        state[name] = torch.full_like(like, value, memory_format=torch.preserve_format)
    return state[name]


class SGD(Optimizer):
    r"""Stochastic gradient descent with heavy-ball or Nesterov momentum (torch's form).

    $g_t \leftarrow g_t + \lambda\theta_{t-1}$ (L2 weight decay);
    momentum $\mu>0$: $b_1 = g_1$, $b_t = \mu b_{t-1} + (1-\tau) g_t$
    ($\tau$ = dampening);
    direction $d_t = b_t$ (heavy ball) or $d_t = g_t + \mu b_t$ (Nesterov), else
    $d_t = g_t$;
    $\theta_t = \theta_{t-1} - \eta\, d_t$.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        _at_least("lr", lr)
        _fraction("momentum", momentum)
        _fraction("dampening", dampening, one=True)
        _at_least("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )

    def update(self, p, g, state, group):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        mu = group["momentum"]
        if mu:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.clone()  # b_1 = g_1: no warm-up from zero
            else:
                state["momentum_buffer"].mul_(mu).add_(g, alpha=1 - group["dampening"])
            b = state["momentum_buffer"]
            g = g + mu * b if group["nesterov"] else b
        p.add_(g, alpha=-group["lr"])


class AdaGrad(Optimizer):
    r"""AdaGrad (Duchi et al., 2011): a per-coordinate step that shrinks with the sum
    of the squared gradients.

    $\eta_t = \eta / (1 + (t-1)\,\delta)$ ($\delta$ = lr_decay);
    $g_t \leftarrow g_t + \lambda\theta_{t-1}$;
    $s_t = s_{t-1} + g_t^2$ ($s_0$ = initial_accumulator_value);
    $\theta_t = \theta_{t-1} - \eta_t\, g_t / (\sqrt{s_t} + \epsilon)$.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        _at_least("lr", lr)
        _at_least("lr_decay", lr_decay)
        _at_least("weight_decay", weight_decay)
        _at_least("initial_accumulator_value", initial_accumulator_value)
        _positive("eps", eps)
        super().__init__(
            params,
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
        )

    def update(self, p, g, state, group):
        s = _buffer(state, "sum", p, group["initial_accumulator_value"])
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        s.addcmul_(g, g)
        p.addcdiv_(g, s.sqrt().add_(group["eps"]), value=-lr)


class RMSProp(Optimizer):
    r"""RMSProp (Tieleman & Hinton, 2012): divide by a running RMS of recent gradients.

    $g_t \leftarrow g_t + \lambda\theta_{t-1}$;
    $v_t = \alpha v_{t-1} + (1-\alpha) g_t^2$;
    denominator $r_t = \sqrt{v_t} + \epsilon$, or when centered
    $r_t = \sqrt{v_t - \bar g_t^2} + \epsilon$ with
    $\bar g_t = \alpha\bar g_{t-1} + (1-\alpha) g_t$;
    momentum $\mu>0$: $b_t = \mu b_{t-1} + g_t / r_t$,
    $\theta_t = \theta_{t-1} - \eta b_t$;
    else $\theta_t = \theta_{t-1} - \eta\, g_t / r_t$.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        _at_least("lr", lr)
        _fraction("alpha", alpha, one=True)
        _positive("eps", eps)
        _at_least("weight_decay", weight_decay)
        _fraction("momentum", momentum)
        super().__init__(
            params,
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
        )

    def update(self, p, g, state, group):
        alpha = group["alpha"]
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        v = _buffer(state, "square_avg", p)
        v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        if group["centered"]:
            g_avg = _buffer(state, "grad_avg", p)
            g_avg.lerp_(g, 1 - alpha)
            # RMS of g around its mean, √(v - ḡ²); addcmul is fused (as in torch), so a
            # huge g whose square overflows gives inf, not inf - inf = nan
            r = v.addcmul(g_avg, g_avg, value=-1).sqrt_().add_(group["eps"])
        else:
            r = v.sqrt().add_(group["eps"])
        if group["momentum"] > 0:
            b = _buffer(state, "momentum_buffer", p)
            b.mul_(group["momentum"]).addcdiv_(g, r)
            p.add_(b, alpha=-group["lr"])
        else:
            p.addcdiv_(g, r, value=-group["lr"])


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012): a step in the units of θ, from two running RMS values.

    $g_t \leftarrow g_t + \lambda\theta_{t-1}$; $v_t = \rho v_{t-1} + (1-\rho) g_t^2$;
    $\Delta_t = \frac{\sqrt{u_{t-1}+\epsilon}}{\sqrt{v_t+\epsilon}}\, g_t$;
    $u_t = \rho u_{t-1} + (1-\rho)\Delta_t^2$;
    $\theta_t = \theta_{t-1} - \eta\,\Delta_t$.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        _at_least("lr", lr)
        _fraction("rho", rho, one=True)
        _positive("eps", eps)
        _at_least("weight_decay", weight_decay)
        super().__init__(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)

    def update(self, p, g, state, group):
        rho, eps = group["rho"], group["eps"]
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        v, u = _buffer(state, "square_avg", p), _buffer(state, "acc_delta", p)
        v.mul_(rho).addcmul_(g, g, value=1 - rho)
        delta = u.add(eps).sqrt_().div_(v.add(eps).sqrt_()).mul_(g)
        u.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        p.add_(delta, alpha=-group["lr"])


def _adam_checks(lr: Any, betas: Any, eps: Any, weight_decay: Any) -> None:
    _at_least("lr", lr)
    _betas(betas)
    _positive("eps", eps)
    _at_least("weight_decay", weight_decay)


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015): momentum divided by an RMS, both bias-corrected.

    $g_t \leftarrow g_t + \lambda\theta_{t-1}$ (L2, coupled);
    $m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$;
    $v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$;
    $\hat m_t = m_t/(1-\beta_1^t)$, $\hat v_t = v_t/(1-\beta_2^t)$
    (AMSGrad: $\hat v_t$ from $\max_{s\le t} v_s$);
    $\theta_t = \theta_{t-1} - \eta\,\hat m_t/(\sqrt{\hat v_t}+\epsilon)$.
    """

    decoupled = False  # AdamW sets this: weight decay acts on θ directly, not through g

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        _adam_checks(lr, betas, eps, weight_decay)
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
        )

    def update(self, p, g, state, group):
        (beta1, beta2), lr, t = group["betas"], group["lr"], state["step"]
        if group["weight_decay"]:
            if self.decoupled:
                p.mul_(1 - lr * group["weight_decay"])
            else:
                g = g + group["weight_decay"] * p
        m, v = _buffer(state, "exp_avg", p), _buffer(state, "exp_avg_sq", p)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if group["amsgrad"]:
            v = torch.maximum(
                _buffer(state, "max_exp_avg_sq", p), v, out=state["max_exp_avg_sq"]
            )
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        denom = (v.sqrt() / bias2**0.5).add_(group["eps"])  # sqrt(v̂) + ε
        p.addcdiv_(m, denom, value=-lr / bias1)  # m̂ = m / bias1


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    $\theta_{t-1} \leftarrow (1 - \eta\lambda)\,\theta_{t-1}$, then the Adam step with
    the raw $g_t$.
    """

    decoupled = True

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        _adam_checks(lr, betas, eps, weight_decay)
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
        )


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016): Adam with a Nesterov look-ahead on the momentum.

    Momentum schedule $\mu_t = \beta_1(1 - \tfrac12\, 0.96^{t\psi})$
    ($\psi$ = momentum_decay),
    $\Pi_t = \prod_{s\le t}\mu_s$; $m_t, v_t$ as in Adam,
    $\hat v_t = v_t/(1-\beta_2^t)$;
    $\theta_t = \theta_{t-1} - \eta\left[\frac{(1-\mu_t)\, g_t}{1-\Pi_t}
    + \frac{\mu_{t+1}\, m_t}{1-\Pi_t\mu_{t+1}}\right] / (\sqrt{\hat v_t}+\epsilon)$.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _adam_checks(lr, betas, eps, weight_decay)
        _at_least("momentum_decay", momentum_decay)
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
        )

    def update(self, p, g, state, group):
        (beta1, beta2), lr, t, psi = (
            group["betas"],
            group["lr"],
            state["step"],
            group["momentum_decay"],
        )
        if group["weight_decay"]:
            if group["decoupled_weight_decay"]:
                p.mul_(1 - lr * group["weight_decay"])
            else:
                g = g + group["weight_decay"] * p
        mu = beta1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        state["mu_product"] = state.get("mu_product", 1.0) * mu
        prod = state["mu_product"]
        m, v = _buffer(state, "exp_avg", p), _buffer(state, "exp_avg_sq", p)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = v.div(1 - beta2**t).sqrt_().add_(group["eps"])
        p.addcdiv_(g, denom, value=-lr * (1 - mu) / (1 - prod))
        p.addcdiv_(m, denom, value=-lr * mu_next / (1 - prod * mu_next))


class RAdam(Optimizer):
    r"""RAdam (Liu et al., 2020): Adam whose adaptive step is switched on only once the
    variance of $\hat v_t$ is tractable, and then rectified.

    $\rho_\infty = 2/(1-\beta_2) - 1$,
    $\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)$;
    if $\rho_t > 5$:
    $r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}
    {(\rho_\infty-4)(\rho_\infty-2)\rho_t}}$,
    $\theta_t = \theta_{t-1}
    - \eta\, r_t\, \hat m_t \sqrt{1-\beta_2^t}/(\sqrt{v_t}+\epsilon)$;
    else (the first few steps) $\theta_t = \theta_{t-1} - \eta\,\hat m_t$
    (SGD with momentum).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _adam_checks(lr, betas, eps, weight_decay)
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
        )

    def update(self, p, g, state, group):
        (beta1, beta2), lr, t = group["betas"], group["lr"], state["step"]
        if group["weight_decay"]:
            if group["decoupled_weight_decay"]:
                p.mul_(1 - lr * group["weight_decay"])
            else:
                g = g + group["weight_decay"] * p
        m, v = _buffer(state, "exp_avg", p), _buffer(state, "exp_avg_sq", p)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = m / (1 - beta1**t)
        bias2 = 1 - beta2**t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2**t / bias2
        if rho_t > 5.0:
            rect = (
                (rho_t - 4)
                * (rho_t - 2)
                * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            ) ** 0.5
            adaptive = bias2**0.5 / v.sqrt().add_(group["eps"])
            p.add_(m_hat * lr * adaptive * rect, alpha=-1.0)
        else:
            p.add_(m_hat * lr, alpha=-1.0)


class Lion(Optimizer):
    r"""Lion (Chen et al., 2023, Algorithm 2): the sign of an interpolated momentum.

    $c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$;
    $\theta_t = \theta_{t-1} - \eta\,(\mathrm{sign}(c_t) + \lambda\theta_{t-1})$;
    $m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t$. Every coordinate moves by exactly η
    (plus decay).
    Not in `torch.optim`: checked against the paper's pseudo-code and by hand.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        _at_least("lr", lr)
        _betas(betas)
        _at_least("weight_decay", weight_decay)
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay)

    def update(self, p, g, state, group):
        (beta1, beta2), lr = group["betas"], group["lr"]
        m = _buffer(state, "exp_avg", p)
        c = m.lerp(g, 1 - beta1)  # the interpolation that is *not* stored
        p.mul_(1 - lr * group["weight_decay"])
        p.add_(c.sign_(), alpha=-lr)
        m.lerp_(g, 1 - beta2)


# ------------------------------------------------------------ learning-rate schedules


def _step_count(name: str, value: Any, low: int) -> None:
    """Check an integer count `value >= low` (step sizes, totals)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def step_lr(t: int, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    r"""$\eta_t = \eta_0\,\gamma^{\lfloor t/s\rfloor}$: multiply by γ every `step_size`
    steps."""
    _at_least("t", t)
    _at_least("base_lr", base_lr)
    _step_count("step_size", step_size, 1)
    _at_least("gamma", gamma)
    return base_lr * gamma ** (t // step_size)


def multistep_lr(
    t: int, base_lr: float, milestones: list[int], gamma: float = 0.1
) -> float:
    r"""$\eta_t = \eta_0\,\gamma^{k}$, k = the number of milestones ≤ t."""
    _at_least("t", t)
    _at_least("base_lr", base_lr)
    _at_least("gamma", gamma)
    return base_lr * gamma ** bisect.bisect_right(sorted(milestones), t)


def exponential_lr(t: int, base_lr: float, gamma: float) -> float:
    r"""$\eta_t = \eta_0\,\gamma^t$."""
    _at_least("t", t)
    _at_least("base_lr", base_lr)
    _at_least("gamma", gamma)
    return base_lr * gamma**t


def cosine_lr(t: int, base_lr: float, total: int, min_lr: float = 0.0) -> float:
    r"""$\eta_t = \eta_{min} + \tfrac12(\eta_0-\eta_{min})(1+\cos(\pi t/T))$ for
    0 ≤ t ≤ T (T = `total` ≥ 1)."""
    _at_least("t", t)
    _at_least("base_lr", base_lr)
    _step_count("total", total, 1)
    _at_least("min_lr", min_lr)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t / total))


def _cos_interp(start: float, end: float, frac: float) -> float:
    """From `start` (frac=0) to `end` (frac=1) along half a cosine."""
    return end + 0.5 * (start - end) * (math.cos(math.pi * frac) + 1)


def one_cycle_lr(
    t: int,
    max_lr: float,
    total: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    r"""One-cycle (Smith & Topin, 2019), PyTorch's two-phase cosine form: from
    $\eta_{max}/d$ up to $\eta_{max}$ at step $pT-1$, then down to
    $\eta_{max}/(d\,f)$ at step $T-1$ (T = `total` ≥ 1; t = T, after the last step, is
    allowed, as in torch).
    Where torch divides by zero (a phase of length 0) the phase's end value is used."""
    _at_least("t", t)
    _at_least("max_lr", max_lr)
    _step_count("total", total, 1)
    _fraction("pct_start", pct_start, one=True)
    _positive("div_factor", div_factor)
    _positive("final_div_factor", final_div_factor)
    if t > total:
        raise ValueError(f"t must be <= total = {total}, got {t!r}")
    start = max_lr / div_factor
    peak_step = pct_start * total - 1
    if t <= peak_step:
        return _cos_interp(start, max_lr, t / peak_step if peak_step > 0 else 1.0)
    span = total - 1 - peak_step
    frac = (t - peak_step) / span if span > 0 else 1.0
    return _cos_interp(max_lr, start / final_div_factor, frac)


def warmup_cosine_lr(
    t: int,
    base_lr: float,
    warmup: int,
    total: int,
    start_factor: float = 0.01,
    min_lr: float = 0.0,
) -> float:
    r"""Linear warm-up (Goyal et al., 2017) from $\eta_0 s$ to $\eta_0$ over `warmup`
    steps (0 ≤ warmup < total), then a cosine to `min_lr` at step `total`."""
    _at_least("t", t)
    _at_least("base_lr", base_lr)
    _step_count("total", total, 1)
    _step_count("warmup", warmup, 0)
    if warmup >= total:
        raise ValueError(f"warmup must be < total = {total}, got {warmup!r}")
    _fraction("start_factor", start_factor, one=True)
    _at_least("min_lr", min_lr)
    if t < warmup:
        return base_lr * (start_factor + (1 - start_factor) * t / warmup)
    return cosine_lr(t - warmup, base_lr, total - warmup, min_lr)


class Schedule:
    """Drive any optimiser's learning rate with a function `lr(t)`; call `step()` after
    each update, like `torch.optim.lr_scheduler` (so
    `dlcore.fit(..., scheduler=Schedule(opt, fn))` works). A negative or non-finite
    `lr(t)` is an error."""

    def __init__(self, optimizer: Any, lr_at: Callable[[int], float]) -> None:
        self.optimizer, self.lr_at, self.t = optimizer, lr_at, 0
        self._apply()

    def step(self) -> None:
        self.t += 1
        self._apply()

    def _apply(self) -> None:
        lr = self.lr_at(self.t)
        _at_least(f"the learning rate lr_at({self.t})", lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]


# ------------------------------------------------------------ helpers for the chapter


def trajectory(
    make_optimizer: Callable[[list[Tensor]], Any],
    f: Callable[[Tensor], Tensor],
    start: tuple[float, float],
    steps: int,
) -> tuple[Tensor, Tensor]:
    """Run an optimiser on a function of a 2-vector. f: (2,) -> scalar.

    Returns the path (steps + 1, 2) and the losses (steps + 1,), in float64; stops early
    (repeating the last point) if the iterate becomes non-finite, i.e. the run diverged.
    """
    x = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([x])
    path, losses = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = f(x)
        path.append(x.detach().clone())
        losses.append(loss.detach())
        loss.backward()
        opt.step()
        if not torch.isfinite(x).all():
            break
    else:  # finished without diverging: record the last point too
        path.append(x.detach().clone())
        losses.append(f(x).detach())
    while len(path) < steps + 1:  # diverged: pad, so every run has the same length
        path.append(path[-1])
        losses.append(torch.tensor(float("inf"), dtype=torch.float64))
    return torch.stack(path), torch.stack(losses)


@contextlib.contextmanager
def float64_default() -> Iterator[None]:
    """Make float64 the default dtype inside the block. torch.optim keeps scalar state
    (the step count, NAdam's momentum product) as tensors of the default dtype; float32
    there would round."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def compare_with_torch(
    ours: Callable[[list[Tensor]], Any],
    theirs: Callable[[list[Tensor]], Any],
    steps: int = 50,
    seed: int = 0,
    shapes: tuple[tuple[int, ...], ...] = ((4, 3), (3,), (2, 2, 2)),
) -> list[float]:
    """Run two optimisers from the same float64 initial parameters on the same random
    gradients.

    `ours`/`theirs` build an optimiser from a parameter list. Returns, for every step,
    the largest absolute difference between the two sets of parameters (0.0 means
    bit-for-bit equal).
    """
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    a = [x.clone().requires_grad_() for x in init]
    b = [x.clone().requires_grad_() for x in init]
    with float64_default():
        opt_a, opt_b = ours(a), theirs(b)
        gaps = []
        for _ in range(steps):
            for pa, pb in zip(a, b):
                # θ-dependent gradients (so state and parameters interact) plus noise
                noise = torch.randn(pa.shape, generator=gen, dtype=torch.float64)
                pa.grad = pa.detach() ** 3 - pa.detach() + noise
                pb.grad = pb.detach() ** 3 - pb.detach() + noise
            opt_a.step()
            opt_b.step()
            gaps.append(max((pa - pb).abs().max().item() for pa, pb in zip(a, b)))
    return gaps
