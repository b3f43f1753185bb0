"""dlcore.recipes: the validation split and the fast MNIST recipe (out of models)."""

import pytest
import torch
from torch import nn

from dlcore import recipes
from dlcore.data import TensorData
from dlcore.models import classic
from dlcore.models.flops import count_macs


def _squares(n: int = 1024, seed: int = 0) -> TensorData:
    """Two classes that differ by where the bright square is."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (torch.rand(n, 1, 28, 28, generator=g) * 60).to(torch.uint8)
    x[y == 0, :, 4:12, 4:12] = 255
    x[y == 1, :, 16:24, 16:24] = 255
    return TensorData(x, y, ["a", "b"], (0.2,), (0.3,), "synthetic")


def test_holdout_is_a_disjoint_reproducible_split_of_the_training_data():
    data = _squares(100)
    data.x[:, 0, 0, 0] = torch.arange(100, dtype=torch.uint8)  # tag every example
    train, val = recipes.holdout(data, 20, seed=3)
    assert (len(train), len(val)) == (80, 20)
    tags_train, tags_val = (
        set(train.x[:, 0, 0, 0].tolist()),
        set(val.x[:, 0, 0, 0].tolist()),
    )
    assert not tags_train & tags_val and tags_train | tags_val == set(range(100))
    assert val.x[:, 0, 0, 0].tolist() != list(range(20))  # random, not the first 20
    again = recipes.holdout(data, 20, seed=3)[1]
    assert torch.equal(again.x, val.x) and torch.equal(again.y, val.y)
    other = recipes.holdout(data, 20, seed=4)[1]
    assert not torch.equal(other.x, val.x)
    assert (val.mean, val.std, val.classes) == (data.mean, data.std, data.classes)
    for i in (train, val):  # labels travel with their images
        assert torch.equal(i.y, data.y[i.x[:, 0, 0, 0].long()])


@pytest.mark.parametrize("n_val", [0, -1, 100, 150, 2.5])
def test_holdout_rejects_an_empty_or_whole_split(n_val):
    with pytest.raises(ValueError, match="n_val must be"):
        recipes.holdout(_squares(100), n_val)


def test_train_fast_mnist_learns_on_a_tiny_synthetic_task():
    """The recipe must separate the two classes, scored on a held-out split."""
    train, val = recipes.holdout(_squares(1024), 256)
    result = recipes.train_fast_mnist(train, val, epochs=1, batch_size=64, max_lr=1e-2)
    assert result["accuracy"] > 0.95
    assert result["seconds"] > 0 and result["cpu_seconds"] > 0
    assert result["macs"] == count_macs(classic.FastMNISTNet()).macs
    assert isinstance(result["model"], classic.FastMNISTNet)
    assert len(result["history"].epochs) == 1 and len(result["history"].steps) == 12


def test_train_fast_mnist_accepts_a_model_and_keeps_its_initialisation():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (512,), generator=g)
    x = (torch.rand(512, 1, 28, 28, generator=g) * 60).to(torch.uint8)
    x[y == 0, :, :, :14] = 200
    data = TensorData(x, y, ["left", "right"], (0.2,), (0.3,), "synthetic")
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    result = recipes.train_fast_mnist(
        data, data, epochs=1, batch_size=64, max_lr=1e-2, model=model
    )
    assert result["model"] is model and result["macs"] == 28 * 28 * 2
    assert result["accuracy"] > 0.95


def test_train_fast_mnist_is_reproducible_for_a_seed():
    train, val = recipes.holdout(_squares(512), 128)
    runs = [
        recipes.train_fast_mnist(train, val, epochs=1, batch_size=64, seed=s)
        for s in (5, 5, 6)
    ]
    assert runs[0]["history"].steps == runs[1]["history"].steps
    assert runs[0]["history"].steps != runs[2]["history"].steps


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_lr=-1e-3), "max_lr"),
        (dict(max_lr=0.0), "max_lr"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(batch_size=4096), "batch_size = 4096 exceeds"),
    ],
)
def test_train_fast_mnist_rejects_bad_hyperparameters_naming_them(kwargs, match):
    data = _squares(256)
    with pytest.raises(ValueError, match=match):
        recipes.train_fast_mnist(data, data, **kwargs)
