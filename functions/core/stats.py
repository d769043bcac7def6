"""Percentiles for the figures `cmon demo`, `cmon replay` and the benchmarks print."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_POINTS = (50, 90, 95, 99)


def percentiles(samples: Sequence[float], points: Sequence[int] = DEFAULT_POINTS) -> dict[str, float]:
    """count, the nearest-rank `p<N>` for each point, max and mean (all 0 without samples)."""
    if not samples:
        return {"count": 0} | {f"p{p}": 0.0 for p in points} | {"max": 0.0, "mean": 0.0}
    ordered = sorted(samples)

    def at(point: int) -> float:
        return round(float(ordered[min(len(ordered) - 1, int(point / 100 * len(ordered)))]), 3)

    return (
        {"count": len(ordered)}
        | {f"p{p}": at(p) for p in points}
        | {"max": round(float(ordered[-1]), 3), "mean": round(sum(ordered) / len(ordered), 3)}
    )
