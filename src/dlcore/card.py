"""The result card: a chapter's headline numbers with the device, data and wall time."""

from __future__ import annotations

import time

from . import __version__
from .runtime import device_name, profile

_START = (
    time.perf_counter()
)  # when dlcore was imported: the notebook's start, near enough


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ResultCard:
    """Headline results of a run, shown as a Markdown table in a notebook.

    metrics: name -> value (give units in the name or a string value, e.g. "98.9 %").
    data: which data was used (e.g. `TensorData.source`).
    """

    def __init__(
        self,
        title: str,
        metrics: dict,
        *,
        data: str,
        device: str | None = None,
        training_seconds: float | None = None,
        notes: str | None = None,
    ):
        self.title, self.metrics, self.data, self.notes = (
            title,
            dict(metrics),
            data,
            notes,
        )
        self.device = device or device_name()
        self.training_seconds = training_seconds
        self.wall_seconds = time.perf_counter() - _START

    def rows(self) -> list[tuple[str, str]]:
        rows = [(k, _fmt(v)) for k, v in self.metrics.items()]
        rows += [("data", self.data), ("device", self.device), ("profile", profile())]
        if self.training_seconds is not None:
            rows.append(("training time", f"{self.training_seconds:.1f} s"))
        rows.append(("notebook wall time so far", f"{self.wall_seconds:.1f} s"))
        rows.append(("dlcore", __version__))
        if self.notes:
            rows.append(("notes", self.notes))
        return rows

    def _repr_markdown_(self) -> str:
        lines = [f"**Result card — {self.title}**", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.rows()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(
            [f"Result card — {self.title}"]
            + [f"  {k:<{width}}  {v}" for k, v in self.rows()]
        )
