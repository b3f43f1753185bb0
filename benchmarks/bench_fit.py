"""dlcore.fit vs a hand-written PyTorch loop: same model, data, steps and seed.

Prints one JSON object as its last line: {"ratio": dlcore_throughput / bare_throughput, ...}.
Runs alternate (bare, fit, bare, fit, ...) so both see the same machine state; each side's
throughput is taken from its fastest run (as `timeit` does: other processes only ever add time,
so the minimum is the least noisy estimate on a shared machine). Target: ratio >= 0.97.
"""

import json
import time

import torch
import torch.nn.functional as F
from torch import nn

import dlcore

STEPS = 300
BATCH = 128
ROUNDS = 7


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


def bare_loop(model, loader, optimizer) -> float:
    start = time.perf_counter()
    model.train()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def dlcore_loop(model, loader, optimizer) -> float:
    start = time.perf_counter()
    dlcore.fit(model, loader, epochs=1, optimizer=optimizer, device=torch.device("cpu"))
    return time.perf_counter() - start


def main() -> None:
    train = dlcore.load("mnist").subset(STEPS * BATCH)
    times = {"bare": [], "dlcore": []}
    for _ in range(ROUNDS):
        for name, loop in (("bare", bare_loop), ("dlcore", dlcore_loop)):
            model = make_model()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            torch.manual_seed(1)  # the same shuffles for both loops
            loader = dlcore.loader(train, BATCH, shuffle=True, device="cpu")
            times[name].append(loop(model, loader, optimizer))
    bare = STEPS * BATCH / min(times["bare"])
    ours = STEPS * BATCH / min(times["dlcore"])
    print(
        f"bare loop {bare:.0f} images/s, dlcore.fit {ours:.0f} images/s (best of {ROUNDS} runs each)"
    )
    print(
        json.dumps(
            {
                "ratio": round(ours / bare, 4),
                "dlcore_images_per_s": round(ours),
                "bare_images_per_s": round(bare),
                "steps": STEPS,
                "batch_size": BATCH,
                "device": dlcore.device_name(torch.device("cpu")),
                "target": 0.97,
            }
        )
    )


if __name__ == "__main__":
    main()
