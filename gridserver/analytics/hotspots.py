"""Hot-spot early warning (热点预警): pure numpy/scipy, no database.

Rule. For each cell (grid or H3 cell) let ``x`` be its incident count in the recent window (W days)
and ``b`` its count in the baseline just before it (B days). If the cell's rate did not change,
then given ``n = x + b`` events, ``x ~ Binomial(n, W / (W + B))`` — the exact conditional test of
two Poisson rates, which needs no distributional fit and handles cells with a zero baseline. The
one-sided p-value is ``P(X ≥ x)``. Across all cells the p-values are corrected with
Benjamini–Hochberg (false-discovery rate ``alpha``). A cell is **flagged** when its q-value ≤ alpha,
``x ≥ min_count`` and the rate ratio ``(x/W) / ((b + 0.5)/B) ≥ min_ratio`` (0.5: a half event of
baseline so that one-off cells with no history need more than a couple of reports).

Reported with it: the expected count ``b·W/B``, the Poisson z-score ``(x − e)/√max(e, 0.5)``, and
the Getis-Ord Gi* z-score of the window counts over the cell's neighbourhood (itself plus its
neighbours, binary weights), which says whether the cell sits in a cluster of high counts; it equals
PySAL esda's ``G_Local(star=True, transform="B").Zs`` (tested).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted q-values (same order as ``p``)."""
    p = np.asarray(p, dtype="f8")
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def surge_test(window: np.ndarray, baseline: np.ndarray, window_days: float, baseline_days: float, *,
               alpha: float = 0.01, min_count: int = 3, min_ratio: float = 1.5) -> dict[str, np.ndarray]:
    """Per-cell surge statistics (see the module docstring). Arrays are aligned with the inputs."""
    x = np.asarray(window, dtype="i8")
    b = np.asarray(baseline, dtype="i8")
    n = x + b
    share = window_days / (window_days + baseline_days)
    p = np.where(n > 0, stats.binom.sf(x - 1, n, share), 1.0)
    q = benjamini_hochberg(p)
    expected = b * window_days / baseline_days
    ratio = (x / window_days) / ((b + 0.5) / baseline_days)
    z = (x - expected) / np.sqrt(np.maximum(expected, 0.5))
    flagged = (q <= alpha) & (x >= min_count) & (ratio >= min_ratio)
    return {"count": x, "baseline": b, "expected": expected, "ratio": ratio, "z": z, "p": p, "q": q,
            "flagged": flagged}


def gi_star(values: np.ndarray, neighbours: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Getis-Ord Gi* z-scores and one-sided p-values with binary weights (self included).

    ``neighbours[i]`` lists the indexes adjacent to cell i (without i itself).
    """
    x = np.asarray(values, dtype="f8")
    n = len(x)
    if n < 3:
        return np.zeros(n), np.ones(n)
    mean = x.mean()
    s = np.sqrt(max((x * x).mean() - mean * mean, 0.0))
    z = np.zeros(n)
    for i, nb in enumerate(neighbours):
        idx = [i] + [j for j in nb if j != i]
        w = len(idx)
        denom = s * np.sqrt(max((n * w - w * w) / (n - 1), 0.0))
        z[i] = (x[idx].sum() - mean * w) / denom if denom > 0 else 0.0
    return z, stats.norm.sf(z)
