"""Latency figures as the benchmarks report them."""
from __future__ import annotations

import numpy as np


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """Samples in seconds -> {"p50_ms", "p99_ms" (milliseconds, 4 decimals), "n"}."""
    ms = np.asarray(samples_s) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "n": int(ms.size)}
