"""Run notebooks top to bottom and stamp them: `dlcore-run notebooks/x.ipynb` or `dlcore-run --all`.

The stamp, in `metadata["dlcore"]`, says which code produced the stored outputs:
`source_sha256` is the sha256 (hex) of the UTF-8 bytes of "\\n".join(code cell sources), so
anyone can recompute it and tell when outputs are stale.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import torch

from . import __version__
from .runtime import PROFILES, device_name


def cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def source_sha256(nb) -> str:
    code = [cell_source(c) for c in nb["cells"] if c["cell_type"] == "code"]
    return hashlib.sha256("\n".join(code).encode("utf-8")).hexdigest()


def toc_notebooks(root: Path) -> list[Path]:
    """The notebooks `_toc.yml` lists, in book order."""
    text = (root / "_toc.yml").read_text(encoding="utf-8")
    files = re.findall(r"file:\s*(\S+)", text)
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def collapse_carriage_returns(text: str) -> str:
    r"""What a terminal would show: on each line keep only the text after the last '\r'
    (progress bars redraw themselves with '\r'; the stored output keeps their final state)."""
    lines = []
    for line in text.split("\n"):
        parts = [p for p in line.split("\r") if p]
        lines.append(parts[-1] if parts else "")
    return "\n".join(lines)


def tidy_streams(outputs: list) -> list:
    """Merge consecutive outputs of the same stream, then keep what a terminal would show."""
    merged = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1]["name"] == out["name"]):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = collapse_carriage_returns(out["text"])
    return merged


def problems(nb) -> list[str]:
    """Why the stored outputs of `nb` cannot be trusted (empty when they can)."""
    found = []
    stamp = nb.metadata.get("dlcore", {})
    if "source_sha256" not in stamp:
        found.append("no execution stamp")
    elif stamp["source_sha256"] != source_sha256(nb):
        found.append("stale: code changed after the stamped run")
    counts = [c.get("execution_count") for c in nb.cells if c.cell_type == "code" and cell_source(c).strip()]
    if counts != list(range(1, len(counts) + 1)):
        found.append(f"execution counts {counts} are not 1..n (not one clean run)")
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: error output {out.get('ename')}")
    return found


def run_notebook(path: Path, profile: str = "full", timeout: int = 1800) -> dict:
    """Execute `path` in place in `profile` and stamp it. Returns the stamp."""
    from nbclient import NotebookClient

    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    nb = nbformat.read(path, as_version=4)
    os.environ["DLCORE_PROFILE"] = profile  # the kernel inherits it
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except Exception:
        # Keep what ran for diagnosis, beside the notebook (git-ignored); the notebook is untouched.
        failed = path.with_name(path.stem + ".failed.ipynb")
        nbformat.write(nb, failed)
        print(f"  failed: outputs so far are in {failed}", file=sys.stderr, flush=True)
        raise
    wall = time.perf_counter() - start
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = tidy_streams(cell.outputs)
    stamp = {
        "source_sha256": source_sha256(nb),
        "profile": profile,
        "device": device_name(),
        "wall_seconds": round(wall, 1),
        "executed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dlcore_version": __version__,
        "torch_version": torch.__version__,
    }
    nb.metadata["dlcore"] = stamp
    nbformat.write(nb, path)
    return stamp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run")
    parser.add_argument("--all", action="store_true", help="every notebook in _toc.yml")
    parser.add_argument("--profile", default="full", choices=PROFILES)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = toc_notebooks(Path.cwd()) if args.all else args.notebooks
    if not paths:
        parser.error("name notebooks or pass --all")
    for path in paths:
        print(f"running {path} ({args.profile}) ...", flush=True)
        stamp = run_notebook(path, args.profile, args.timeout)
        print(f"  done in {stamp['wall_seconds']} s on {stamp['device']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
