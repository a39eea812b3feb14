"""Shared helpers of the benchmark scripts."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.ops import voronoi_diagram


def voronoi_split(polygon, k: int, rng: np.random.Generator) -> list:
    """Split ``polygon`` into about ``k`` Voronoi cells of random seeds inside it (benchmark data)."""
    x0, y0, x1, y1 = polygon.bounds
    seeds: list = []
    while len(seeds) < k:
        c = rng.uniform([x0, y0], [x1, y1], (4 * k, 2))
        seeds.extend(c[shapely.contains_xy(polygon, c[:, 0], c[:, 1])].tolist())
    cells = voronoi_diagram(shapely.MultiPoint(seeds[:k]), envelope=polygon.envelope.buffer(0.01))
    return [p for p in (c.intersection(polygon) for c in cells.geoms) if not p.is_empty and p.area > 0]
