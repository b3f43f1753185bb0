"""dlcore: the small library behind the executable deep-learning book.

Public API (stable within a minor version):
  runtime: profile, budget, device, device_name, seed_everything, setup
  data:    load, loader, TensorLoader, TensorData, Corpus, TextData, data_dir,
           DataUnavailableError, ChecksumError
  train:   fit, evaluate, accuracy, progress, History, save_checkpoint, load_checkpoint
  viz:     plot_history, show_images
  card:    ResultCard
  source:  show_source (print dlcore code in a chapter; the stamp records it)
  exercises.check (auto-checked exercises)
  scratch.* (the from-scratch code of the chapters)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dlcore")  # one source of truth: pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

from .card import ResultCard  # noqa: E402
from .data import (
    ChecksumError,
    Corpus,
    DataUnavailableError,
    TensorData,
    TensorLoader,  # noqa: E402
    TextData,
    data_dir,
    load,
    loader,
)
from .runtime import budget, device, device_name, profile, seed_everything, setup  # noqa: E402
from .source import show_source  # noqa: E402
from .train import (
    History,
    accuracy,
    evaluate,
    fit,
    load_checkpoint,
    progress,
    save_checkpoint,
)  # noqa: E402
from .viz import plot_history, show_images  # noqa: E402

__all__ = [
    "budget",
    "device",
    "device_name",
    "profile",
    "seed_everything",
    "setup",
    "ChecksumError",
    "DataUnavailableError",
    "TensorData",
    "TensorLoader",
    "Corpus",
    "TextData",
    "data_dir",
    "load",
    "loader",
    "History",
    "accuracy",
    "evaluate",
    "fit",
    "progress",
    "load_checkpoint",
    "save_checkpoint",
    "plot_history",
    "show_images",
    "ResultCard",
    "show_source",
]
from . import exercises  # noqa: E402,F401
