"""fit, evaluate, accuracy and the checkpoints refuse bad arguments with errors that
name them, instead of training nothing or returning a silently wrong number."""

import pytest
import torch
from torch import nn

import dlcore
from dlcore import train


def run_parts():
    torch.manual_seed(0)
    model = nn.Linear(2, 3)
    x, y = torch.randn(8, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loader = dlcore.TensorLoader(x, y, batch_size=4, device="cpu")
    return model, torch.optim.SGD(model.parameters(), lr=0.1), loader


def fit(model, optimizer, loader, **kwargs):
    kwargs = {"epochs": 1, "progress": False, "device": torch.device("cpu"), **kwargs}
    return dlcore.fit(model, loader, optimizer=optimizer, **kwargs)


# ---------------------------------------------------------------- accuracy


def test_accuracy_counts_top1_hits_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 2.0]])
    assert dlcore.accuracy(logits, torch.tensor([0, 2, 0])).item() == pytest.approx(
        2 / 3
    )
    # one example, one class: always right; float64 logits; huge |logits|
    assert dlcore.accuracy(torch.zeros(1, 1), torch.tensor([0])).item() == 1.0
    big = torch.tensor([[1e300, -1e300], [-1e300, 1e300]], dtype=torch.float64)
    assert dlcore.accuracy(big, torch.tensor([0, 0])).item() == 0.5
    # (B, T, K) logits with (B, T) labels
    seq = torch.zeros(2, 3, 4)
    seq[..., 1] = 1.0
    assert dlcore.accuracy(seq, torch.ones(2, 3, dtype=torch.long)).item() == 1.0


def test_accuracy_refuses_targets_that_would_broadcast():
    logits = torch.randn(4, 3)
    y = torch.tensor([[0], [1], [2], [0]])  # (B, 1): (B,) == (B, 1) would be (B, B)
    with pytest.raises(ValueError, match=r"logits \(4, 3\) and y \(4, 1\)"):
        dlcore.accuracy(logits, y)
    with pytest.raises(ValueError, match=r"y \(3,\)"):
        dlcore.accuracy(logits, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="logits"):
        dlcore.accuracy(torch.tensor(1.0), torch.tensor(0))


@pytest.mark.parametrize("bad", [-1, 3, 100])
def test_accuracy_refuses_labels_out_of_range(bad):
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match=rf"0\.\.2 for 3 logits.*{bad}"):
        dlcore.accuracy(logits, torch.tensor([0, 1, bad, 2]))


def test_accuracy_refuses_float_or_one_hot_labels():
    with pytest.raises(TypeError, match="integer class indices"):
        dlcore.accuracy(torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match=r"y \(4, 3\)"):
        dlcore.accuracy(torch.randn(4, 3), torch.eye(3)[[0, 1, 2, 0]])


def test_fit_reports_a_bad_label_through_its_accuracy_metric():
    model, opt, _ = run_parts()
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    loader = dlcore.TensorLoader(x, y, batch_size=4, device="cpu")
    mse = lambda out, y: out.float().pow(2).mean()  # a loss that ignores y
    fit(model, opt, loader, loss_fn=mse)  # fine
    loader = dlcore.TensorLoader(x, torch.tensor([0, 1, -1, 0]), 4, device="cpu")
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        fit(model, opt, loader, loss_fn=mse)


# ---------------------------------------------------------------- fit's arguments


@pytest.mark.parametrize("per", ["batch", "Step", "", None])
def test_scheduler_per_outside_step_and_epoch(per):
    model, opt, loader = run_parts()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    with pytest.raises(ValueError, match=f'"step" or "epoch", got {per!r}'):
        fit(model, opt, loader, scheduler=sched, scheduler_per=per)
    assert opt.param_groups[0]["lr"] == 0.1  # checked before anything ran


def test_a_tensor_or_generator_where_the_model_goes():
    model, opt, loader = run_parts()
    with pytest.raises(TypeError, match="torch.nn.Module, got Tensor .pass the"):
        fit(model.weight.detach(), opt, loader)
    with pytest.raises(TypeError, match="got generator .pass the module"):
        fit(model.parameters(), opt, loader)
    with pytest.raises(TypeError, match="got list .pass the module"):
        fit(list(model.parameters()), opt, loader)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        dlcore.evaluate(model.weight, loader)


def test_parameters_where_the_optimizer_goes():
    model, _, loader = run_parts()
    for bad in (model.parameters(), list(model.parameters()), model.weight):
        with pytest.raises(TypeError, match=r"optimizer must be .*torch.optim.SGD"):
            fit(model, bad, loader)
    with pytest.raises(TypeError, match="optimizer must be"):
        fit(model, None, loader)


def test_an_optimizer_of_another_model_would_train_nothing():
    model, _, loader = run_parts()
    other = torch.optim.SGD(nn.Linear(2, 3).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="none of the model's parameters"):
        fit(model, other, loader)
    part = torch.optim.SGD([model.bias], lr=0.1)  # a part of the model is fine
    before = model.weight.detach().clone()
    fit(model, part, loader)
    assert torch.equal(model.weight, before)


def test_a_from_scratch_optimizer_is_accepted():
    from dlcore.scratch import optim as so

    model, _, loader = run_parts()
    before = model.weight.detach().clone()
    fit(model, so.SGD(model.parameters(), lr=0.1), loader)
    assert not torch.equal(model.weight, before)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"epochs": -1}, "epochs must be a non-negative int, got -1"),
        ({"epochs": 1.5}, "epochs must be a non-negative int, got 1.5"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm must be positive, got 0.0"),
        ({"clip_grad_norm": -1}, "clip_grad_norm must be positive, got -1"),
    ],
)
def test_epochs_and_clip_grad_norm(kwargs, words):
    model, opt, loader = run_parts()
    with pytest.raises(ValueError, match=words):
        fit(model, opt, loader, **kwargs)


def test_zero_epochs_returns_the_history_unchanged():
    model, opt, loader = run_parts()
    before = model.weight.detach().clone()
    assert fit(model, opt, loader, epochs=0).epochs == []
    assert torch.equal(model.weight, before)


def test_an_empty_train_loader_is_an_error_not_a_division_by_zero():
    model, opt, _ = run_parts()
    with pytest.raises(ValueError, match="train_loader yielded no batches"):
        fit(model, opt, [])
    drop = dlcore.TensorLoader(
        torch.randn(3, 2), torch.zeros(3, dtype=torch.long), 4, drop_last=True
    )
    with pytest.raises(ValueError, match="no batches"):
        fit(model, opt, drop)


def test_evaluate_a_model_without_parameters():
    loader = dlcore.TensorLoader(torch.eye(3), torch.arange(3), 3, device="cpu")
    assert dlcore.evaluate(nn.Identity(), loader)["accuracy"] == 1.0


def test_checkpoints_need_a_module(tmp_path):
    model, _, _ = run_parts()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        dlcore.save_checkpoint(tmp_path / "c.pt", model.state_dict())
    path = dlcore.save_checkpoint(tmp_path / "c.pt", model)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        dlcore.load_checkpoint(path, model.parameters())
    assert train._is_params(model.parameters()) and not train._is_params(model)
