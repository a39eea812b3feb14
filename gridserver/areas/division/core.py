"""Divide one community into grids: units → regions → coded grid polygons + quality report."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import shapely

from gridserver.areas.division import quality
from gridserver.areas.division.regions import REGION_METHODS
from gridserver.areas.division.units import Buildings, build_units
from gridserver.demo import partition as part
from gridserver.errors import InvalidInput

METHODS = tuple(REGION_METHODS)
#: Tiling tolerance (m²) for gaps/overlaps, the same as the topology check's default.
TILING_TOLERANCE_M2 = 0.01


@dataclass
class GridProposal:
    code: str
    name: str
    geom: shapely.MultiPolygon
    households: int
    buildings: int


@dataclass
class Division:
    """A proposed division of one community."""

    community_code: str
    community_name: str
    grids: list[GridProposal]
    building_codes: np.ndarray       # the input buildings' codes
    building_grid: np.ndarray        # grid code per input building
    report: dict
    method: str
    seconds: float
    notes: list[str] = field(default_factory=list)


def check_bounds(target: int, lo: int, hi: int) -> None:
    """Reject impossible targets with a message saying which number is wrong."""
    for name, v in (("target households", target), ("min", lo), ("max", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise InvalidInput(f"{name} must be a positive whole number, got {v!r}")
    if not lo <= target <= hi:
        raise InvalidInput(f"need min <= target <= max, got min={lo}, target={target}, max={hi}")


def choose_k(total: int, target: int, lo: int, hi: int) -> int:
    """Number of grids: the one whose mean household count is nearest ``target`` among those whose
    mean lies within [lo, hi]; when no count does (total < lo, or bounds too tight), the nearest to
    ``total / target`` (at least 1)."""
    if total <= 0:
        return 1
    k_lo, k_hi = max(1, math.ceil(total / hi)), max(1, math.floor(total / lo))
    ideal = total / target
    if k_lo <= k_hi:
        cands = range(k_lo, k_hi + 1)
        return min(cands, key=lambda k: (abs(total / k - target), k))
    return max(1, round(ideal))


def tiling_errors(parent, children) -> dict[str, float]:
    """Gap and overlap area (m²) of ``children`` against ``parent``: both ~0 for an exact tiling."""
    kids = np.asarray(children, dtype=object)
    union = shapely.union_all(kids, grid_size=part.GRID)
    gap = part.metric_area([shapely.difference(parent, union, grid_size=part.GRID)])[0]
    outside = part.metric_area([shapely.difference(union, parent, grid_size=part.GRID)])[0]
    overlap = float(part.metric_area(kids).sum() - part.metric_area([union])[0])
    return {"gap_m2": float(gap), "outside_m2": float(outside), "overlap_m2": max(overlap, 0.0)}


def fit_to_parent(geoms, parent) -> list:
    """Grids clipped to the parent exactly as given, and the slivers of it that the 1e-9° noding left
    uncovered (fractions of a cm²) added to the grid they share most boundary with."""
    out = [shapely.intersection(g, parent) for g in geoms]
    if len(out) == 1:
        return [part.as_multipolygon(parent)]
    rest = shapely.difference(parent, shapely.union_all(out))
    for piece in shapely.get_parts(rest):
        if piece.is_empty or piece.geom_type != "Polygon":
            continue
        shared = shapely.length(shapely.intersection(shapely.boundary(piece), np.asarray(out, dtype=object)))
        d = shapely.distance(piece, np.asarray(out, dtype=object))
        j = int(np.argmax(shared)) if shared.max() > 0 else int(np.argmin(d))
        out[j] = shapely.union(out[j], piece)
    return [part.as_multipolygon(g) for g in out]


def grid_name(community_name: str, seq: int) -> str:
    return f"{community_name}第{seq:03d}网格"


def divide_community(code: str, name: str, parent, buildings: Buildings, road_lines=None, *,
                     target: int = 300, lo: int = 200, hi: int = 500, seed: int = 0,
                     method: str = "grow") -> Division:
    """Propose grids for one community (``parent`` WGS84 polygon, ``code`` 12 digits).

    Every building is assigned to exactly one grid (the one whose units hold its interior point);
    grids are unions of units so they tile ``parent`` exactly; codes are ``code`` + 3 digits in
    reading order (north→south rows, west→east).
    """
    if len(code) != 12 or not code.isdigit():
        raise InvalidInput(f"community code must be 12 digits, got {code!r}")
    check_bounds(target, lo, hi)
    if method not in REGION_METHODS:
        raise InvalidInput(f"unknown division method {method!r}; use one of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    parent = part.as_multipolygon(parent)
    road_lines = np.asarray(road_lines if road_lines is not None else [], dtype=object)
    if len(road_lines):
        road_lines = road_lines[shapely.intersects(road_lines, parent)]
    notes: list[str] = []
    units = build_units(parent, buildings, road_lines)
    total = int(units.households.sum())
    k = min(choose_k(total, target, lo, hi), len(units))
    if total < lo:
        notes.append(f"{code}: {total} households is below the minimum {lo}: one grid")
    if k > 999:
        raise InvalidInput(f"community {code} would need {k} grids; the 3-digit sequence allows 999")
    rng = np.random.default_rng([int(seed), int(code)])
    label = REGION_METHODS[method](units, k, lo, hi, rng)
    k = int(label.max()) + 1 if len(label) else 1
    geoms = [part.as_multipolygon(shapely.union_all(units.geoms[label == r], grid_size=part.GRID)) for r in range(k)]
    geoms = fit_to_parent(geoms, parent)
    area = part.metric_area(geoms)
    order = part.reading_order(shapely.get_coordinates(shapely.centroid(part.to_metric(np.asarray(geoms, dtype=object)))),
                               float(np.sqrt(area.sum() / max(k, 1))))
    rank = np.empty(k, dtype=int)
    rank[order] = np.arange(k)
    hh = np.bincount(label, weights=units.households, minlength=k).astype(int)
    nb = np.bincount(label, weights=units.nbuildings, minlength=k).astype(int)
    grids = [None] * k
    for r in range(k):
        seq = int(rank[r]) + 1
        grids[seq - 1] = GridProposal(f"{code}{seq:03d}", grid_name(name, seq), geoms[r], int(hh[r]), int(nb[r]))
    region_of_building = label[units.building_unit] if len(buildings) else np.empty(0, dtype=int)
    building_grid = np.asarray([f"{code}{int(rank[r]) + 1:03d}" for r in region_of_building], dtype=object)
    ordered_geoms = [g.geom for g in grids]
    report = quality.grid_quality(ordered_geoms, [g.households for g in grids], [g.buildings for g in grids], parent,
                                  road_lines, lo=lo, hi=hi, footprints=buildings.geoms,
                                  grid_of_building=rank[region_of_building] if len(buildings) else [])
    report["tiling"] = tiling_errors(parent, ordered_geoms)
    report["units"] = len(units)
    report["contiguous"] = int(sum(len(g.geom.geoms) == 1 for g in grids))
    return Division(code, name, grids, buildings.codes, building_grid, report, method,
                    time.perf_counter() - t0, notes)


def existing_quality(parent, grid_geoms, buildings: Buildings, road_lines=None, *, lo=None, hi=None) -> dict:
    """The same quality figures for existing grids; buildings go to the grid covering their interior point."""
    from gridserver.areas.division.units import _inside_index

    geoms = np.asarray([part.as_multipolygon(g) for g in grid_geoms], dtype=object)
    if len(buildings):
        gi = _inside_index(buildings.points, geoms)
    else:
        gi = np.empty(0, dtype=int)
    hh = np.bincount(gi, weights=buildings.households, minlength=len(geoms)).astype(int)
    nb = np.bincount(gi, minlength=len(geoms)).astype(int)
    road_lines = np.asarray(road_lines if road_lines is not None else [], dtype=object)
    if len(road_lines):
        road_lines = road_lines[shapely.intersects(road_lines, parent)]
    return quality.grid_quality(geoms, hh, nb, part.as_multipolygon(parent), road_lines, lo=lo, hi=hi,
                                footprints=buildings.geoms, grid_of_building=gi)
