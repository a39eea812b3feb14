"""Partition a unit graph into connected regions of balanced household counts.

``grow`` (the default) is seeded region growing plus a local search on an explicit objective (see
the package docstring); ``maxp``, ``skater`` and ``kmeans`` wrap PySAL spopt's Max-P, SKATER and
region-k-means heuristics on the same adjacency graph so the methods can be compared on equal terms.
Every function returns one region label (0..k-1) per unit.
"""

from __future__ import annotations

import heapq
import warnings

import numpy as np

from gridserver.areas.division.units import Units
from gridserver.geo.regions import grow_regions, kmeans_seeds

#: Weight of the shape term (Σ weighted perimeter / √(4πA) per region) against the balance term.
SHAPE_WEIGHT = 0.02
#: Extra perimeter cost of a boundary edge that does not follow a road (3.0 = counts four times).
OFF_ROAD_COST = 3.0
#: Penalty per unit of relative bound violation ((lo - h)/μ or (h - hi)/μ).
BOUND_WEIGHT = 20.0
#: Growth cost multiplier for taking a unit across a road.
ROAD_CROSSING = 3.0
MAX_SWEEPS = 60
#: Max-P effort (spopt defaults 99 and 10 take minutes per community on 2 cores).
MAXP_CONSTRUCTION, MAXP_ANNEALING = 5, 2


# ----------------------------------------------------------------------------------------------
# helpers


def _connected_without(members: set[int], u: int, nbrs: list[dict[int, float]]) -> bool:
    """True when ``members - {u}`` is non-empty and edge-connected."""
    rest_n = len(members) - 1
    if rest_n <= 0:
        return False
    starts = [b for b in nbrs[u] if b in members]
    if len(starts) <= 1:
        return True  # u is a leaf of its region: removing it cannot disconnect the rest
    seen = {starts[0]}
    stack = [starts[0]]
    targets = set(starts[1:])
    while stack and targets:
        a = stack.pop()
        for b in nbrs[a]:
            if b != u and b in members and b not in seen:
                seen.add(b)
                targets.discard(b)
                stack.append(b)
    return not targets


# ----------------------------------------------------------------------------------------------
# grow + local search


class _Objective:
    """Per-region terms of the objective, updated incrementally on moves."""

    def __init__(self, u: Units, label: np.ndarray, k: int, lo: float, hi: float):
        self.u, self.k, self.lo, self.hi = u, k, lo, hi
        self.h = np.bincount(label, weights=u.households, minlength=k).astype("f8")
        self.mu = max(float(u.households.sum()) / k, 1.0)
        self.a = np.bincount(label, weights=u.area, minlength=k).astype("f8")
        # weighted perimeter: outer edges and road edges count once, other edges 1 + OFF_ROAD_COST
        self.ew = [{b: s * (1.0 if u.block[a] != u.block[b] else 1.0 + OFF_ROAD_COST) for b, s in d.items()}
                   for a, d in enumerate(u.nbrs)]
        self.p = np.zeros(k)
        for a in range(len(u)):
            r = label[a]
            self.p[r] += u.outer[a] + sum(s for b, s in self.ew[a].items() if label[b] != r)

    def term(self, h: float, a: float, p: float) -> float:
        bal = ((h - self.mu) / self.mu) ** 2
        pen = (max(0.0, self.lo - h) + max(0.0, h - self.hi)) / self.mu * BOUND_WEIGHT
        shape = p / np.sqrt(4 * np.pi * max(a, 1e-6))
        return bal + pen + SHAPE_WEIGHT * shape

    def delta(self, label: np.ndarray, x: int, r: int, t: int) -> tuple[float, float, float]:
        """Change of the objective if unit x moves from region r to t; also the new perimeters."""
        hx, ax = self.u.households[x], self.u.area[x]
        to_r = sum(s for b, s in self.ew[x].items() if label[b] == r)
        to_t = sum(s for b, s in self.ew[x].items() if label[b] == t)
        tot = sum(self.ew[x].values()) + self.u.outer[x]
        pr = self.p[r] - (tot - to_r) + to_r
        pt = self.p[t] - to_t + (tot - to_t)
        before = self.term(self.h[r], self.a[r], self.p[r]) + self.term(self.h[t], self.a[t], self.p[t])
        after = self.term(self.h[r] - hx, self.a[r] - ax, pr) + self.term(self.h[t] + hx, self.a[t] + ax, pt)
        return after - before, pr, pt

    def apply(self, x: int, r: int, t: int, pr: float, pt: float) -> None:
        hx, ax = self.u.households[x], self.u.area[x]
        self.h[r] -= hx
        self.h[t] += hx
        self.a[r] -= ax
        self.a[t] += ax
        self.p[r], self.p[t] = pr, pt

    def total(self) -> float:
        return float(sum(self.term(self.h[r], self.a[r], self.p[r]) for r in range(self.k)))


def grow(u: Units, k: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Seeded region growing: the least-filled region takes its cheapest free adjacent unit."""
    n = len(u)
    if k <= 1 or n <= 1:
        return np.zeros(n, dtype=int)
    w = u.households + 0.02 * max(u.households.mean(), 1.0) * u.area / max(u.area.mean(), 1e-9)
    seeds = kmeans_seeds(u.xy, w, k, rng)
    label = np.full(n, -1, dtype=int)
    h = np.zeros(k)
    heaps: list[list[tuple[float, int]]] = [[] for _ in range(k)]
    anchor = u.xy[seeds]

    def take(r: int, f: int) -> None:
        label[f] = r
        h[r] += u.households[f] + 1e-3 * u.area[f]  # area breaks ties between empty regions
        for b in u.nbrs[f]:
            if label[b] < 0:
                d = float(np.sqrt(((u.xy[b] - anchor[r]) ** 2).sum()))
                heapq.heappush(heaps[r], (d * (ROAD_CROSSING if u.block[b] != u.block[f] else 1.0), b))

    grow_regions(seeds, heaps, label, take, lambda r: h[r])
    for f in np.flatnonzero(label < 0):  # another part of a multi-part parent: nearest region
        label[f] = int(((anchor - u.xy[f]) ** 2).sum(-1).argmin())
    return label


def refine(u: Units, label: np.ndarray, k: int, lo: float, hi: float, rng: np.random.Generator,
           sweeps: int = MAX_SWEEPS) -> np.ndarray:
    """Local search: move boundary units to a neighbouring region while the objective drops.

    A move never empties or disconnects the giving region.
    """
    label = label.copy()
    if k <= 1:
        return label
    obj = _Objective(u, label, k, lo, hi)
    members = [set(np.flatnonzero(label == r).tolist()) for r in range(k)]
    order = np.arange(len(u))
    for _ in range(sweeps):
        moved = 0
        rng.shuffle(order)
        for x in order.tolist():
            r = label[x]
            cands = {label[b] for b in u.nbrs[x]} - {r}
            if not cands:
                continue
            best = None
            for t in sorted(cands):
                d, pr, pt = obj.delta(label, x, r, t)
                if d < -1e-9 and (best is None or d < best[0]):
                    best = (d, t, pr, pt)
            if best is None or not _connected_without(members[r], x, u.nbrs):
                continue
            _, t, pr, pt = best
            obj.apply(x, r, t, pr, pt)
            label[x] = t
            members[r].discard(x)
            members[t].add(x)
            moved += 1
        if not moved:
            break
    return label


def grow_refine(u: Units, k: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """The default method: ``grow`` then ``refine``."""
    return refine(u, grow(u, k, lo, hi, rng), k, lo, hi, rng)


def objective(u: Units, label: np.ndarray, k: int, lo: float, hi: float) -> float:
    """Value of the objective ``refine`` minimises (lower is better)."""
    return _Objective(u, label, k, lo, hi).total()


# ----------------------------------------------------------------------------------------------
# PySAL spopt methods (for comparison)


def _spopt_inputs(u: Units):
    import geopandas as gpd
    from libpysal.weights import W

    neighbors = {i: sorted(d) for i, d in enumerate(u.nbrs)}
    weights = {i: [1.0] * len(neighbors[i]) for i in neighbors}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = W(neighbors, weights, silence_warnings=True)
    xy = (u.xy - u.xy.mean(0)) / max(u.xy.std(), 1e-9)
    gdf = gpd.GeoDataFrame({"x": xy[:, 0], "y": xy[:, 1], "households": u.households.astype("f8")},
                           geometry=list(u.geoms), crs=4326)
    return gdf, w


def spopt_maxp(u: Units, k: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """spopt Max-P: as many regions as possible with at least ``lo`` households, compact in x/y."""
    from spopt.region import MaxPHeuristic

    gdf, w = _spopt_inputs(u)
    if u.households.sum() < lo or len(u) < 2:
        return np.zeros(len(u), dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.random.seed(int(rng.integers(2**31)))
        model = MaxPHeuristic(gdf, w, ["x", "y"], "households", lo, top_n=2, max_iterations_construction=MAXP_CONSTRUCTION,
                              max_iterations_sa=MAXP_ANNEALING)
        model.solve()
    lab = np.asarray(model.labels_, dtype=int)
    lab[lab < 0] = lab.max() + 1 if (lab >= 0).any() else 0  # unassigned units (enclaves) in one extra region
    return _relabel(lab)


def spopt_skater(u: Units, k: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """spopt SKATER: prune a minimum spanning tree (x/y dissimilarity) into ``k`` regions."""
    from spopt.region import Skater

    if k <= 1 or len(u) < 2:
        return np.zeros(len(u), dtype=int)
    gdf, w = _spopt_inputs(u)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Skater(gdf, w, ["x", "y"], n_clusters=min(k, len(u)), floor=1, islands="increase")
        model.solve()
    return _relabel(np.asarray(model.labels_, dtype=int))


def spopt_kmeans(u: Units, k: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """spopt region-k-means: contiguity-constrained k-means on x/y."""
    from spopt.region import RegionKMeansHeuristic

    if k <= 1 or len(u) < 2:
        return np.zeros(len(u), dtype=int)
    gdf, w = _spopt_inputs(u)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.random.seed(int(rng.integers(2**31)))
        model = RegionKMeansHeuristic(gdf[["x", "y"]].to_numpy(), min(k, len(u)), w)
        model.solve()
    return _relabel(np.asarray(model.labels_, dtype=int))


def _relabel(lab: np.ndarray) -> np.ndarray:
    _, inv = np.unique(lab, return_inverse=True)
    return inv.astype(int)


REGION_METHODS = {"grow": grow_refine, "maxp": spopt_maxp, "skater": spopt_skater, "kmeans": spopt_kmeans}
