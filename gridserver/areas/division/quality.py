"""Quality figures for a set of grids (a proposal or the existing ones), all in EPSG:4547 metres.

* households: mean, CV (population standard deviation / mean), min, max, grids within [lo, hi];
* Polsby-Popper compactness 4πA/P² per grid (1 = disc), mean and minimum;
* road share: the part of the grids' *interior* boundary (edges between two grids; the parent's own
  outline is excluded) lying within ``ROAD_BUFFER_M`` of a road line;
* buildings per grid, and buildings whose footprint the grid outline cuts (less than
  ``SPLIT_SHARE`` of its area inside the grid it belongs to).
"""

from __future__ import annotations

import numpy as np
import shapely

from gridserver.demo import partition as part

#: A boundary counts as following a road within this distance of the road's centre line.
ROAD_BUFFER_M = 8.0
#: A building is "cut" by its grid outline when less than this share of its footprint is inside.
SPLIT_SHARE = 0.95


def polsby_popper(geoms_m) -> np.ndarray:
    """4πA/P² of metric polygons."""
    a = shapely.area(geoms_m)
    p = shapely.length(geoms_m)
    return np.where(p > 0, 4 * np.pi * a / np.maximum(p, 1e-9) ** 2, 0.0)


def household_stats(h, lo: float | None = None, hi: float | None = None) -> dict:
    h = np.asarray(h, dtype="f8")
    if len(h) == 0:
        return {"grids": 0}
    mean = float(h.mean())
    out = {"grids": int(len(h)), "households_total": int(h.sum()), "households_mean": round(mean, 1),
           "households_cv": round(float(h.std() / mean), 4) if mean > 0 else None,
           "households_min": int(h.min()), "households_max": int(h.max())}
    if lo is not None and hi is not None:
        out["within_bounds"] = int(((h >= lo) & (h <= hi)).sum())
    return out


def road_share(grids_m, parent_m, roads_m) -> tuple[float, float]:
    """(interior boundary length m, share of it within ROAD_BUFFER_M of a road)."""
    grids_m = np.asarray(grids_m, dtype=object)
    if len(grids_m) < 2:
        return 0.0, 0.0
    edges = shapely.union_all(shapely.boundary(grids_m))
    interior = shapely.difference(edges, shapely.buffer(shapely.boundary(parent_m), 0.5))
    total = float(shapely.length(interior))
    if total <= 0:
        return 0.0, 0.0
    roads_m = np.asarray(roads_m if roads_m is not None else [], dtype=object)
    if len(roads_m) == 0:
        return total, 0.0
    near = shapely.union_all(shapely.buffer(roads_m, ROAD_BUFFER_M, quad_segs=2))
    return total, float(shapely.length(shapely.intersection(interior, near))) / total


def buildings_cut(grid_geoms, footprints, grid_of_building) -> int:
    """Buildings with less than SPLIT_SHARE of their footprint inside their own grid (points never count)."""
    fp = np.asarray(footprints, dtype=object)
    gi = np.asarray(grid_of_building, dtype=int)
    if len(fp) == 0:
        return 0
    poly = shapely.get_dimensions(fp) == 2
    if not poly.any():
        return 0
    idx = np.flatnonzero(poly & (gi >= 0))
    grids = np.asarray(grid_geoms, dtype=object)[gi[idx]]
    a = shapely.area(fp[idx])
    inside = shapely.area(shapely.intersection(fp[idx], grids))
    return int((inside < SPLIT_SHARE * np.maximum(a, 1e-30)).sum())


def grid_quality(grid_geoms, households, nbuildings, parent, road_lines=None, *, lo=None, hi=None,
                 footprints=None, grid_of_building=None) -> dict:
    """Summary figures (see module docstring) plus per-grid lists ``pp`` and ``households``."""
    geoms = np.asarray(grid_geoms, dtype=object)
    gm = part.to_metric(shapely.segmentize(geoms, 5e-5)) if len(geoms) else geoms
    pp = polsby_popper(gm) if len(geoms) else np.zeros(0)
    out = household_stats(households, lo, hi)
    nb = np.asarray(nbuildings, dtype="f8")
    out["buildings_total"] = int(nb.sum())
    out["buildings_per_grid_mean"] = round(float(nb.mean()), 1) if len(nb) else 0.0
    out["pp_mean"] = round(float(pp.mean()), 4) if len(pp) else None
    out["pp_min"] = round(float(pp.min()), 4) if len(pp) else None
    roads_m = part.to_metric(np.asarray(road_lines, dtype=object)) if road_lines is not None and len(road_lines) else []
    length, share = road_share(gm, part.to_metric(parent), roads_m)
    out["interior_boundary_m"] = round(length, 1)
    out["boundary_on_roads"] = round(share, 4)
    if footprints is not None and grid_of_building is not None:
        out["buildings_cut"] = buildings_cut(geoms, footprints, grid_of_building)
    out["area_m2_mean"] = round(float(shapely.area(gm).mean()), 1) if len(gm) else 0.0
    out["per_grid"] = {"households": [int(x) for x in np.asarray(households)], "pp": [round(float(x), 4) for x in pp]}
    return out


def combine(reports: list[dict], lo=None, hi=None) -> dict:
    """City/street-wide figures from per-community reports (household stats over all grids)."""
    h = np.concatenate([np.asarray(r["per_grid"]["households"], dtype="f8") for r in reports]) if reports else np.zeros(0)
    pp = np.concatenate([np.asarray(r["per_grid"]["pp"], dtype="f8") for r in reports]) if reports else np.zeros(0)
    out = household_stats(h, lo, hi)
    out["communities"] = len(reports)
    out["pp_mean"] = round(float(pp.mean()), 4) if len(pp) else None
    out["pp_min"] = round(float(pp.min()), 4) if len(pp) else None
    tot = sum(r.get("interior_boundary_m", 0.0) for r in reports)
    on = sum(r.get("interior_boundary_m", 0.0) * r.get("boundary_on_roads", 0.0) for r in reports)
    out["interior_boundary_m"] = round(tot, 1)
    out["boundary_on_roads"] = round(on / tot, 4) if tot > 0 else 0.0
    out["buildings_total"] = int(sum(r.get("buildings_total", 0) for r in reports))
    out["buildings_per_grid_mean"] = round(out["buildings_total"] / max(len(h), 1), 1)
    if all("buildings_cut" in r for r in reports):
        out["buildings_cut"] = int(sum(r["buildings_cut"] for r in reports))
    return out
