"""Exact tilings of polygons into a given number of children that follow roads where they can.

How a parent is cut (``partition``):

1. **Faces.** The parent's boundary and the cut lines (roads, plus the boundaries of earlier
   children) are noded together in one ``unary_union`` and polygonized; the faces whose interior
   point lies in the parent are kept. Faces that are too big for the wanted child size are cut
   further by the Voronoi cells of well-spread points (a few Lloyd iterations on random samples,
   so cells have similar area); those cell edges are clipped to their face (overshooting by 1 cm
   so they reach its boundary) and noded *in the same single pass* as the roads. Every face
   therefore shares its edges vertex for vertex with its neighbours.
2. **Slivers.** Faces under ``SLIVER_M2`` (1 m²) are merged into the neighbour they share the
   longest edge with.
3. **Grouping.** Faces are grouped into the children by region growing from seeds (area-weighted
   k-means of face centroids); the least-filled child always grows next, taking the adjacent face
   nearest its seed, then boundary faces move from over- to under-filled neighbours while both
   stay connected.
4. **Children** are unions of their faces. Because the faces come from one noding of the parent's
   own boundary, the children tile the parent exactly (up to floating-point noding, ~1e-15
   relative): no gaps, no overlaps, every child inside the parent.

All constructive geometry happens in the input coordinates (WGS84 in gridserver): re-projecting
finished polygons would bend their straight edges differently from a neighbour's and open
millimetre gaps. The metric CRS (EPSG:4547) is only used to measure (areas, distances) and to
place the Voronoi cut lines.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import STRtree

from gridserver.errors import InvalidInput
from gridserver.geo.crs import metric_transformer
from gridserver.geo.regions import grow_regions, kmeans_seeds

#: Faces smaller than this (m²) are slivers and are merged into a neighbour.
SLIVER_M2 = 1.0
#: Noding grid (degrees, ~0.1 mm). Lines are noded by snap-rounding to it, which is robust where
#: a road runs almost along a boundary; floating noding falls back to moving whole boundaries.
GRID = 1e-9
#: How far (m) Voronoi cut lines overshoot their face so that they surely reach its boundary.
OVERSHOOT_M = 0.01


# ----------------------------------------------------------------------------------------------
# measuring


def to_metric(geoms):
    """WGS84 geometries → EPSG:4547 (metres). Vectorised over arrays of geometries."""
    tr = metric_transformer()
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def to_wgs84(geoms):
    """EPSG:4547 geometries → WGS84. Vectorised over arrays of geometries."""
    tr = metric_transformer(inverse=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def metric_xy(lon, lat) -> np.ndarray:
    """WGS84 lon/lat arrays → (n, 2) array of EPSG:4547 metres."""
    x, y = metric_transformer().transform(np.asarray(lon, "f8"), np.asarray(lat, "f8"))
    return np.column_stack([x, y])


def as_multipolygon(geom) -> shapely.MultiPolygon:
    """The polygonal parts of ``geom`` as one MultiPolygon (drops stray points/lines)."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
    if not parts:
        sub = [as_multipolygon(g) for g in shapely.get_parts(geom) if g.geom_type.startswith("Multi")]
        parts = [p for m in sub for p in m.geoms]
    return shapely.MultiPolygon(parts)


# ----------------------------------------------------------------------------------------------
# ordering and counting


def reading_order(xy: np.ndarray, row_height: float) -> np.ndarray:
    """Indices of points in reading order: rows north→south, west→east within a row.

    The exact rule (coordinates in metres, y = northing, x = easting): sort the points by
    northing, highest first (ties: smaller easting first). The first point not yet placed opens a
    row with anchor northing ``y0``; every following point in that sorted list with
    ``y >= y0 - row_height / 2`` joins the row. A row is then ordered by easting, smallest first
    (ties: higher northing first). Rows follow each other from north to south.
    """
    xy = np.asarray(xy, dtype="f8").reshape(-1, 2)
    order = sorted(range(len(xy)), key=lambda i: (-xy[i, 1], xy[i, 0]))
    out: list[int] = []
    k = 0
    while k < len(order):
        y0 = xy[order[k], 1]
        row = [order[k]]
        k += 1
        while k < len(order) and xy[order[k], 1] >= y0 - row_height / 2.0:
            row.append(order[k])
            k += 1
        out.extend(sorted(row, key=lambda i: (xy[i, 0], -xy[i, 1])))
    return np.asarray(out, dtype=int)


def allocate(weights, total: int, minimum: int) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, each at least ``minimum``.

    Parts whose proportional share falls below the minimum get the minimum and the rest is shared
    among the others (repeated until stable); fractions go to the largest remainders (ties: lower
    index). The result sums to ``total`` exactly.
    """
    w = np.asarray(weights, dtype="f8")
    n = len(w)
    if n == 0 or total < n * minimum:
        raise InvalidInput(f"cannot split {total} into {n} parts of at least {minimum}")
    fixed = np.zeros(n, dtype=bool)
    while True:
        free_total = total - minimum * fixed.sum()
        share = np.where(fixed, minimum, free_total * w / max(w[~fixed].sum(), 1e-300))
        newly = (~fixed) & (share < minimum)
        if not newly.any():
            break
        fixed |= newly
    counts = np.where(fixed, minimum, np.floor(share)).astype(int)
    rest = total - counts.sum()
    frac = np.where(fixed, -1.0, share - np.floor(share))
    for i in sorted(range(n), key=lambda i: (-frac[i], i))[:rest]:
        counts[i] += 1
    return [int(c) for c in counts]


# ----------------------------------------------------------------------------------------------
# faces


def cut_faces(parent, lines) -> np.ndarray:
    """Faces of ``parent`` cut by ``lines``: their union is the parent, they do not overlap.

    The boundary and the lines are noded in a single pass, so adjacent faces share edges exactly.
    Lines may extend beyond the parent (faces outside it are dropped); dangling lines do not cut.
    """
    lines = np.asarray(lines if lines is not None else [], dtype=object)
    if len(lines):
        lines = lines[shapely.intersects(lines, parent)]
    noded = shapely.unary_union(np.concatenate([[shapely.boundary(parent)], lines]), grid_size=GRID)
    polys = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    if len(polys) == 0:
        return polys
    shapely.prepare(parent)
    keep = shapely.contains(parent, shapely.point_on_surface(polys))
    # A hair-thin face between the boundary and a road running along it has its interior point
    # within rounding of the boundary, so the point test is unreliable there: decide the faces
    # touching the boundary by how much of their area lies inside.
    edge = np.flatnonzero(shapely.intersects(polys, shapely.boundary(parent)))
    if len(edge):
        inside = shapely.area(shapely.intersection(polys[edge], parent, grid_size=GRID))
        keep[edge] = inside > 0.5 * shapely.area(polys[edge])
    return polys[keep]


def _lloyd_points(face_m, k: int, rng: np.random.Generator, samples_per_point: int = 80) -> np.ndarray:
    """``k`` well-spread points in a metric polygon: Lloyd iterations on uniform samples."""
    xmin, ymin, xmax, ymax = face_m.bounds
    want = k * samples_per_point
    pts = np.empty((0, 2))
    shapely.prepare(face_m)
    for _ in range(200):
        cand = rng.uniform((xmin, ymin), (xmax, ymax), size=(max(want, 256), 2))
        pts = np.vstack([pts, cand[shapely.contains_xy(face_m, cand[:, 0], cand[:, 1])]])
        if len(pts) >= want:
            break
    if len(pts) < k:  # degenerate (hair-thin) face: fall back to points along its outline
        ring = shapely.get_exterior_ring(shapely.get_parts(face_m)[0])
        at = np.linspace(0, 1, k, endpoint=False)
        return shapely.get_coordinates(shapely.line_interpolate_point(ring, at, normalized=True))
    pts = pts[:want]
    centers = pts[rng.choice(len(pts), size=k, replace=False)]
    for _ in range(12):
        d = ((pts[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
        lab = d.argmin(1)
        for j in range(k):
            sel = pts[lab == j]
            if len(sel):
                centers[j] = sel.mean(0)
    return centers


def voronoi_cuts(face_m, k: int, rng: np.random.Generator) -> np.ndarray:
    """Metric cut lines that split a metric face into ``k`` Voronoi cells of similar area.

    The cell edges are clipped to the face grown by OVERSHOOT_M, so they cross its boundary.
    """
    if k < 2:
        return np.empty(0, dtype=object)
    centers = _lloyd_points(face_m, k, rng)
    centers = np.unique(np.round(centers, 3), axis=0)
    if len(centers) < 2:
        return np.empty(0, dtype=object)
    env = shapely.buffer(shapely.envelope(face_m), 10.0)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(centers), extend_to=env))
    edges = shapely.get_parts(shapely.union_all(shapely.boundary(cells)))
    clip = shapely.buffer(face_m, OVERSHOOT_M, quad_segs=2)
    out = shapely.get_parts(shapely.intersection(edges, clip))
    out = out[(~shapely.is_empty(out)) & (shapely.get_type_id(out) == 1)]
    return out


# ----------------------------------------------------------------------------------------------
# face graph


@dataclass
class FaceGraph:
    """Faces (WGS84), their metric area and centroid, and shared edge lengths (m) between them."""

    geoms: np.ndarray
    area: np.ndarray
    xy: np.ndarray
    nbrs: list[dict[int, float]]

    @classmethod
    def build(cls, faces) -> FaceGraph:
        faces = np.asarray(faces, dtype=object)
        metric = to_metric(faces)
        area = shapely.area(metric)
        xy = shapely.get_coordinates(shapely.centroid(metric)).reshape(-1, 2)
        nbrs: list[dict[int, float]] = [dict() for _ in range(len(faces))]
        if len(faces) > 1:
            tree = STRtree(faces)
            i, j = tree.query(faces, predicate="intersects")
            sel = i < j
            i, j = i[sel], j[sel]
            bnd = shapely.boundary(metric)
            shared = shapely.length(shapely.intersection(bnd[i], bnd[j]))
            for a, b, s in zip(i.tolist(), j.tolist(), shared.tolist()):
                if s > 1e-6:
                    nbrs[a][b] = s
                    nbrs[b][a] = s
        return cls(faces, area, xy, nbrs)


def merge_slivers(faces, owner: np.ndarray | None = None, min_area: float = SLIVER_M2):
    """Merge faces below ``min_area`` m² into the neighbour with the longest shared edge.

    ``owner`` (optional) gives each face's parent index; slivers only merge within their parent
    (when a sliver has no neighbour of its own parent it is merged across). Returns the new faces
    and their owners.
    """
    g = FaceGraph.build(faces)
    n = len(g.geoms)
    owner = np.zeros(n, dtype=int) if owner is None else np.asarray(owner, dtype=int).copy()
    root = list(range(n))

    def find(a: int) -> int:
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    area = g.area.copy()
    members = {i: [i] for i in range(n)}
    nb = [dict(d) for d in g.nbrs]
    for i in sorted(range(n), key=lambda i: (g.area[i], i)):
        r = find(i)
        if area[r] >= min_area or not nb[r]:
            continue
        cands = sorted(nb[r].items(), key=lambda kv: (owner[kv[0]] != owner[r], -kv[1], kv[0]))
        t = cands[0][0]
        if owner[t] != owner[r]:
            owner[r] = owner[t]
        # merge r into t
        root[r] = t
        area[t] += area[r]
        members[t].extend(members.pop(r))
        for o, s in nb[r].items():
            if o == t:
                continue
            nb[t][o] = nb[t].get(o, 0.0) + s
            nb[o].pop(r, None)
            nb[o][t] = nb[o].get(t, 0.0) + s
        nb[t].pop(r, None)
        nb[r] = {}
    roots = sorted(members)
    out, own = [], []
    for r in roots:
        idx = members[r]
        out.append(g.geoms[idx[0]] if len(idx) == 1 else shapely.union_all(g.geoms[sorted(idx)], grid_size=GRID))
        own.append(owner[idx[0]] if len(idx) == 1 else owner[r])
    return np.asarray(out, dtype=object), np.asarray(own, dtype=int)


# ----------------------------------------------------------------------------------------------
# grouping


def _connected_without(members: set[int], f: int, nbrs: list[dict[int, float]]) -> bool:
    rest = members - {f}
    if not rest:
        return False
    start = min(rest)
    seen = {start}
    stack = [start]
    while stack:
        a = stack.pop()
        for b in nbrs[a]:
            if b in rest and b not in seen:
                seen.add(b)
                stack.append(b)
    return len(seen) == len(rest)


def group_faces(g: FaceGraph, idx: np.ndarray, n: int, rng: np.random.Generator, sweeps: int = 40) -> list[list[int]]:
    """Group faces ``idx`` of ``g`` into ``n`` edge-connected groups of balanced area.

    Region growing from k-means seeds (the least-filled group grows next, by the adjacent free
    face nearest its seed), faces no group can reach join the nearest group, then boundary faces
    move from a fuller group to an adjacent emptier one while that lowers the larger of the two
    and keeps the giver connected.
    """
    idx = np.asarray(idx, dtype=int)
    if len(idx) < n:
        raise InvalidInput(f"cannot group {len(idx)} faces into {n} children")
    local = {int(f): k for k, f in enumerate(idx)}
    xy, w = g.xy[idx], np.maximum(g.area[idx], 1e-9)
    nbrs = [{local[b]: s for b, s in g.nbrs[int(f)].items() if b in local} for f in idx]
    seeds = kmeans_seeds(xy, w, n, rng, iterations=20)
    label = np.full(len(idx), -1, dtype=int)
    area = np.zeros(n)
    heaps: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    anchor = xy[seeds]

    def take(r: int, f: int) -> None:
        label[f] = r
        area[r] += w[f]
        for b in nbrs[f]:
            if label[b] < 0:
                heapq.heappush(heaps[r], (float(((xy[b] - anchor[r]) ** 2).sum()), b))

    grow_regions(seeds, heaps, label, take, lambda r: area[r])
    for f in np.flatnonzero(label < 0):  # unreachable (another part of a multi-part parent)
        r = int(((anchor - xy[f]) ** 2).sum(-1).argmin())
        label[f] = r
        area[r] += w[f]

    members = [set(np.flatnonzero(label == r).tolist()) for r in range(n)]
    for _ in range(sweeps):
        moved = False
        for f in range(len(idx)):
            r = label[f]
            best = None
            for b, s in sorted(nbrs[f].items()):
                t = label[b]
                if t == r or area[t] + w[f] >= area[r]:
                    continue
                if best is None or area[t] < area[best]:
                    best = t
            if best is None or not _connected_without(members[r], f, nbrs):
                continue
            label[f] = best
            members[r].discard(f)
            members[best].add(f)
            area[r] -= w[f]
            area[best] += w[f]
            moved = True
        if not moved:
            break
    return [sorted(idx[sorted(m)].tolist()) for m in members]


# ----------------------------------------------------------------------------------------------
# the partition


def refinement_lines(blocks, target_m2, rng: np.random.Generator, pieces: float) -> np.ndarray:
    """Voronoi cut lines (WGS84) for the blocks that are too big for their owner's child size.

    ``target_m2[k]`` is the child area wanted in block k; a block is cut into
    ``ceil(area / (target / pieces))`` cells of similar area.
    """
    blocks = np.asarray(blocks, dtype=object)
    metric = to_metric(blocks)
    area = shapely.area(metric)
    out = []
    for k in range(len(blocks)):
        cell = target_m2[k] / pieces
        ncut = int(np.ceil(area[k] / cell - 1e-9))
        if ncut >= 2:
            out.append(voronoi_cuts(metric[k], ncut, rng))
    if not out:
        return np.empty(0, dtype=object)
    return to_wgs84(np.concatenate(out))


def partition(outer, parents, counts, lines, rng: np.random.Generator, *, pieces: float = 4.0):
    """Tile every parent (all inside ``outer``, tiling it) into ``counts[k]`` children.

    ``lines`` are the cut lines to follow (roads, WGS84); blocks between them larger than
    ``target / pieces`` (target = parent area / count) are cut by Voronoi cells first, so each
    child is grouped from about ``pieces`` faces or more (more balances areas better, fewer
    keeps more boundaries on roads). Returns ``(parent_geoms, children)``:
    the parents rebuilt from their faces (equal to the inputs up to noding) and, per parent, a
    list of child MultiPolygons in no particular order. Children are unions of faces cut from one
    noding of ``outer``'s boundary, the parents' boundaries and the lines, so every level tiles
    its parent exactly.
    """
    parents = list(parents)
    counts = [int(c) for c in counts]
    if len(parents) != len(counts):
        raise InvalidInput("partition: one count per parent is needed")
    lines = np.asarray(lines if lines is not None else [], dtype=object)
    parent_bnd = [shapely.boundary(p) for p in parents] if len(parents) > 1 else []
    base = np.concatenate([lines, np.asarray(parent_bnd, dtype=object)])

    # blocks = outer cut by roads and parent boundaries; refine those too big for their children
    blocks = cut_faces(outer, base)
    owner = _owners(blocks, parents)
    parent_area = shapely.area(to_metric(np.asarray(parents, dtype=object)))
    target = parent_area / np.asarray(counts, dtype="f8")
    cuts = refinement_lines(blocks, target[owner], rng, pieces)

    faces = cut_faces(outer, np.concatenate([base, cuts]))
    owner = _owners(faces, parents)
    faces, owner = merge_slivers(faces, owner)
    g = FaceGraph.build(faces)
    new_parents, children = [], []
    for k in range(len(parents)):
        idx = np.flatnonzero(owner == k)
        groups = group_faces(g, idx, counts[k], rng)
        kids = [as_multipolygon(shapely.union_all(g.geoms[grp], grid_size=GRID)) for grp in groups]
        children.append(kids)
        new_parents.append(as_multipolygon(shapely.union_all(g.geoms[idx], grid_size=GRID)))
    return new_parents, children


def _owners(faces, parents) -> np.ndarray:
    """Index of the parent containing each face's interior point."""
    if len(parents) == 1:
        return np.zeros(len(faces), dtype=int)
    pts = shapely.point_on_surface(faces)
    tree = STRtree(np.asarray(parents, dtype=object))
    fi, pi = tree.query(pts, predicate="within")
    owner = np.full(len(faces), -1, dtype=int)
    owner[fi] = pi
    if (owner < 0).any():  # a point exactly on a parent boundary: take the nearest parent
        miss = np.flatnonzero(owner < 0)
        near = tree.nearest(pts[miss])
        owner[miss] = near
    return owner


def metric_area(geoms, max_segment_deg: float = 5e-5) -> np.ndarray:
    """Areas (m², EPSG:4547) of WGS84 geometries, their edges first split into ≤ ~5 m pieces.

    A straight WGS84 edge is a slightly curved line in EPSG:4547; moving only the vertices would
    measure two polygons that share an edge exactly in WGS84 as overlapping or gapped by up to a few
    millimetres when one of them has an extra vertex on that edge.
    """
    return shapely.area(to_metric(shapely.segmentize(np.asarray(geoms, dtype=object), max_segment_deg)))
