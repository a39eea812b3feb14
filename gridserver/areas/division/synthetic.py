"""Generated buildings with households, for tests and benchmarks before real block data exists.

Building centres are drawn from a mixture of a uniform density and a few dense "neighbourhoods"
(Gaussian hot spots), kept inside the area and at least ``clearance`` metres from every road line;
footprints are rotated rectangles 8–30 m a side. Households per building are skewed like a real old
town: most buildings hold a few households, some high-rises hold 30–160 (more often in hot spots).
Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely import STRtree

from gridserver.areas.division.units import Buildings
from gridserver.demo import partition as part


def synthetic_buildings(area, road_lines, n: int, seed: int = 0, *, clearance: float = 6.0,
                        hotspots: int | None = None, prefix: str = "SYNB") -> Buildings:
    """About ``n`` buildings inside ``area`` (WGS84 polygon), off the roads. Codes ``prefix`` + 8 digits."""
    rng = np.random.default_rng(seed)
    area_m = part.to_metric(part.as_multipolygon(area))
    shapely.prepare(area_m)
    xmin, ymin, xmax, ymax = area_m.bounds
    roads_m = part.to_metric(np.asarray(road_lines if road_lines is not None else [], dtype=object))
    tree = STRtree(roads_m) if len(roads_m) else None
    nh = hotspots if hotspots is not None else max(2, int(np.sqrt(area_m.area) / 600))
    hs = rng.uniform((xmin, ymin), (xmax, ymax), size=(nh, 2))
    hs_sigma = rng.uniform(80, 300, nh)
    pts, hot = [], []
    have, want = 0, 3 * n  # candidates: overlapping footprints are dropped below
    for _ in range(200):
        m = max(2 * (want - have), 256)
        from_hot = rng.random(m) < 0.6
        which = rng.integers(nh, size=m)
        c = np.where(from_hot[:, None], hs[which] + rng.normal(size=(m, 2)) * hs_sigma[which, None],
                     rng.uniform((xmin, ymin), (xmax, ymax), size=(m, 2)))
        ok = shapely.contains_xy(area_m, c[:, 0], c[:, 1])
        c, from_hot = c[ok], from_hot[ok]
        if tree is not None and len(c):
            near, _ = tree.query(shapely.points(c), predicate="dwithin", distance=clearance + 16.0)
            keep = np.ones(len(c), dtype=bool)
            keep[near] = False
            c, from_hot = c[keep], from_hot[keep]
        pts.append(c)
        hot.append(from_hot)
        have += len(c)
        if have >= want:
            break
    xy = np.concatenate(pts)[:want]
    hot = np.concatenate(hot)[:want]
    k = len(xy)
    w = rng.uniform(8, 30, k)
    h = rng.uniform(8, 30, k)
    ang = rng.uniform(0, np.pi, k)
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    cx = corners[None, :, 0] * w[:, None]
    cy = corners[None, :, 1] * h[:, None]
    rx = cx * np.cos(ang)[:, None] - cy * np.sin(ang)[:, None] + xy[:, 0:1]
    ry = cx * np.sin(ang)[:, None] + cy * np.cos(ang)[:, None] + xy[:, 1:2]
    rings = np.stack([rx, ry], axis=-1)
    polys_m = shapely.polygons(rings)
    # drop footprints overlapping an earlier one (greedy, in generation order)
    ti, tj = STRtree(polys_m).query(polys_m, predicate="intersects")
    sel = ti > tj
    clash = np.zeros(k, dtype=bool)
    for a, b in sorted(zip(tj[sel].tolist(), ti[sel].tolist())):
        if not clash[a]:
            clash[b] = True
    keep = ~clash
    polys_m, xy, hot = polys_m[keep][:n], xy[keep][:n], hot[keep][:n]
    k = len(xy)
    polys_m = shapely.intersection(polys_m, area_m)  # a footprint never leaves the area
    polys = part.to_wgs84(polys_m)
    high = rng.random(k) < np.where(hot, 0.05, 0.01)
    households = np.maximum(1, np.round(rng.lognormal(1.0, 0.8, k))).astype(int)
    households[high] += rng.integers(30, 160, high.sum())
    empty = shapely.is_empty(polys) | (shapely.get_dimensions(polys) != 2)
    polys = np.where(empty, part.to_wgs84(shapely.points(xy)), polys)
    codes = np.asarray([f"{prefix}{seed % 100:02d}{i:06d}" for i in range(k)], dtype=object)
    return Buildings(codes, polys, households)
