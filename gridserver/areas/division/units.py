"""Building cells inside road blocks: the units grids are made of.

Promise of ``build_units``: the returned faces tile the parent exactly (one noding of the parent's
boundary, the road lines and the building-cell lines, see ``demo.partition.cut_faces``), every
building is in exactly one unit (the one covering its interior point; a point on a shared edge goes
to the nearest face), and ``nbrs[a][b]`` is the length in metres of the edge units a and b share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import STRtree

from gridserver.demo import partition as part
from gridserver.errors import InvalidInput

#: Blocks below this area (m²) are merged into a neighbour before buildings are placed.
MIN_BLOCK_M2 = 20.0
#: Faces below this area (m²) are merged into a neighbour (slivers of noding).
MIN_FACE_M2 = 1.0
#: Footprint outlines are sampled this often (m) for the cells between buildings.
SAMPLE_M = 4.0


@dataclass
class Buildings:
    """Buildings to divide: codes, WGS84 footprints (or points) and household counts."""

    codes: np.ndarray
    geoms: np.ndarray
    households: np.ndarray

    def __post_init__(self):
        self.codes = np.asarray(self.codes, dtype=object)
        self.geoms = np.asarray(self.geoms, dtype=object)
        self.households = np.asarray(self.households, dtype=np.int64)
        if not (len(self.codes) == len(self.geoms) == len(self.households)):
            raise InvalidInput("buildings: codes, geometries and household counts differ in length")
        if len(self.households) and self.households.min() < 0:
            bad = int(np.flatnonzero(self.households < 0)[0])
            raise InvalidInput(f"building {self.codes[bad]}: household count {self.households[bad]} is negative")
        if len(self.geoms) and (shapely.is_missing(self.geoms) | shapely.is_empty(self.geoms)).any():
            bad = int(np.flatnonzero(shapely.is_missing(self.geoms) | shapely.is_empty(self.geoms))[0])
            raise InvalidInput(f"building {self.codes[bad]} has no geometry")

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def points(self) -> np.ndarray:
        """One interior point per building (WGS84)."""
        return shapely.point_on_surface(self.geoms)

    def subset(self, idx) -> Buildings:
        idx = np.asarray(idx, dtype=int)
        return Buildings(self.codes[idx], self.geoms[idx], self.households[idx])


@dataclass
class Units:
    """The unit graph of one parent area."""

    geoms: np.ndarray          # WGS84 faces tiling the parent
    block: np.ndarray          # road block index of each unit
    households: np.ndarray     # households per unit
    nbuildings: np.ndarray     # buildings per unit
    area: np.ndarray           # m² (EPSG:4547)
    xy: np.ndarray             # (n, 2) metric centroids
    nbrs: list[dict[int, float]]  # shared edge length (m) per neighbour
    outer: np.ndarray          # length (m) of each unit's edge on the parent outline
    building_unit: np.ndarray  # unit index of each building

    def __len__(self) -> int:
        return len(self.geoms)

    def crosses_road(self, a: int, b: int) -> bool:
        """True when the edge between units a and b separates two road blocks (so follows a road)."""
        return bool(self.block[a] != self.block[b])


def _inside_index(points, polys) -> np.ndarray:
    """Index of the polygon covering each point; points covered by none get the nearest polygon."""
    tree = STRtree(np.asarray(polys, dtype=object))
    pi, fi = tree.query(points, predicate="covered_by")
    out = np.full(len(points), -1, dtype=int)
    # a point on a shared edge is covered by two faces: keep the first (lowest index) deterministically
    order = np.lexsort((fi, pi))[::-1]
    out[pi[order]] = fi[order]
    miss = np.flatnonzero(out < 0)
    if len(miss):
        out[miss] = tree.nearest(points[miss])
    return out


def _cell_lines(block_m, fps_m: np.ndarray) -> np.ndarray:
    """Metric lines separating the footprints ``fps_m`` inside ``block_m`` (crossing its outline slightly).

    Each footprint's outline is sampled every ``SAMPLE_M`` metres; the Voronoi cells of the samples
    are dissolved per building, so the separating lines run midway between footprints and never
    through one (for footprints that do not overlap).
    """
    fps_m = np.asarray(fps_m, dtype=object)
    if len(fps_m) < 2:
        return np.empty(0, dtype=object)
    rings = shapely.segmentize(shapely.boundary(fps_m), SAMPLE_M)
    pts, owner = shapely.get_coordinates(rings, return_index=True)
    pts = np.round(pts, 2)
    pts, first = np.unique(pts, axis=0, return_index=True)
    owner = owner[first]
    if len(np.unique(owner)) < 2:
        return np.empty(0, dtype=object)
    env = shapely.buffer(shapely.envelope(block_m), 10.0)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=env, ordered=True))
    merged = [shapely.coverage_union_all(cells[owner == o]) for o in np.unique(owner)]
    edges = shapely.get_parts(shapely.union_all(shapely.boundary(np.asarray(merged, dtype=object))))
    clip = shapely.buffer(block_m, part.OVERSHOOT_M, quad_segs=2)
    out = shapely.get_parts(shapely.intersection(edges, clip))
    return out[(~shapely.is_empty(out)) & (shapely.get_type_id(out) == 1)]


def footprint_or_point(geoms) -> np.ndarray:
    """Polygonal footprints as they are; anything else (points, lines) as a tiny square around its
    interior point, so every building has an outline to sample."""
    geoms = np.asarray(geoms, dtype=object)
    poly = shapely.get_dimensions(geoms) == 2
    out = geoms.copy()
    if (~poly).any():
        out[~poly] = shapely.buffer(shapely.point_on_surface(geoms[~poly]), 2e-6, quad_segs=1)
    return out


def road_blocks(parent, road_lines) -> np.ndarray:
    """The parent cut by the road lines into blocks (tiny blocks merged into a neighbour)."""
    blocks = part.cut_faces(parent, road_lines)
    if len(blocks) == 0:
        raise InvalidInput("the area has no polygonal extent to divide")
    if len(blocks) > 1:
        blocks, _ = part.merge_slivers(blocks, min_area=MIN_BLOCK_M2)
    return np.asarray(blocks, dtype=object)


def build_units(parent, buildings: Buildings, road_lines) -> Units:
    """Cut ``parent`` (WGS84) into road blocks and building cells; see the module docstring."""
    road_lines = np.asarray(road_lines if road_lines is not None else [], dtype=object)
    blocks = road_blocks(parent, road_lines)
    pts = buildings.points
    bblock = _inside_index(pts, blocks) if len(buildings) else np.empty(0, dtype=int)

    fps_m = part.to_metric(footprint_or_point(buildings.geoms)) if len(buildings) else np.empty(0, dtype=object)
    blocks_m = part.to_metric(blocks)
    cuts = []
    for b in np.unique(bblock):
        sel = bblock == b
        if sel.sum() >= 2:
            cuts.append(_cell_lines(blocks_m[b], fps_m[sel]))
    cut_lines = part.to_wgs84(np.concatenate(cuts)) if cuts else np.empty(0, dtype=object)
    block_edges = shapely.get_parts(shapely.boundary(blocks)) if len(blocks) > 1 else np.empty(0, dtype=object)
    faces = part.cut_faces(parent, np.concatenate([block_edges, cut_lines]))
    faces, _ = part.merge_slivers(faces, min_area=MIN_FACE_M2)
    g = part.FaceGraph.build(faces)
    block = _inside_index(shapely.point_on_surface(g.geoms), blocks)
    bunit = _inside_index(pts, g.geoms) if len(buildings) else np.empty(0, dtype=int)
    n = len(g.geoms)
    households = np.bincount(bunit, weights=buildings.households, minlength=n).astype(np.int64)
    nbuildings = np.bincount(bunit, minlength=n).astype(np.int64)
    perim = shapely.length(part.to_metric(g.geoms))
    shared = np.array([sum(d.values()) for d in g.nbrs]) if n else np.zeros(0)
    outer = np.maximum(perim - shared, 0.0)
    return Units(geoms=g.geoms, block=block, households=households, nbuildings=nbuildings, area=g.area,
                 xy=g.xy, nbrs=g.nbrs, outer=outer, building_unit=bunit)
