"""One shuffled MNIST training epoch (batch 128): dlcore's in-memory loader vs the tutorial pipeline.

The tutorial pipeline is `torchvision.datasets.MNIST(transform=ToTensor())` + `DataLoader(shuffle=True)`.
Prints one JSON object as its last line: {"ratio": loader_speed / dataloader_speed, ...}.
Needs MNIST in the cache ($DLCORE_DATA). Target: ratio >= 20.
"""

import json
import time

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

import dlcore
from dlcore.data import data_dir

BATCH = 128
REPEATS = 3


def epoch_seconds(loader) -> float:
    start = time.perf_counter()
    images = 0
    for xb, yb in loader:
        images += len(yb)
    assert images == 60000
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    train = dlcore.load("mnist")  # verifies the cached files' checksums
    memory = dlcore.loader(train, BATCH, shuffle=True, device="cpu")
    tutorial_set = torchvision.datasets.MNIST(
        str(data_dir()), train=True, transform=ToTensor()
    )
    tutorial = DataLoader(tutorial_set, batch_size=BATCH, shuffle=True)
    ours = min(epoch_seconds(memory) for _ in range(REPEATS))
    theirs = min(epoch_seconds(tutorial) for _ in range(REPEATS))
    print(
        f"in-memory loader: {ours * 1e3:.0f} ms/epoch; DataLoader + ToTensor: {theirs * 1e3:.0f} ms/epoch"
    )
    print(
        json.dumps(
            {
                "ratio": round(theirs / ours, 1),
                "loader_seconds": round(ours, 4),
                "dataloader_seconds": round(theirs, 3),
                "batch_size": BATCH,
                "device": dlcore.device_name(torch.device("cpu")),
                "target": 20,
            }
        )
    )


if __name__ == "__main__":
    main()
