"""Fast batch point → polygon lookup: a two-level raster answers most points, GEOS the rest.

``GridIndex.build(codes, geoms)`` precomputes, over the extent of the polygons, a raster of fine
cells (about a metre across) grouped into coarse blocks of ``block × block`` fine cells:

* a coarse cell that no polygon boundary touches stores its answer directly (a polygon index, or -1
  for "in no polygon");
* a coarse cell touched by a boundary points to a block of fine cells, each again holding an answer,
  or -2 = "touched by a boundary: ask GEOS".

``GridIndex.locate(lon, lat)`` is then a few vectorised numpy passes (scale, floor, gather); only
the points that fall in boundary fine cells (typically 1–3 %) go to an exact shapely test.

Rule (the same as ``gridserver.areas.locate``): a polygon contains a point when it *covers* it
(interior or boundary); when several polygons cover a point, the one with the smallest code (string
order, ties by input position) wins; a point covered by none, or with a NaN coordinate, gets -1.

Why the fast path can never disagree with the exact test: a fine cell is marked "boundary" when its
box, grown by ``_EPS`` (1e-6 cell, about a micrometre, far above float64 rounding of the cell
arithmetic), meets any polygon edge. Every other cell is a box no edge comes near, so every point in
it — including points that rounding puts one cell off — has the same answer as the cell centre, and
the centre answer comes from a winding-number fill that is exact that far from any edge. Cells where
the fill is ambiguous (overlapping polygons) are sent to the exact test as well, and invalid
geometries are never rasterised: points in their bounding box always take the exact path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import shapely

#: Margin (in fine cells) by which a cell box is grown before testing it against polygon edges.
_EPS = 1e-6
#: Points handled per numpy pass in ``locate`` (keeps the temporaries in cache).
_CHUNK = 1 << 16
#: Values in the raster arrays.
OUTSIDE = -1
EXACT = -2
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQ = 111_320.0


@dataclass
class GridIndex:
    """A point → polygon index over a fixed list of polygons (see the module docstring)."""

    codes: list[str]
    x0: float
    y0: float
    inv_fx: float  # fine cells per degree of longitude
    inv_fy: float  # fine cells per degree of latitude
    nfx: int  # fine cells across (a multiple of ``block``)
    nfy: int
    block: int
    coarse: np.ndarray  # int32 (ncy * ncx): label >= 0, OUTSIDE, or EXACT - k for block k (k >= 0)
    fine: np.ndarray  # int16/int32 (nblocks * block * block): label >= 0, OUTSIDE or EXACT
    tree: shapely.STRtree | None
    tree_ids: np.ndarray  # index into ``codes`` of each geometry in ``tree``
    rank: np.ndarray  # int64: position of each code in (code, index) order
    by_rank: np.ndarray  # int32: inverse of ``rank``
    slow_boxes: np.ndarray  # (k, 4) bounding boxes of invalid geometries: always exact
    stats: dict = field(default_factory=dict)

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        codes: list[str],
        geoms,
        *,
        fine_m: float | None = None,
        block: int = 16,
        max_bytes: int = 64 << 20,
    ) -> "GridIndex":
        """Index ``geoms`` (shapely Polygons/MultiPolygons in EPSG:4326), labelled by ``codes``.

        ``fine_m`` is the fine cell size in metres (default: about 1/100 of the mean polygon side,
        enlarged if needed so the raster stays under ``max_bytes``). Empty or None geometries never
        contain anything. Invalid geometries are answered correctly but always by the exact path.
        """
        t_start = time.perf_counter()
        codes = [str(c) for c in codes]
        geoms = np.asarray(list(geoms), dtype=object)
        if len(codes) != len(geoms):
            raise ValueError(f"{len(codes)} codes but {len(geoms)} geometries")
        n = len(codes)
        if n >= 2**31 - 3:
            raise ValueError("too many polygons")
        if not block or block & (block - 1):
            raise ValueError("block must be a power of two")

        order = np.array(sorted(range(n), key=lambda i: (codes[i], i)), dtype=np.int64)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        by_rank = order.astype(np.int32)

        present = np.array([g is not None and not shapely.is_empty(g) for g in geoms], dtype=bool)
        ids = np.nonzero(present)[0]
        tree = shapely.STRtree(geoms[ids]) if len(ids) else None
        valid = np.zeros(n, dtype=bool)
        if len(ids):
            valid[ids] = shapely.is_valid(geoms[ids])
        bad = ids[~valid[ids]]
        slow_boxes = shapely.bounds(geoms[bad]).reshape(-1, 4) if len(bad) else np.empty((0, 4))
        good = np.nonzero(valid)[0]

        fine_dtype = np.int16 if n < 2**15 - 1 else np.int32
        common = dict(codes=codes, tree=tree, tree_ids=ids.astype(np.int32), rank=rank, by_rank=by_rank,
                      slow_boxes=slow_boxes, block=block)
        if len(good) == 0:
            # Nothing to rasterise: a 1-block raster of "outside" (invalid ones still go exact).
            return cls(x0=0.0, y0=0.0, inv_fx=1.0, inv_fy=1.0, nfx=block, nfy=block,
                       coarse=np.full(1, OUTSIDE, np.int32), fine=np.empty(0, fine_dtype),
                       stats={"build_s": time.perf_counter() - t_start, "polygons": n}, **common)

        # Rings as segment lists, exterior counter-clockwise and holes clockwise (winding fill).
        parts, part_owner = shapely.get_parts(geoms[good], return_index=True)
        parts = shapely.orient_polygons(parts, exterior_cw=False)
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        xy, ring_of = shapely.get_coordinates(rings, return_index=True)
        same = ring_of[1:] == ring_of[:-1]
        seg_owner = good[part_owner[ring_part[ring_of[:-1][same]]]].astype(np.int64)
        ax, ay = xy[:-1, 0][same], xy[:-1, 1][same]
        bx, by = xy[1:, 0][same], xy[1:, 1][same]

        minx, miny = float(xy[:, 0].min()), float(xy[:, 1].min())
        maxx, maxy = float(xy[:, 0].max()), float(xy[:, 1].max())
        m_lon = _M_PER_DEG_LON_EQ * math.cos(math.radians((miny + maxy) / 2))
        if fine_m is None:
            fine_m = _auto_fine_m(geoms[good], ax, ay, bx, by, m_lon, block, max_bytes,
                                  np.dtype(fine_dtype).itemsize, (maxx - minx) * m_lon, (maxy - miny) * _M_PER_DEG_LAT)
        fx, fy = fine_m / m_lon, fine_m / _M_PER_DEG_LAT
        # One whole coarse cell of margin all round, so edges never touch the raster border.
        x0, y0 = minx - block * fx, miny - block * fy
        ncx = int(math.ceil((maxx - x0) / fx / block)) + 1
        ncy = int(math.ceil((maxy - y0) / fy / block)) + 1
        nfx, nfy = ncx * block, ncy * block
        inv_fx, inv_fy = 1.0 / fx, 1.0 / fy

        # Same arithmetic as locate(): (coord - origin) * cells-per-degree.
        ua, va = (ax - x0) * inv_fx, (ay - y0) * inv_fy
        ub, vb = (bx - x0) * inv_fx, (by - y0) * inv_fy
        edge_cells = _boundary_cells(ua, va, ub, vb, nfx, nfy)
        events = _winding_events(ua, va, ub, vb, seg_owner, nfx)
        coarse, fine = _fill(edge_cells, events, nfx, nfy, block, fine_dtype)
        idx = cls(x0=x0, y0=y0, inv_fx=inv_fx, inv_fy=inv_fy, nfx=nfx, nfy=nfy, coarse=coarse, fine=fine,
                  **common)
        nblocks = fine.size // (block * block)
        exact_cells = int(np.count_nonzero(fine == EXACT))
        idx.stats = {
            "build_s": round(time.perf_counter() - t_start, 3),
            "polygons": n,
            "invalid_polygons": int(len(bad)),
            "fine_m": round(fine_m, 3),
            "coarse_m": round(fine_m * block, 3),
            "coarse_cells": int(coarse.size),
            "boundary_blocks": int(nblocks),
            "boundary_block_fraction": round(nblocks / coarse.size, 4),
            "exact_cell_fraction": round(exact_cells / (nfx * nfy), 5),
            "raster_bytes": int(coarse.nbytes + fine.nbytes),
        }
        return idx

    # --- queries -------------------------------------------------------------------------------
    def locate(self, lon, lat) -> np.ndarray:
        """Index into ``codes`` of the polygon covering each point (-1: none, or NaN input).

        ``lon``/``lat`` are equal-length arrays (anything numpy accepts) in EPSG:4326. The answer
        is identical to testing every polygon with shapely ``covers`` and keeping the smallest code.
        """
        x = np.ascontiguousarray(lon, dtype=np.float64).ravel()
        y = np.ascontiguousarray(lat, dtype=np.float64).ravel()
        out, exact = self._raster(x, y)
        if exact.size:
            out[exact] = self.locate_exact(x[exact], y[exact])
        return out

    def raster_answers(self, lon, lat) -> np.ndarray:
        """The raster's answers alone: like ``locate`` but EXACT (-2) where GEOS must decide.

        Every other value is final (the property the tests check against GEOS).
        """
        x = np.ascontiguousarray(lon, dtype=np.float64).ravel()
        y = np.ascontiguousarray(lat, dtype=np.float64).ravel()
        return self._raster(x, y)[0]

    def _raster(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if x.shape != y.shape:
            raise ValueError(f"lon has {x.size} values but lat has {y.size}")
        out = np.empty(x.size, dtype=np.int32)
        exact = []
        for s in range(0, x.size, _CHUNK):
            e = min(s + _CHUNK, x.size)
            m = self._fast(x[s:e], y[s:e], out[s:e])
            if m is not None:
                exact.append(m + s)
        return out, (np.concatenate(exact) if exact else np.empty(0, dtype=np.int64))

    def locate_exact(self, lon, lat) -> np.ndarray:
        """The reference answer by GEOS alone (STRtree + ``intersects``, which for a point is ``covers``)."""
        x = np.asarray(lon, dtype=np.float64).ravel()
        y = np.asarray(lat, dtype=np.float64).ravel()
        out = np.full(x.size, OUTSIDE, dtype=np.int32)
        if self.tree is None or x.size == 0:
            return out
        ok = np.isfinite(x) & np.isfinite(y)
        pts = shapely.points(x[ok], y[ok])
        qi, ti = self.tree.query(pts, predicate="intersects")
        if qi.size == 0:
            return out
        big = np.iinfo(np.int64).max
        best = np.full(pts.size, big, dtype=np.int64)
        np.minimum.at(best, qi, self.rank[self.tree_ids[ti]])
        hit = best != big
        res = np.full(pts.size, OUTSIDE, dtype=np.int32)
        res[hit] = self.by_rank[best[hit]]
        out[ok] = res
        return out

    def code_array(self) -> np.ndarray:
        """``codes`` as a numpy object array with a trailing None, so ``code_array()[idx]`` maps -1 → None."""
        return np.array(self.codes + [None], dtype=object)

    # --- internals -----------------------------------------------------------------------------
    def _fast(self, x: np.ndarray, y: np.ndarray, out: np.ndarray) -> np.ndarray | None:
        """Fill ``out`` from the raster; return positions that need the exact test (or None)."""
        u = x - self.x0
        u *= self.inv_fx
        v = y - self.y0
        v *= self.inv_fy
        inside = (u >= 0) & (u < self.nfx) & (v >= 0) & (v < self.nfy)  # NaN compares False
        all_in = bool(inside.all())
        if not all_in:
            u[~inside] = 0.0
            v[~inside] = 0.0
        gi = u.astype(np.int32)  # truncation == floor for u >= 0
        gj = v.astype(np.int32)
        shift = self.block.bit_length() - 1
        ncx = self.nfx >> shift
        c = self.coarse[(gj >> shift) * ncx + (gi >> shift)]
        deep = np.nonzero(c <= EXACT)[0]
        if deep.size:
            k = (EXACT - c[deep]).astype(np.int64)
            mask = self.block - 1
            c[deep] = self.fine[(k << (2 * shift)) + ((gj[deep] & mask) << shift) + (gi[deep] & mask)]
        if not all_in:
            c[~inside] = OUTSIDE
        if len(self.slow_boxes):
            for bx0, by0, bx1, by1 in self.slow_boxes:
                c[(x >= bx0) & (x <= bx1) & (y >= by0) & (y <= by1)] = EXACT
        out[:] = c
        exact = np.nonzero(c == EXACT)[0] if deep.size or len(self.slow_boxes) else None
        return exact if exact is not None and exact.size else None


def _auto_fine_m(geoms, ax, ay, bx, by, m_lon, block, max_bytes, itemsize, width_m, height_m) -> float:
    """Fine cell size: ~1/100 of the mean polygon side, but keep the raster under ``max_bytes``."""
    area_m2 = float(shapely.area(geoms).sum()) * m_lon * _M_PER_DEG_LAT
    side = math.sqrt(max(area_m2, 1e-6) / len(geoms))
    perim = float(np.hypot((bx - ax) * m_lon, (by - ay) * _M_PER_DEG_LAT).sum())
    # Boundary blocks ≈ 1.5 × perimeter / coarse side, each block × block cells of itemsize bytes.
    by_memory = 1.5 * perim * block * itemsize / (max_bytes * 0.75)
    # Coarse table (4 bytes a cell) under a quarter of the budget.
    by_coarse = math.sqrt(width_m * height_m * 4 / (max_bytes / 4)) / block
    return max(side / 100.0, by_memory, by_coarse, 0.05)


def _boundary_cells(ua, va, ub, vb, nfx, nfy) -> np.ndarray:
    """Sorted unique flat indices (j * nfx + i) of fine cells whose ``_EPS``-grown box meets an edge.

    Edges are cut into pieces at most 2 cells long; each piece is tested against the (up to 4 × 4)
    cells of its bounding box with the separating-axis test (the box axes are covered by the range,
    the edge normal by the signs of the four corners).
    """
    length = np.maximum(np.abs(ub - ua), np.abs(vb - va))
    npieces = np.maximum(np.ceil(length / 2.0).astype(np.int64), 1)
    # Process whole segments in chunks of about 32k pieces (bounded temporaries).
    ends = np.cumsum(npieces)
    cuts = np.unique(np.concatenate([[0], np.searchsorted(ends, np.arange(1 << 15, ends[-1], 1 << 15)), [ua.size]]))
    offs_i, offs_j = np.meshgrid(np.arange(4), np.arange(4))
    offs_i, offs_j = offs_i.ravel(), offs_j.ravel()
    out = []
    for s0, s1 in zip(cuts[:-1], cuts[1:]):
        if s1 <= s0:
            continue
        npc = npieces[s0:s1]
        seg = np.repeat(np.arange(s0, s1), npc)
        k = np.arange(seg.size) - np.repeat(np.cumsum(npc) - npc, npc)
        t0 = k / npieces[seg]
        t1 = (k + 1) / npieces[seg]
        du, dv = ub[seg] - ua[seg], vb[seg] - va[seg]
        # Cut points are rounded (~1e-12 cell), far below _EPS, so the pieces still cover the edge.
        a_u, a_v = ua[seg] + t0 * du, va[seg] + t0 * dv
        b_u, b_v = ua[seg] + t1 * du, va[seg] + t1 * dv
        lo_i = np.floor(np.minimum(a_u, b_u) - 2 * _EPS).astype(np.int64)
        hi_i = np.floor(np.maximum(a_u, b_u) + 2 * _EPS).astype(np.int64)
        lo_j = np.floor(np.minimum(a_v, b_v) - 2 * _EPS).astype(np.int64)
        hi_j = np.floor(np.maximum(a_v, b_v) + 2 * _EPS).astype(np.int64)
        ci = lo_i[:, None] + offs_i[None, :]
        cj = lo_j[:, None] + offs_j[None, :]
        cand = (ci <= hi_i[:, None]) & (cj <= hi_j[:, None])
        d_u = (b_u - a_u)[:, None]
        d_v = (b_v - a_v)[:, None]
        pos = neg = None
        for cu, cv in ((0, 0), (1, 0), (0, 1), (1, 1)):
            px = ci + (cu * (1 + 2 * _EPS) - _EPS) - a_u[:, None]
            py = cj + (cv * (1 + 2 * _EPS) - _EPS) - a_v[:, None]
            cross = d_u * py - d_v * px
            if pos is None:
                pos, neg = cross > 0, cross < 0
            else:
                pos &= cross > 0
                neg &= cross < 0
        hit = cand & ~pos & ~neg
        ci, cj = ci[hit], cj[hit]
        ok = (ci >= 0) & (ci < nfx) & (cj >= 0) & (cj < nfy)
        out.append(np.unique(cj[ok] * nfx + ci[ok]))
    return np.unique(np.concatenate(out)) if out else np.empty(0, np.int64)


def _winding_events(ua, va, ub, vb, owner, nfx):
    """Where each edge crosses each fine-row centre line: (row, first column right of it, weight).

    An edge crosses row j when its end keys K(v) = ceil(v - 0.5) differ (half-open, so rings cross
    every row an even number of times). Weight is ±1 (downward +1: with counter-clockwise exteriors
    a cell's winding number, summed left to right, is 1 inside) carrying the polygon index as well:
    ``(owner + 1) * dir`` and a separate ±1 for the count.
    """
    ka = np.ceil(va - 0.5).astype(np.int64)
    kb = np.ceil(vb - 0.5).astype(np.int64)
    lo, hi = np.minimum(ka, kb), np.maximum(ka, kb)
    cnt = hi - lo
    sel = np.nonzero(cnt > 0)[0]
    cnt = cnt[sel]
    seg = np.repeat(sel, cnt)
    first = np.cumsum(cnt) - cnt
    j = np.repeat(lo[sel], cnt) + (np.arange(seg.size) - np.repeat(first, cnt))
    yc = j + 0.5
    xc = ua[seg] + (yc - va[seg]) * ((ub - ua)[seg] / (vb - va)[seg])
    col = np.clip(np.floor(xc + 0.5), 0, nfx).astype(np.int64)
    direction = np.where(vb[seg] < va[seg], 1, -1).astype(np.int64)
    return j, col, direction, owner[seg] + 1


def _fill(edge_cells, events, nfx, nfy, block, fine_dtype):
    """Build the coarse table and the fine blocks, a band of coarse rows at a time.

    In each band: winding fill (cumulative sums of the row events) gives every fine cell its
    covering-polygon count and index; cells with a count other than 0 or 1, and boundary cells,
    become EXACT. A coarse cell whose fine cells all agree (and are not EXACT) keeps that one
    value; any other gets a fine block.
    """
    row_j, row_col, row_dir, row_lab = events
    order = np.argsort(row_j, kind="stable")
    row_j, row_col, row_dir, row_lab = row_j[order], row_col[order], row_dir[order], row_lab[order]
    ncx, ncy = nfx // block, nfy // block
    band = max(1, (1 << 18) // (nfx * block))  # coarse rows per band: about 256k fine cells
    coarse = np.empty(ncy * ncx, dtype=np.int32)
    blocks = []
    nblk = 0
    width = nfx + 1  # column nfx collects crossings right of the last cell (never summed into a cell)
    for cy0 in range(0, ncy, band):
        cy1 = min(ncy, cy0 + band)
        r0, r1 = cy0 * block, cy1 * block
        nr = r1 - r0
        e0, e1 = np.searchsorted(row_j, [r0, r1])
        flat = (row_j[e0:e1] - r0) * width + row_col[e0:e1]
        cnt = np.bincount(flat, weights=row_dir[e0:e1], minlength=nr * width).reshape(nr, width)
        lab = np.bincount(flat, weights=row_dir[e0:e1] * row_lab[e0:e1], minlength=nr * width).reshape(nr, width)
        cnt = np.cumsum(cnt, axis=1)[:, :nfx]
        lab = np.cumsum(lab, axis=1)[:, :nfx]
        val = np.where(cnt == 1, lab - 1, np.where(cnt == 0, OUTSIDE, EXACT)).astype(np.int32)
        b0, b1 = np.searchsorted(edge_cells, [r0 * nfx, r1 * nfx])
        val.reshape(-1)[edge_cells[b0:b1] - r0 * nfx] = EXACT
        blk = val.reshape(cy1 - cy0, block, ncx, block).transpose(0, 2, 1, 3)
        first = blk[:, :, 0, 0]
        uniform = (blk == first[:, :, None, None]).all(axis=(2, 3)) & (first != EXACT)
        cvals = first.copy()
        mixed = ~uniform
        k = int(np.count_nonzero(mixed))
        if k:
            cvals[mixed] = EXACT - (nblk + np.arange(k, dtype=np.int32))
            blocks.append(blk[mixed].astype(fine_dtype))
            nblk += k
        coarse[cy0 * ncx: cy1 * ncx] = cvals.reshape(-1)
    fine = np.concatenate(blocks).reshape(-1) if blocks else np.empty(0, dtype=fine_dtype)
    return coarse, fine
