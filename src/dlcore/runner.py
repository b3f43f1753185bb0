"""Run notebooks top to bottom and stamp them: `dlcore-run notebooks/x.ipynb`, `--all`.

The stamp, in `metadata["dlcore"]`, says which code produced the stored outputs:
- `source_sha256`: sha256 (hex) of the UTF-8 bytes of "\\n".join(code cell sources), so
  anyone can recompute it and tell when the notebook's own code changed;
- read from *inside the kernel* after the last cell: `torch_version`, `device`, `cpu`,
  `dlcore_version`, `dlcore_modules` ({module: sha256 of its file} for every `dlcore`
  module the notebook imported), `dlcore_displayed` (modules `show_source` printed)
  and `dlcore_digest` (one sha256 over all module digests, shown in the page footer);
- `cpu_flags_sha256` (the CPU's instruction-set flags: bitwise re-runs are expected only
  where they match), `profile`, `wall_seconds`, `executed_at`.

`problems(nb)` is what the freshness test checks; `dlcore-run --stale` lists chapters
whose imported `dlcore` modules changed since their stamp (`--stale --rerun` runs them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

from .runtime import PROFILES
from .source import current_module_digests, module_digest

PROBE_MARK = "DLCORE-STAMP:"
EDITED_DURING_RUN = "edited during the run"
# Runs in the kernel after the chapter's last cell; the cell is removed before saving.
PROBE = f"""
import json as _json, platform as _platform, sys as _sys
import dlcore as _dlcore, torch as _torch
from dlcore import runtime as _runtime, source as _source
print({PROBE_MARK!r} + _json.dumps({{
    "torch_version": _torch.__version__,
    "device": _runtime.device_name(),
    "cpu": _runtime.cpu_model(),
    "python_version": _platform.python_version(),
    "dlcore_version": _dlcore.__version__,
    "dlcore_modules": _source.loaded_module_digests(),
    "dlcore_displayed": sorted(_source.DISPLAYED),
}}))
"""


def cpu_flags_digest() -> str:
    """sha256 (16 hex digits) of the CPU's instruction-set flags (Linux /proc/cpuinfo),
    or "" where they cannot be read. Two machines with the same model name ("AMD EPYC")
    can expose different vector instructions, and then the math libraries pick other
    kernels and round differently: bitwise reproduction is only expected when these
    flags match."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    return hashlib.sha256(flags.encode()).hexdigest()[:16]
    except OSError:
        pass
    return ""


def cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def source_sha256(nb) -> str:
    code = [cell_source(c) for c in nb["cells"] if c["cell_type"] == "code"]
    return hashlib.sha256("\n".join(code).encode("utf-8")).hexdigest()


def combined_digest(modules: dict[str, str]) -> str:
    """One sha256 over `{module: digest}`: sorted "name digest" lines, "\\n"-joined."""
    lines = "\n".join(f"{name} {digest}" for name, digest in sorted(modules.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def toc_files(root: Path) -> list[str]:
    """Every `file:` entry of `_toc.yml` (and its `root:`) in book order, no suffix."""
    text = (root / "_toc.yml").read_text(encoding="utf-8")
    return re.findall(r"^\s*(?:-\s*)?(?:file|root):\s*(\S+)", text, flags=re.M)


def missing_toc_entries(root: Path) -> list[str]:
    """`_toc.yml` entries with neither a notebook nor a Markdown page behind them."""
    return [
        f
        for f in toc_files(root)
        if not any((root / f"{f}{ext}").exists() for ext in (".ipynb", ".md"))
    ]


def toc_notebooks(root: Path) -> list[Path]:
    """The notebooks `_toc.yml` lists, in book order (see `missing_toc_entries`)."""
    paths = [root / f"{f}.ipynb" for f in toc_files(root)]
    return [p for p in paths if p.exists()]


def collapse_carriage_returns(text: str) -> str:
    r"""What a terminal would show: on each line keep only the text after the last
    '\r' (progress bars redraw themselves with '\r'; the stored output keeps their
    final state)."""
    lines = []
    for line in text.split("\n"):
        parts = [p for p in line.split("\r") if p]
        lines.append(parts[-1] if parts else "")
    return "\n".join(lines)


def tidy_streams(outputs: list) -> list:
    """Merge consecutive outputs of one stream, then keep what a terminal would show."""
    merged = []
    for out in outputs:
        previous = merged[-1] if merged else {}
        if (
            out.get("output_type") == "stream"
            and previous.get("output_type") == "stream"
            and previous["name"] == out["name"]
        ):
            previous["text"] += out["text"]
        else:
            merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = collapse_carriage_returns(out["text"])
    return merged


def changed_modules(stamp: dict, names=None) -> list[str]:
    """The stamped `dlcore` modules (all, or those in `names`) whose file changed."""
    recorded = stamp.get("dlcore_modules", {})
    names = sorted(recorded) if names is None else sorted(names)
    today = current_module_digests(names)
    return [n for n in names if recorded.get(n) is None or today[n] != recorded[n]]


def problems(nb) -> list[str]:
    """Why the stored outputs of `nb` cannot be trusted (empty when they can)."""
    found = []
    stamp = nb.metadata.get("dlcore", {})
    if "source_sha256" not in stamp:
        found.append("no execution stamp")
    elif stamp["source_sha256"] != source_sha256(nb):
        found.append("stale: code changed after the stamped run")
    if "source_sha256" in stamp and "dlcore_modules" not in stamp:
        found.append("stamp has no dlcore module digests (made by an old runner)")
    for name in changed_modules(stamp, stamp.get("dlcore_displayed", [])):
        found.append(f"stale: {name} changed and the page shows its source")
    counts = [
        c.get("execution_count")
        for c in nb.cells
        if c.cell_type == "code" and cell_source(c).strip()
    ]
    if counts != list(range(1, len(counts) + 1)):
        found.append(f"execution counts {counts} are not 1..n (not one clean run)")
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: error output {out.get('ename')}")
    return found


def package_digests() -> dict[str, str]:
    """{module: digest} for every .py file of the `dlcore` package (all `__path__`)."""
    import dlcore

    digests = {}
    for folder in map(Path, dlcore.__path__):
        for file in sorted(folder.rglob("*.py")):
            parts = ("dlcore", *file.relative_to(folder).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            digests[name] = module_digest(file)
    return digests


def _read_probe(cell) -> dict:
    for out in cell.get("outputs", []):
        text = out.get("text", "")
        if out.get("output_type") == "stream" and PROBE_MARK in text:
            return json.loads(text.split(PROBE_MARK, 1)[1])
    raise RuntimeError(f"the stamp probe printed nothing usable: {cell.get('outputs')}")


def execute(
    path: Path, profile: str = "full", timeout: int = 1800, out: Path | None = None
):
    """Execute `path` in `profile`, write it (stamped) to `out` (default: in place).

    Returns the stamp. On a failing cell the outputs so far go to
    `<name>.failed.ipynb`."""
    import nbformat
    from nbclient import NotebookClient

    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    before = package_digests()  # a module edited during the run would be mis-stamped
    os.environ["DLCORE_PROFILE"] = profile  # the kernel inherits it
    start = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except Exception:
        # Keep what ran for diagnosis, beside the notebook (git-ignored).
        nb.cells.pop()
        failed = path.with_name(path.stem + ".failed.ipynb")
        nbformat.write(nb, failed)
        print(f"  failed: outputs so far are in {failed}", file=sys.stderr, flush=True)
        raise
    wall = time.perf_counter() - start
    kernel = _read_probe(nb.cells.pop())
    for name, digest in kernel["dlcore_modules"].items():
        if before.get(name, digest) != digest:
            # Which version the kernel imported is unknown: record that, so the page is
            # listed by `--stale` (and fails the freshness test if it shows the source).
            kernel["dlcore_modules"][name] = EDITED_DURING_RUN
            print(f"  warning: {name} changed during the run; run {path} again",
                  file=sys.stderr, flush=True)  # fmt: skip
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = tidy_streams(cell.outputs)
    stamp = {
        "source_sha256": source_sha256(nb),
        "profile": profile,
        **kernel,
        "dlcore_digest": combined_digest(kernel["dlcore_modules"]),
        "cpu_flags_sha256": cpu_flags_digest(),
        "wall_seconds": round(wall, 1),
        "executed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    nb.metadata["dlcore"] = stamp
    nbformat.write(nb, out or path)
    return stamp


def run_notebook(path: Path, profile: str = "full", timeout: int = 1800) -> dict:
    """Execute `path` in place in `profile` and stamp it. Returns the stamp."""
    return execute(path, profile, timeout)


def headline_rows(nb) -> list[list[tuple[str, str]]]:
    """The rows of every result card in the stored outputs, less the timing rows."""
    timing = ("training time", "notebook wall time so far")
    cards = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/markdown", "")
            text = "".join(text) if isinstance(text, list) else text
            if text.startswith("**Result card"):
                rows = re.findall(r"^\| (.+?) \| (.*) \|$", text, flags=re.M)
                cards.append([r for r in rows if r[0] not in timing and r[0].strip()])
    return cards


def reproduces(path: Path, timeout: int = 1800) -> list[str]:
    """Run `path` again (in a temporary copy) in its stamped profile; list how its
    result cards differ from the stored ones (empty: every headline number reproduced
    exactly)."""
    import tempfile

    import nbformat

    stored = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        execute(path, stored.metadata["dlcore"]["profile"], timeout, out=copy)
        fresh = nbformat.read(copy, as_version=4)
    before, after = headline_rows(stored), headline_rows(fresh)
    if len(before) != len(after):
        return [f"{len(before)} result cards stored, {len(after)} after the re-run"]
    return [
        f"card {i + 1}: stored {a} != re-run {b}"
        for i, (card_a, card_b) in enumerate(zip(before, after))
        for a, b in zip(card_a, card_b)
        if a != b
    ]


def stale_notebooks(root: Path) -> dict[Path, list[str]]:
    """{notebook: changed dlcore modules} for the chapters whose imports changed."""
    import nbformat

    found = {}
    for path in toc_notebooks(root):
        stamp = nbformat.read(path, as_version=4).metadata.get("dlcore", {})
        changed = (
            changed_modules(stamp) if "dlcore_modules" in stamp else ["(no digests)"]
        )
        if changed:
            found[path] = changed
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run")
    parser.add_argument("--all", action="store_true", help="every notebook in _toc.yml")
    parser.add_argument(
        "--stale",
        action="store_true",
        help="list chapters whose dlcore imports changed",
    )
    parser.add_argument("--rerun", action="store_true", help="with --stale: run them")
    parser.add_argument(
        "--check-reproducible",
        action="store_true",
        help="re-run the named notebooks in a copy; fail unless the result cards match",
    )
    parser.add_argument("--profile", default="full", choices=PROFILES)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if args.stale:
        stale = stale_notebooks(root)
        for path, changed in stale.items():
            print(f"{path.relative_to(root)}: {', '.join(changed)}")
        if not stale:
            print("no chapter's dlcore imports changed since its stamp")
        if not args.rerun:
            return 0
        paths = list(stale)
    elif args.all:
        paths = toc_notebooks(root)
    else:
        paths = args.notebooks
    if not paths and not args.stale:
        parser.error("name notebooks, or pass --all or --stale")
    failures = 0
    for path in paths:
        if args.check_reproducible:
            diffs = reproduces(path, args.timeout)
            print(
                f"{path}: " + ("reproduced exactly" if not diffs else "; ".join(diffs))
            )
            failures += bool(diffs)
            continue
        print(f"running {path} ({args.profile}) ...", flush=True)
        stamp = execute(path, args.profile, args.timeout)
        print(f"  done in {stamp['wall_seconds']} s on {stamp['device']}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
