"""Train the GPTs of Part IV ch4 that the chapter cannot train live, once, and ship
what they measured.

The same code path as the chapter's live run (`dlcore.charlm.train_gpt`, same data,
same splits, same seeds). Three stages, each writing its results next to this file:

- `ablation`  nanoGPT's CPU configuration (4 layers, 4 heads, width 128, context 64,
              batch 12, 2,000 iterations), from the 2017 block to the modern one, one
              change at a time, seeds 0, 1, 2: validation loss -> `gpt_ablation.json`
- `scaling`   the modern block at five widths, all trained on the same 384 k tokens
              (500 iterations of 12 x 64), seed 0: validation loss against
              non-embedding parameters -> `gpt_scaling.json`
- `long`      the modern GPT of the ablation trained 2.5 times longer (5,000
              iterations), seed 0: weights in float16 -> `gpt_long.pt`, its record
              -> `gpt_long.json`

Only validation loss is computed here; the chapter evaluates test loss once, on the
models it reports. Runs go to worker processes with one thread each (`--jobs`), and
every finished run is appended to `<stage>.jsonl` first, so an interrupted stage
resumes where it stopped. Run from the repository root:

    DLCORE_DATA=../shared/data .venv/bin/python \\
        notebooks/part4_attention/checkpoints/train_gpt.py ablation --jobs 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import platform
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

import dlcore
from dlcore.charlm import CharData, train_gpt
from dlcore.models.gpt import GPTConfig

HERE = Path(__file__).resolve().parent
# nanoGPT's README, "I'm on a macbook": the configuration its 1.88 comes from
NANO = dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
LOOP = dict(iters=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup=100)
SEEDS = (0, 1, 2)
# one change at a time, cumulative: each row is the row above plus one modern part
STEPS = [
    ("2017 block (LayerNorm, learned positions, GELU)", {}),
    ("+ RMSNorm", dict(norm="rms")),
    ("+ RoPE", dict(position="rope")),
    ("+ SwiGLU", dict(mlp="swiglu")),
    ("+ grouped-query attention (2 kv heads)", dict(n_kv_head=2)),
    ("+ weight tying", dict(tie_weights=True)),
]
WIDTHS = (32, 64, 96, 128, 192)  # 4 heads each: head sizes 8 ... 48
SCALING_LOOP = dict(iters=500, batch_size=12, lr=1e-3, min_lr=1e-4, warmup=50)
LONG_LOOP = dict(iters=5000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup=100)


def ablation_configs(vocab: int) -> list[tuple[str, GPTConfig]]:
    cfg, out = GPTConfig(vocab_size=vocab, **NANO), []
    for name, change in STEPS:
        cfg = replace(cfg, **change)
        out.append((name, cfg))
    return out


def scaling_configs(vocab: int) -> list[tuple[str, GPTConfig]]:
    base = GPTConfig(vocab_size=vocab, **NANO).modern()
    return [(f"width {w}", replace(base, n_embd=w)) for w in WIDTHS]


def _run(job: dict) -> dict:
    """One training run in a worker (one thread): the record of the run."""
    torch.set_num_threads(1)
    data = CharData.build(dlcore.load("tinyshakespeare").text)
    cfg = GPTConfig(**job["config"])
    model, log = train_gpt(
        cfg, data, seed=job["seed"], device="cpu", show_progress=False, **job["loop"]
    )
    return {
        **job,
        "val_loss": round(log.val[-1], 4),
        "curve": {"steps": log.steps, "val": [round(v, 4) for v in log.val]},
        "non_embedding_params": model.num_params(),
        "params": model.num_params(non_embedding=False),
        "training_seconds": round(log.seconds, 1),
        "tokens": log.tokens,
    }


def _environment() -> dict:
    return {
        "command": " ".join(
            [
                "DLCORE_DATA=../shared/data .venv/bin/python",
                "notebooks/part4_attention/checkpoints/train_gpt.py",
                *map(shlex.quote, sys.argv[1:]),
            ]
        ),
        "device": "cpu, one thread per run",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "dlcore": dlcore.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%d"),
    }


def run_stage(name: str, jobs: list[dict], workers: int, loop: dict) -> None:
    partial = HERE / f"gpt_{name}.jsonl"
    done = []
    if partial.exists():
        done = [json.loads(line) for line in partial.read_text().splitlines() if line]
    key = lambda r: (r["name"], r["seed"])
    todo = [j for j in jobs if key(j) not in {key(r) for r in done}]
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        for record in pool.imap_unordered(_run, todo):
            done.append(record)
            with partial.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{record['name']} seed {record['seed']}: {record['val_loss']}")
    order = {key(j): i for i, j in enumerate(jobs)}
    runs = sorted((r for r in done if key(r) in order), key=lambda r: order[key(r)])
    out = {
        "stage": name,
        "data": "tinyshakespeare, train 0-85 %, validation 85-90 % (dlcore.charlm)",
        "loop": loop,
        "runs": runs,
        "wall_seconds_this_call": round(time.perf_counter() - start, 1),
        **_environment(),
    }
    (HERE / f"gpt_{name}.json").write_text(json.dumps(out, indent=1) + "\n")


def _jobs(configs, seeds, loop) -> list[dict]:
    """Seed-major, so that a stage stopped early still holds whole seeds."""
    return [
        dict(name=name, seed=s, config=asdict(cfg), loop=loop)
        for s in seeds
        for name, cfg in configs
    ]


def train_long(out: Path, iters: int) -> None:
    start = time.perf_counter()
    device = dlcore.setup(seed=0)
    data = CharData.build(dlcore.load("tinyshakespeare").text)
    cfg = GPTConfig(vocab_size=data.vocab_size, **NANO).modern()
    loop = LONG_LOOP | dict(iters=iters, eval_every=500)
    model, log = train_gpt(cfg, data, seed=0, device=device, **loop)
    dlcore.save_checkpoint(out, model.cpu().half(), vocab="".join(data.itos))
    record = {
        "file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "bytes": out.stat().st_size,
        "model": "dlcore.models.gpt.GPT",
        "config": asdict(cfg),
        "loop": loop,
        "seed": 0,
        "non_embedding_params": model.num_params(),
        "curve": {"steps": log.steps, "val": [round(v, 4) for v in log.val]},
        "val_loss_float32": round(log.val[-1], 4),
        "training_seconds": round(log.seconds, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        **_environment(),
        "device": dlcore.device_name(device),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("sha256", "val_loss_float32")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("ablation", "scaling", "long"))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--iters", type=int, default=LONG_LOOP["iters"], help="long")
    args = parser.parse_args()
    vocab = CharData.build(dlcore.load("tinyshakespeare").text).vocab_size
    if args.stage == "long":
        train_long(HERE / "gpt_long.pt", args.iters)
    elif args.stage == "ablation":
        run_stage(
            "ablation", _jobs(ablation_configs(vocab), SEEDS, LOOP), args.jobs, LOOP
        )
    else:
        jobs = _jobs(scaling_configs(vocab), (0,), SCALING_LOOP)
        run_stage("scaling", jobs, args.jobs, SCALING_LOOP)


if __name__ == "__main__":
    main()
