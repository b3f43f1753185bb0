"""What the ratio benchmarks share (bench_fit.py, bench_loader.py, bench_rnn.py,
bench_gpt.py): the interleaved rounds of the two sides, and the statistics they report —
the median ratio over rounds, its IQR and min–max, and the CPU-time median."""

import statistics
import time
from collections.abc import Callable


def alternate(
    timed_block: Callable[[str, int], tuple[float, float]],
    rounds: int,
    min_rounds: int,
    time_budget: float,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run `timed_block(side, round)` -> (wall, cpu) seconds for sides "plain" and
    "book", plain first in even rounds and book first in odd ones, until `rounds` or
    until `time_budget` seconds have passed (at least `min_rounds`). Returns the
    per-round wall and CPU times of each side."""
    wall = {"plain": [], "book": []}
    cpu = {"plain": [], "book": []}
    start = time.perf_counter()
    for r in range(rounds):
        for name in ("plain", "book") if r % 2 == 0 else ("book", "plain"):
            w, c = timed_block(name, r)
            wall[name].append(w)
            cpu[name].append(c)
        if r + 1 >= min_rounds and time.perf_counter() - start > time_budget:
            break
    return wall, cpu


def ratio_stats(ratios: list[float], cpu_ratios: list[float], digits: int) -> dict:
    """Per-round ratios (wall and CPU time) -> the summary fields of the JSON line."""
    q1, med, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return {
        "ratio": round(med, digits),
        "ratio_q25": round(q1, digits),
        "ratio_q75": round(q3, digits),
        "ratio_min": round(min(ratios), digits),
        "ratio_max": round(max(ratios), digits),
        "cpu_ratio": round(statistics.median(cpu_ratios), digits),
        "rounds": len(ratios),
    }


def describe(stats: dict, digits: int) -> str:
    """One line for a reader: median, IQR, min–max, and the CPU-time median."""
    f = f".{digits}f"
    return (
        f"median {stats['ratio']:{f}}, IQR {stats['ratio_q25']:{f}}–"
        f"{stats['ratio_q75']:{f}}, min–max {stats['ratio_min']:{f}}–"
        f"{stats['ratio_max']:{f}}; by CPU time: median {stats['cpu_ratio']:{f}}"
    )
