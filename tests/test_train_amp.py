"""The mixed-precision branch of `fit` and `evaluate`, run on the CPU.

`fit` asks `dlcore.runtime.amp_dtype` which dtype to autocast to (None off CUDA). Here
it is told bf16 or fp16 on the CPU instead, so the same code path runs: autocast on the
CPU with that dtype and, for fp16, a real `torch.amp.GradScaler` (recorded by a
subclass).
What is checked is what fit does with them: outputs in the low dtype, float32 master
weights, the loss scaled before backward, gradients unscaled before clipping, steps
with inf gradients skipped through the scaler."""

import pytest
import torch
from torch import nn

import dlcore
from dlcore import train

CPU = torch.device("cpu")


@pytest.fixture
def amp_as(monkeypatch):
    """Make fit/evaluate autocast to `dtype` on this device (CPU)."""

    def use(dtype):
        monkeypatch.setattr(train, "amp_dtype", lambda dev: dtype)

    return use


@pytest.fixture
def scalers(monkeypatch):
    """Every GradScaler fit creates, recording its calls; init_scale settable."""
    made, options = [], {}

    class Recording(torch.amp.GradScaler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, **options})
            self.calls = []
            made.append(self)

        def scale(self, outputs):
            self.calls.append("scale")
            return super().scale(outputs)

        def unscale_(self, optimizer):
            self.calls.append("unscale_")
            return super().unscale_(optimizer)

        def step(self, optimizer, *args, **kwargs):
            self.calls.append("step")
            return super().step(optimizer, *args, **kwargs)

        def update(self, new_scale=None):
            self.calls.append("update")
            return super().update(new_scale)

    monkeypatch.setattr(torch.amp, "GradScaler", Recording)
    return made, options


def blobs(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    return torch.randn(n, 2, generator=g) + 3.0 * (2 * y[:, None] - 1), y


def make_run():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def output_dtypes(model):
    seen = []
    model[-1].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


def test_bf16_autocast_in_fit_and_evaluate(amp_as, scalers):
    amp_as(torch.bfloat16)
    made, _ = scalers
    x, y = blobs()
    loader = dlcore.TensorLoader(x, y, batch_size=16, device="cpu")
    model, opt = make_run()
    seen = output_dtypes(model)
    history = dlcore.fit(
        model, loader, epochs=2, optimizer=opt, val_loader=loader, progress=False
    )
    assert seen and set(seen) == {torch.bfloat16}  # training and evaluation steps
    assert len(seen) == 2 * 2 * len(loader)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights
    assert len(made) == 1 and not made[0].is_enabled()  # bf16 needs no loss scaling
    # the same run in float32: the bf16 losses agree to bf16 precision (8 bits)
    reference, opt32 = make_run()
    seen32 = output_dtypes(reference)
    exact = dlcore.fit(
        reference, loader, epochs=2, optimizer=opt32, amp=False, progress=False
    )
    assert set(seen32) == {torch.float32}
    assert history.steps == pytest.approx(exact.steps, rel=0.05, abs=1e-3)
    assert history.steps != exact.steps  # bf16 really ran: not bit-identical
    scores = dlcore.evaluate(model, loader)  # autocast there too, result in float
    assert seen[-1] == torch.bfloat16 and isinstance(scores["loss"], float)


def test_amp_false_turns_both_autocast_and_the_scaler_off(amp_as, scalers):
    amp_as(torch.float16)
    made, _ = scalers
    x, y = blobs(16)
    model, opt = make_run()
    seen = output_dtypes(model)
    loader = dlcore.TensorLoader(x, y, batch_size=16, device="cpu")
    dlcore.fit(model, loader, epochs=1, optimizer=opt, amp=False, progress=False)
    assert seen == [torch.float32] and not made[0].is_enabled()


def test_fp16_scales_the_loss_and_unscales_before_clipping(amp_as, scalers):
    amp_as(torch.float16)
    made, options = scalers
    options["init_scale"] = 2.0**8  # small enough that fp16 gradients stay finite
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = 10 * torch.ones(4, 2)
    y = 1 - model(x).argmax(1)  # confidently wrong: a gradient of norm > 0.5
    loader = dlcore.TensorLoader(x, y, batch_size=4, device="cpu")
    seen = []
    model.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    dlcore.fit(
        model, loader, epochs=1, optimizer=opt, clip_grad_norm=0.5, progress=False
    )
    scaler = made[0]
    assert seen == [torch.float16] and scaler.is_enabled()
    assert scaler.calls == ["scale", "unscale_", "step", "update"]
    assert scaler.get_scale() == 2.0**8  # finite gradients: the scale is kept
    step = torch.cat(
        [(p.detach() - s).flatten() for p, s in zip(model.parameters(), start)]
    )
    # clipped after unscaling: lr 1 × norm 0.5. Clipping the scaled gradient instead
    # would give 0.5 / 256; not unscaling at all, 0.5 × 256.
    assert step.norm().item() == pytest.approx(0.5, rel=1e-3)


def test_fp16_overflow_skips_the_step_and_halves_the_scale(amp_as, scalers):
    amp_as(torch.float16)
    made, _ = scalers  # default init_scale 2**16
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = 1e4 * torch.ones(4, 2)
    y = 1 - model(x).argmax(1)
    loader = dlcore.TensorLoader(x, y, batch_size=4, device="cpu")
    history = dlcore.fit(model, loader, epochs=1, optimizer=opt, progress=False)
    scaler = made[0]
    # no clipping: step unscales by itself (and finds the infs)
    assert scaler.calls == ["scale", "step", "unscale_", "update"]
    assert scaler.get_scale() == 2.0**15  # inf gradients found: scale halved
    for p, s in zip(model.parameters(), start):  # and the step skipped
        assert torch.equal(p.detach(), s)
    assert torch.isfinite(torch.tensor(history.steps)).all()  # the loss itself is fine
