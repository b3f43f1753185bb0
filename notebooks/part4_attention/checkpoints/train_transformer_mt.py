"""Train the English → Chinese Transformer of Part IV ch3 for longer than the chapter
can, once, and ship it.

The same code path as the chapter's live run (`dlcore.translate.train_transformer`,
same configuration, same seed, same data): the chapter trains the first epochs live and
loads this checkpoint for the rest. The epoch kept is the one of lowest *validation*
loss (the book's validation pairs); the test pairs are not touched here. Outputs, next
to this file:

- `transformer_cmn_eng.pt`   the kept weights in float16 (`dlcore.save_checkpoint`)
- `transformer_cmn_eng.json` how it was made: command, configuration, per-epoch curve,
                             validation BLEU of the kept weights, device, time, sha256

Run from the repository root (38 min on 2 shared, busy CPU cores; minutes on a GPU):

    DLCORE_DATA=../shared/data .venv/bin/python \
        notebooks/part4_attention/checkpoints/train_transformer_mt.py
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
from dlcore import metrics
from dlcore.data.translation import cmn_eng_split, pairs_digest
from dlcore.translate import MTData, train_transformer, translate

HERE = Path(__file__).resolve().parent
# the chapter's configuration (must match 03_transformer.ipynb's set-up cell)
ARCH = dict(
    d_model=256, num_heads=4, enc_layers=3, dec_layers=3, d_ff=1024, dropout=0.1
)
RECIPE = dict(batch_size=128, peak_lr=1e-3, warmup_steps=400, smoothing=0.1, clip=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "transformer_cmn_eng.pt")
    parser.add_argument("--limit", type=int, default=0, help="first N pairs (dry run)")
    args = parser.parse_args()

    start = time.perf_counter()
    device = dlcore.setup(seed=args.seed)
    parts = cmn_eng_split()  # the recorded split, or SplitChangedError
    train_pairs, val_pairs = parts["train"], parts["val"]
    if args.limit:
        train_pairs, val_pairs = train_pairs[: args.limit], val_pairs[: args.limit]
    data = MTData.build(train_pairs)
    config = data.config(**ARCH)
    refs = [zh for _, zh in val_pairs]
    curve = []

    def log(epoch, model, history):
        record = dict(history.epochs[-1])
        record["val_bleu_greedy"] = metrics.bleu(
            translate(model, data, val_pairs), refs
        )
        curve.append(record)
        print(f"epoch {epoch}: {json.dumps(record)}", flush=True)

    model, history, kept = train_transformer(
        config,
        data,
        train_pairs,
        val_pairs,
        epochs=args.epochs,
        seed=args.seed,
        device=device,
        on_epoch=log,
        **RECIPE,
    )
    model = model.cpu().half()  # float16 halves the file; the chapter loads as float32
    dlcore.save_checkpoint(args.out, model, history=history, kept_epoch=kept)
    model = model.float()
    bleu = metrics.bleu(translate(model, data, val_pairs), refs)
    wall = time.perf_counter() - start
    record = {
        "file": args.out.name,
        "sha256": hashlib.sha256(args.out.read_bytes()).hexdigest(),
        "bytes": args.out.stat().st_size,
        "command": " ".join(
            [
                "DLCORE_DATA=../shared/data .venv/bin/python",
                "notebooks/part4_attention/checkpoints/train_transformer_mt.py",
                *map(shlex.quote, sys.argv[1:]),
            ]
        ),
        "model": "dlcore.models.transformer.TransformerSeq2Seq",
        "config": asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_sha256": data.digest(),
        "train_pairs": len(train_pairs),
        "train_sha256": pairs_digest(train_pairs),
        "val_pairs": len(val_pairs),
        "recipe": {
            **RECIPE,
            "epochs": args.epochs,
            "seed": args.seed,
            "optimizer": "AdamW(betas=(0.9, 0.98), weight_decay=0.01)",
            "schedule": "warmup_inverse_sqrt",
        },
        "kept_epoch": kept,
        "curve": curve,
        "val_bleu_greedy_float16": round(bleu, 2),
        "training_seconds": round(history.seconds, 1),
        "wall_seconds": round(wall, 1),
        "device": dlcore.device_name(device),
        "torch": torch.__version__,
        "dlcore": dlcore.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%d"),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("sha256", "kept_epoch", "wall_seconds")}))


if __name__ == "__main__":
    main()
