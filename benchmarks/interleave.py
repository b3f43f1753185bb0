"""The statistics both ratio benchmarks report (bench_fit.py, bench_loader.py): the
median ratio over interleaved rounds, its IQR and min–max, and the CPU-time median."""

import statistics


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
