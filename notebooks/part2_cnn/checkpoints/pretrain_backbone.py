"""Pretrain the backbone of the transfer-learning chapter, once, and ship it.

A small CIFAR ResNet (`dlcore.models.resnet.resnet(8, width=16)`, 78 k parameters) is
trained on the six *animal* classes of CIFAR-10 (bird, cat, deer, dog, frog, horse;
30 000 training images), for a fixed number of epochs with a fixed schedule: nothing is
selected on any held-out data (no early stopping, no "best" epoch). The per-epoch curve
that `fit` records as `val_*` is measured on the animal *test* images, and the last
epoch's value is the recorded test accuracy. The chapter `06_transfer_learning.ipynb`
then transfers the network to the four *vehicle* classes, which this script never sees.
Outputs, next to this file:

- `resnet_cifar_animals.pt`   the checkpoint (`dlcore.save_checkpoint`, weights only)
- `resnet_cifar_animals.json` how it was made: command, data, epochs, accuracy, sha256

Run from the repository root (about 5 min on 2 CPU cores; seconds on a GPU):

    DLCORE_DATA=../shared/data .venv/bin/python \
        notebooks/part2_cnn/checkpoints/pretrain_backbone.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import dlcore
from dlcore.augment import CifarAugment
from dlcore.models.resnet import resnet
from dlcore.transfer import select_classes, take

HERE = Path(__file__).resolve().parent
ANIMALS = ["bird", "cat", "deer", "dog", "frog", "horse"]
ARCH = {"depth": 8, "width": 16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--lr", type=float, default=0.2, help="peak SGD learning rate (one-cycle)"
    )
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "resnet_cifar_animals.pt")
    parser.add_argument(
        "--limit",
        type=int,
        default=0,
        help="use only the first N images of each split (a dry run)",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    device = dlcore.setup(seed=args.seed)
    train, test = (
        select_classes(dlcore.load("cifar10", train=t), ANIMALS) for t in (True, False)
    )
    if args.limit:
        keep = (
            torch.randperm(len(train))[: args.limit],
            torch.randperm(len(test))[: args.limit],
        )
        train, test = take(train, keep[0]), take(test, keep[1])
    print(
        f"data: {train.source}; {len(train)} train / {len(test)} test images "
        f"of {ANIMALS}"
    )

    model = resnet(ARCH["depth"], width=ARCH["width"], num_classes=len(ANIMALS))
    train_loader = dlcore.loader(
        train,
        args.batch,
        shuffle=True,
        device=device,
        drop_last=True,
        augment=CifarAugment(padding=4, flip=True, cutout=0),
    )
    test_loader = dlcore.loader(test, 500, device=device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=args.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=args.lr,
        epochs=args.epochs,
        steps_per_epoch=len(train_loader),
        pct_start=0.25,
    )
    history = dlcore.fit(
        model,
        train_loader,
        epochs=args.epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=lambda out, y: F.cross_entropy(out, y, label_smoothing=0.1),
        val_loader=test_loader,  # a record of the run only: nothing is chosen on it
        device=device,
    )
    test_accuracy = history.last("val_accuracy")

    model.cpu()
    dlcore.save_checkpoint(
        args.out,
        model,
        history=history,
        arch=ARCH,
        classes=ANIMALS,
        test_accuracy=test_accuracy,
        epochs=args.epochs,
    )
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    wall = time.perf_counter() - start
    record = {
        "file": args.out.name,
        "sha256": digest,
        "bytes": args.out.stat().st_size,
        "command": " ".join(
            [
                "DLCORE_DATA=../shared/data .venv/bin/python",
                "notebooks/part2_cnn/checkpoints/pretrain_backbone.py",
                *map(shlex.quote, sys.argv[1:]),
            ]
        ),
        "model": (
            f"dlcore.models.resnet.resnet({ARCH['depth']}, width={ARCH['width']}, "
            f"num_classes={len(ANIMALS)})"
        ),
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"train": train.source, "test": test.source},
        "classes": ANIMALS,
        "train_images": len(train),
        "test_images": len(test),
        "epochs": args.epochs,
        "batch_size": args.batch,
        "optimizer": (
            f"SGD(momentum=0.9, nesterov, weight_decay={args.weight_decay}), "
            f"one-cycle peak lr {args.lr}"
        ),
        "augmentation": (
            "random crop (pad 4, reflect) + horizontal flip; label smoothing 0.1"
        ),
        "train_accuracy_last_epoch": round(history.last("train_accuracy"), 4),
        "test_accuracy": round(test_accuracy, 4),
        "training_seconds": round(history.seconds, 1),
        "wall_seconds": round(wall, 1),
        "device": dlcore.device_name(device),
        "torch": torch.__version__,
        "dlcore": dlcore.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%d"),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
