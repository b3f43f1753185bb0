import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DLCORE_PROFILE", "smoke")
if "DLCORE_DATA" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["DLCORE_DATA"] = str(ROOT.parent / "shared" / "data")


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def real_data_dir() -> Path:
    """The configured data cache, when it holds MNIST (the offline mirror in CI)."""
    from dlcore.data import data_dir

    path = data_dir()
    if not (path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"MNIST is not cached in {path}")
    return path
