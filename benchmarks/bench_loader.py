"""Shuffled MNIST batches of 128: dlcore's in-memory loader vs the tutorial pipeline.

The tutorial pipeline is `torchvision.datasets.MNIST(transform=ToTensor())` +
`DataLoader(shuffle=True)`. Written for a shared virtual machine (the book's has 2 vCPUs
that other jobs use too), where one whole-epoch timing per side can see a different
machine from the next. So the two sides are interleaved at a fine grain: each round
times one whole shuffled epoch of the in-memory loader (469 batches, its shuffle
included) and a block of `BLOCK` batches of the DataLoader (from an iterator that is
re-created when an epoch ends), back to back, in alternating order. The ratio of the two
speeds (images per second) is computed per round; the median over rounds is reported
with its interquartile range and min–max, and each side's wall time beside its CPU time
(`time.process_time`). Rounds continue until `ROUNDS`, or until `TIME_BUDGET` seconds
have passed (at least `MIN_ROUNDS`).

Prints one JSON object as its last line: {"ratio": median loader speed / DataLoader
speed, "ratio_q25", "ratio_q75", "ratio_min", "ratio_max", ...}. Needs MNIST in the
cache ($DLCORE_DATA). Target: ratio >= 20.
"""

import json
import statistics
import time

import torch
import torchvision
from interleave import describe, ratio_stats  # benchmarks/interleave.py
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

import dlcore
from dlcore.data import data_dir

BATCH = 128
BLOCK = 40  # DataLoader batches per timed block
ROUNDS = 40
MIN_ROUNDS = 6
TIME_BUDGET = 60.0  # seconds of timed blocks; keeps a run under ~90 s on a busy machine


class Batches:
    """Endless batches from a loader: a new epoch (and shuffle) starts when one ends."""

    def __init__(self, loader):
        self.loader, self.it = loader, iter(loader)

    def take(self, n: int) -> int:
        images = 0
        for _ in range(n):
            try:
                _, yb = next(self.it)
            except StopIteration:
                self.it = iter(self.loader)
                _, yb = next(self.it)
            images += len(yb)
        return images


def timed(fn) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, images) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    images = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, images


def one_epoch(loader) -> int:
    images = sum(len(yb) for _, yb in loader)
    assert images == 60000
    return images


def main() -> None:
    torch.manual_seed(0)
    train = dlcore.load("mnist")  # verifies the cached files' checksums
    memory = dlcore.loader(train, BATCH, shuffle=True, device="cpu")
    tutorial_set = torchvision.datasets.MNIST(
        str(data_dir()), train=True, transform=ToTensor()
    )
    tutorial = Batches(DataLoader(tutorial_set, batch_size=BATCH, shuffle=True))
    sides = {
        "memory": lambda: one_epoch(memory),
        "tutorial": lambda: tutorial.take(BLOCK),
    }
    for fn in sides.values():
        fn()  # warm-up, not timed
    runs = {name: [] for name in sides}  # (wall, cpu, images) per round
    start = time.perf_counter()
    for r in range(ROUNDS):
        order = ("memory", "tutorial") if r % 2 == 0 else ("tutorial", "memory")
        for name in order:
            runs[name].append(timed(sides[name]))
        if r + 1 >= MIN_ROUNDS and time.perf_counter() - start > TIME_BUDGET:
            break
    speed = {n: [i / w for w, _, i in runs[n]] for n in runs}  # images per wall second
    cpu_speed = {n: [i / c for _, c, i in runs[n]] for n in runs}
    ratios = [m / t for m, t in zip(speed["memory"], speed["tutorial"])]
    cpu_ratios = [m / t for m, t in zip(cpu_speed["memory"], cpu_speed["tutorial"])]
    stats = ratio_stats(ratios, cpu_ratios, digits=1)
    ms_per_epoch = {n: 60000e3 / statistics.median(speed[n]) for n in runs}
    cpu_ms_per_epoch = {n: 60000e3 / statistics.median(cpu_speed[n]) for n in runs}
    print(
        f"in-memory loader: {ms_per_epoch['memory']:.0f} ms/epoch wall, "
        f"{cpu_ms_per_epoch['memory']:.0f} ms CPU; DataLoader + ToTensor: "
        f"{ms_per_epoch['tutorial']:.0f} ms/epoch wall, "
        f"{cpu_ms_per_epoch['tutorial']:.0f} ms CPU (medians; epoch = 60,000 images)"
    )
    print(f"speed ratio over {len(ratios)} rounds: " + describe(stats, digits=1))
    print(
        json.dumps(
            {
                **stats,
                "loader_seconds": round(ms_per_epoch["memory"] / 1e3, 4),
                "loader_cpu_seconds": round(cpu_ms_per_epoch["memory"] / 1e3, 4),
                "dataloader_seconds": round(ms_per_epoch["tutorial"] / 1e3, 3),
                "dataloader_cpu_seconds": round(cpu_ms_per_epoch["tutorial"] / 1e3, 3),
                "dataloader_batches_per_block": BLOCK,
                "batch_size": BATCH,
                "threads": torch.get_num_threads(),
                "device": dlcore.device_name(torch.device("cpu")),
                "target": 20,
            }
        )
    )


if __name__ == "__main__":
    main()
