import pytest
import torch

import dlcore
from dlcore import runtime


def test_profile_defaults_to_full(monkeypatch):
    monkeypatch.delenv("DLCORE_PROFILE", raising=False)
    assert dlcore.profile() == "full"
    assert dlcore.budget(smoke=1, full=10) == 10


def test_smoke_profile_picks_smoke_budget(monkeypatch):
    monkeypatch.setenv("DLCORE_PROFILE", "Smoke")
    assert dlcore.profile() == "smoke"
    assert dlcore.budget(smoke=1, full=10) == 1


def test_bad_profile_names_the_allowed_ones(monkeypatch):
    monkeypatch.setenv("DLCORE_PROFILE", "fast")
    with pytest.raises(ValueError, match="'fast'.*smoke, full"):
        dlcore.profile()


def test_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.device().type == "cpu"


def test_seed_everything_repeats_random_draws():
    dlcore.seed_everything(3)
    first = torch.randn(5)
    dlcore.seed_everything(3)
    torch.testing.assert_close(torch.randn(5), first)


def test_amp_dtype_only_on_cuda():
    assert runtime.amp_dtype(torch.device("cpu")) is None
