"""The training loop: it really learns, schedules, clips, resumes; checkpoints
round-trip."""

import pytest
import torch
from torch import nn

import dlcore


def blobs(n: int = 256, seed: int = 0):
    """Two Gaussian blobs in 2-D, labels 0/1: a problem a linear layer can solve."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + 3.0 * (2 * y[:, None] - 1)
    return x, y


def make_run(shuffle=False):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = blobs()
    loader = dlcore.TensorLoader(x, y, batch_size=32, shuffle=shuffle, device="cpu")
    return model, opt, loader


def test_fit_lowers_the_loss_and_learns():
    model, opt, loader = make_run(shuffle=True)
    before = dlcore.evaluate(model, loader)
    history = dlcore.fit(
        model,
        loader,
        epochs=5,
        optimizer=opt,
        val_loader=loader,
        progress=False,
        device=torch.device("cpu"),
    )
    after = dlcore.evaluate(model, loader)
    assert after["loss"] < 0.2 * before["loss"]
    assert after["accuracy"] > 0.97
    assert history["epoch"] == [1, 2, 3, 4, 5]
    assert len(history.steps) == 5 * len(loader)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history.last("val_accuracy") == pytest.approx(after["accuracy"])
    assert history.seconds > 0 and {"lr", "train_accuracy", "val_loss"} <= set(
        history.keys()
    )


def test_scheduler_steps_per_step_and_per_epoch():
    model, opt, loader = make_run()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    dlcore.fit(
        model,
        loader,
        epochs=2,
        optimizer=opt,
        scheduler=sched,
        scheduler_per="epoch",
        progress=False,
    )
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)
    model, opt, loader = make_run()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    history = dlcore.fit(
        model, loader, epochs=1, optimizer=opt, scheduler=sched, progress=False
    )
    assert history.last("lr") == pytest.approx(0.1 / (1 + len(loader)))


def test_gradient_clipping_bounds_the_update():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = 1e4 * torch.ones(4, 2)
    y = 1 - model(x).argmax(1)  # confidently wrong on huge inputs: a huge gradient
    loader = dlcore.TensorLoader(x, y, batch_size=4, device="cpu")
    dlcore.fit(
        model, loader, epochs=1, optimizer=opt, clip_grad_norm=0.5, progress=False
    )
    step = torch.cat(
        [(p.detach() - s).flatten() for p, s in zip(model.parameters(), start)]
    )
    assert step.norm().item() == pytest.approx(
        0.5, rel=1e-4
    )  # lr 1 × gradient of norm 0.5


def test_checkpoint_round_trip_and_resume_equals_uninterrupted(tmp_path):
    model, opt, loader = make_run()
    straight = dlcore.fit(model, loader, epochs=2, optimizer=opt, progress=False)

    model, opt, loader = make_run()
    first = dlcore.fit(model, loader, epochs=1, optimizer=opt, progress=False)
    path = dlcore.save_checkpoint(
        tmp_path / "ckpt.pt", model, opt, history=first, note="half-way"
    )
    assert not list(tmp_path.glob("*.part"))
    fresh, fresh_opt, _ = make_run()
    fresh.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Linear) else None)
    history, extra = dlcore.load_checkpoint(path, fresh, fresh_opt)
    assert extra == {"note": "half-way"}
    assert history.epochs == first.epochs
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)
    resumed = dlcore.fit(
        fresh, loader, epochs=1, optimizer=fresh_opt, history=history, progress=False
    )
    assert resumed["epoch"] == [1, 2]
    assert resumed.steps == pytest.approx(
        straight.steps
    )  # momentum buffers were restored too


def test_checkpoint_is_loaded_with_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": {"f": print}}, path)  # a pickled callable
    with pytest.raises(Exception, match="[Ww]eights only"):
        dlcore.load_checkpoint(path, nn.Linear(1, 1))
