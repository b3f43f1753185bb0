"""Train the Vision Transformer of Part IV ch5 longer than the chapter can, once, and
ship its weights.

The same code path as the chapter's live runs: `dlcore.timed.train_classifier`, the
same ViT configuration, optimiser, augmentation and validation split (5,000 images
carved from CIFAR-10's training set with `dlcore.recipes.holdout`, seed 0). Only the
budget differs: `--epochs` passes over the other 45,000 images instead of minutes.
Only validation accuracy is computed here; the chapter scores the test set once.

Writes `vit_cifar10.pt` (float16 weights) and `vit_cifar10.json` (configuration,
recipe, validation curve, sha256, command, device, time) beside this file. Run from
the repository root:

    DLCORE_DATA=../shared/data .venv/bin/python \\
        notebooks/part4_attention/checkpoints/train_vit.py --epochs 18
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

import dlcore
from dlcore import augment as A
from dlcore.models.vit import ViT, ViTConfig
from dlcore.recipes import holdout
from dlcore.timed import adamw, train_classifier

HERE = Path(__file__).resolve().parent
CONFIG = ViTConfig(
    image_size=32, patch_size=4, hidden_dim=128, depth=6, num_heads=4, mlp_dim=256
)
RECIPE = dict(
    batch_size=256,
    lr=1e-3,
    weight_decay=0.05,
    warmup=0.05,
    label_smoothing=0.1,
    augment="CifarAugment(padding=4, flip=True, cutout=0)",
)
N_VAL, SPLIT_SEED = 5_000, 0


def splits() -> tuple[dlcore.TensorData, dlcore.TensorData]:
    return holdout(dlcore.load("cifar10", train=True), N_VAL, seed=SPLIT_SEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=18)
    args = parser.parse_args()
    start = time.perf_counter()
    device = dlcore.setup(seed=0)
    train, val = splits()
    model = ViT(CONFIG)
    run = train_classifier(
        model,
        train,
        val,
        make_optimizer=adamw,
        epochs=args.epochs,
        batch_size=RECIPE["batch_size"],
        warmup=RECIPE["warmup"],
        label_smoothing=RECIPE["label_smoothing"],
        augment=A.CifarAugment(padding=4, flip=True, cutout=0),
        evals=args.epochs,
        device=device,
    )
    out = HERE / "vit_cifar10.pt"
    dlcore.save_checkpoint(out, model.cpu().half())
    record = {
        "file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "bytes": out.stat().st_size,
        "model": "dlcore.models.vit.ViT",
        "config": asdict(CONFIG),
        "recipe": RECIPE
        | dict(epochs=args.epochs, optimizer="AdamW, decay on matrices"),
        "data": f"{train.source}; validation = {N_VAL} training images "
        f"(dlcore.recipes.holdout seed {SPLIT_SEED})",
        "seed": 0,
        "params": sum(p.numel() for p in model.parameters()),
        "curve": {
            "step": [e[0] for e in run.evals],
            "seconds": [round(e[1], 1) for e in run.evals],
            "val_accuracy": [round(e[2], 4) for e in run.evals],
        },
        "val_accuracy_float32": round(run.val_accuracy, 4),
        "training_seconds": round(run.seconds, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "command": " ".join(
            [
                "DLCORE_DATA=../shared/data .venv/bin/python",
                "notebooks/part4_attention/checkpoints/train_vit.py",
                *map(shlex.quote, sys.argv[1:]),
            ]
        ),
        "device": dlcore.device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "dlcore": dlcore.__version__,
        "created": time.strftime("%Y-%m-%d"),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("sha256", "val_accuracy_float32")}))


if __name__ == "__main__":
    main()
