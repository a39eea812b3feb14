"""Generated buildings with households, for tests and benchmarks before real block data exists.

Building centres are drawn from a mixture of a uniform density and a few dense "neighbourhoods"
(Gaussian hot spots), kept inside the area and at least ``clearance`` metres from every road line;
footprints are rotated rectangles 6–20 m a side. Households per building are skewed like a real old
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
    # one prepared polygon of everything too close to a road: a vectorised point test per candidate
    near_road = shapely.union_all(shapely.buffer(roads_m, clearance + 10.0, quad_segs=2)) if len(roads_m) else None
    if near_road is not None:
        shapely.prepare(near_road)
    nh = hotspots if hotspots is not None else max(2, int(np.sqrt(area_m.area) / 600))
    hs = rng.uniform((xmin, ymin), (xmax, ymax), size=(nh, 2))
    hs_sigma = rng.uniform(80, 300, nh)
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    polys_l, hot_l, xy_l = [], [], []
    have = 0
    accepted = None  # STRtree of the footprints kept so far
    for _ in range(60):
        m = max(3 * (n - have), 256)
        from_hot = rng.random(m) < 0.6
        which = rng.integers(nh, size=m)
        c = np.where(from_hot[:, None], hs[which] + rng.normal(size=(m, 2)) * hs_sigma[which, None],
                     rng.uniform((xmin, ymin), (xmax, ymax), size=(m, 2)))
        ok = shapely.contains_xy(area_m, c[:, 0], c[:, 1])
        c, from_hot = c[ok], from_hot[ok]
        if near_road is not None and len(c):
            keep = ~shapely.contains_xy(near_road, c[:, 0], c[:, 1])
            c, from_hot = c[keep], from_hot[keep]
        # at most one candidate per 14 m cell: dense hot spots would otherwise make millions of clashing pairs
        _, first = np.unique(np.floor(c / 14.0).astype(np.int64), axis=0, return_index=True)
        first.sort()
        c, from_hot = c[first], from_hot[first]
        k = len(c)
        if k == 0:
            continue
        w, h, ang = rng.uniform(6, 20, k), rng.uniform(6, 20, k), rng.uniform(0, np.pi, k)
        cx, cy = corners[None, :, 0] * w[:, None], corners[None, :, 1] * h[:, None]
        rx = cx * np.cos(ang)[:, None] - cy * np.sin(ang)[:, None] + c[:, 0:1]
        ry = cx * np.sin(ang)[:, None] + cy * np.cos(ang)[:, None] + c[:, 1:2]
        cand = shapely.polygons(np.stack([rx, ry], axis=-1))
        clash = np.zeros(k, dtype=bool)
        if accepted is not None:  # overlapping a footprint kept in an earlier round
            hit, _ = accepted.query(cand, predicate="intersects")
            clash[hit] = True
        ti, tj = STRtree(cand).query(cand, predicate="intersects")
        clash[ti[ti > tj]] = True  # overlapping an earlier candidate of this round (later rounds fill in)
        keep = np.flatnonzero(~clash)[: n - have]
        polys_l.append(cand[keep])
        hot_l.append(from_hot[keep])
        xy_l.append(c[keep])
        have += len(keep)
        accepted = STRtree(np.concatenate(polys_l))
        if have >= n:
            break
    polys_m = np.concatenate(polys_l) if polys_l else np.empty(0, dtype=object)
    hot = np.concatenate(hot_l) if hot_l else np.zeros(0, dtype=bool)
    xy = np.concatenate(xy_l) if xy_l else np.zeros((0, 2))
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
