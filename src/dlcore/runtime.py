"""Where the code runs and how much it does: device, seed, profile, budgets."""

from __future__ import annotations

import os
import platform
import random
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("smoke", "full")
T = TypeVar("T")


def profile() -> str:
    """The run profile from `DLCORE_PROFILE`: "smoke" (CI: tiny) or "full" (default)."""
    value = os.environ.get("DLCORE_PROFILE", "full").strip().lower() or "full"
    if value not in PROFILES:
        raise ValueError(
            f"DLCORE_PROFILE={value!r} is not a profile; allowed: {', '.join(PROFILES)}"
        )
    return value


def budget(*, smoke: T, full: T) -> T:
    """Pick a per-profile value, e.g. `epochs = budget(smoke=1, full=10)`."""
    return smoke if profile() == "smoke" else full


def device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(dev: torch.device | None = None) -> str:
    """A human description, e.g. "NVIDIA H100 (cuda)" or "CPU x86_64, 2 threads"."""
    dev = dev or device()
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (cuda)"
    if dev.type == "mps":
        return "Apple GPU (mps)"
    return f"CPU {platform.machine()}, {torch.get_num_threads()} threads"


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def amp_dtype(dev: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for `dev`: bf16 where CUDA supports it, else fp16;
    None off CUDA."""
    if dev.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def setup(seed: int = 0) -> torch.device:
    """A chapter's first call: seed everything, pick the device, print one line."""
    from . import __version__

    seed_everything(seed)
    dev = device()
    print(
        f"dlcore {__version__} · torch {torch.__version__} · profile {profile()} · "
        f"device {device_name(dev)} · seed {seed}"
    )
    return dev
