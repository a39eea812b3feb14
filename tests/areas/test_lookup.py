"""GridIndex (raster + GEOS batch lookup) against a brute-force shapely ``covers`` ground truth.

Ground truth rule: a polygon contains a point when it covers it (interior or boundary); among
several, the smallest code wins; none (or NaN) → -1.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.ops import voronoi_diagram

from gridserver.areas.lookup import EXACT, GridIndex
from gridserver.settings import get_settings

REGION = (113.255, 23.12, 113.285, 23.14)  # ~3 km × 2.2 km near 越秀


def brute_force(codes, geoms, x, y) -> np.ndarray:
    """Per polygon in code order, ``covers`` on the still-unassigned points in its bounding box."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    res = np.full(x.size, -1, dtype=np.int64)
    for i in sorted(range(len(codes)), key=lambda i: (codes[i], i)):
        g = geoms[i]
        if g is None or g.is_empty:
            continue
        x0, y0, x1, y1 = g.bounds
        m = np.nonzero((res == -1) & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))[0]
        if m.size:
            hit = shapely.covers(g, shapely.points(x[m], y[m]))
            res[m[hit]] = i
    return res


def voronoi_tiling(region_geom, n: int, rng) -> list:
    """Voronoi cells of ``n`` random seeds inside ``region_geom``, clipped to it (they tile it)."""
    x0, y0, x1, y1 = region_geom.bounds
    seeds = []
    while len(seeds) < n:
        c = rng.uniform([x0, y0], [x1, y1], (n * 2, 2))
        seeds.extend(c[shapely.contains_xy(region_geom, c[:, 0], c[:, 1])].tolist())
    cells = voronoi_diagram(shapely.MultiPoint(seeds[:n]), envelope=region_geom.envelope.buffer(0.01))
    out = []
    for cell in cells.geoms:
        p = cell.intersection(region_geom)
        if not p.is_empty and p.area > 0:
            out.append(p)
    return out


def edge_midpoints(geoms) -> np.ndarray:
    """Midpoints of every ring segment: on shared edges these lie on two polygons' boundaries."""
    rings = shapely.get_rings(shapely.get_parts(np.asarray(geoms, dtype=object)))
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[1:] == ring[:-1]
    return ((xy[:-1] + xy[1:]) / 2)[same]


def probe_points(geoms, rng, n_random: int, pad: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """Random points over (a bit more than) the extent, all vertices, edge midpoints, near-vertex
    nudges, far-away points and NaN/inf."""
    xs, ys = [], []
    x0, y0, x1, y1 = shapely.total_bounds(np.asarray(geoms, dtype=object))
    xs.append(rng.uniform(x0 - pad, x1 + pad, n_random))
    ys.append(rng.uniform(y0 - pad, y1 + pad, n_random))
    verts = shapely.get_coordinates(np.asarray(geoms, dtype=object))
    xs.append(verts[:, 0])
    ys.append(verts[:, 1])
    mids = edge_midpoints(geoms)
    xs.append(mids[:, 0])
    ys.append(mids[:, 1])
    sub = verts[rng.choice(len(verts), min(len(verts), 3000), replace=False)]
    for d in (1e-13, 1e-10, 1e-7):
        for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1)):
            xs.append(sub[:, 0] + sx * d)
            ys.append(sub[:, 1] + sy * d)
    xs.append(np.array([0.0, 180.0, x0 - 1, x1 + 1, np.nan, 113.27, np.nan, np.inf, -np.inf]))
    ys.append(np.array([0.0, 90.0, y0, y1, 23.13, np.nan, np.nan, 23.13, 23.13]))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def tiling():
    rng = np.random.default_rng(20261123)
    geoms = voronoi_tiling(box(*REGION), 400, rng)
    # Codes in an order unrelated to the list order, so "smallest code" ≠ "first polygon".
    codes = [f"440104{n:09d}" for n in rng.permutation(len(geoms)) * 7 + 100]
    return codes, geoms


@pytest.mark.parametrize("kwargs", [{}, {"fine_m": 7.0, "block": 4}, {"fine_m": 0.5, "block": 32}])
def test_voronoi_tiling_matches_brute_force(tiling, kwargs):
    codes, geoms = tiling
    rng = np.random.default_rng(7)
    x, y = probe_points(geoms, rng, 200_000)
    idx = GridIndex.build(codes, geoms, **kwargs)
    truth = brute_force(codes, geoms, x, y)
    got = idx.locate(x, y)
    bad = np.nonzero(got != truth)[0]
    assert bad.size == 0, f"{bad.size} mismatches, first at ({x[bad[0]]!r}, {y[bad[0]]!r}): {got[bad[0]]} vs {truth[bad[0]]}"
    # The raster alone must never contradict GEOS, and must answer most random points itself.
    fast = idx.raster_answers(x, y)
    decided = fast != EXACT
    assert np.array_equal(fast[decided], truth[decided])
    assert decided[:200_000].mean() > 0.8
    # Shared vertices and edges really exercise the smallest-code rule.
    verts = shapely.get_coordinates(np.asarray(geoms, dtype=object))
    per_vertex = shapely.STRtree(geoms).query(shapely.points(verts), predicate="intersects")[0]
    assert np.bincount(per_vertex).max() >= 3


def test_random_points_mostly_avoid_exact_path(tiling):
    codes, geoms = tiling
    idx = GridIndex.build(codes, geoms)
    rng = np.random.default_rng(3)
    x = rng.uniform(REGION[0], REGION[2], 100_000)
    y = rng.uniform(REGION[1], REGION[3], 100_000)
    assert (idx.raster_answers(x, y) == EXACT).mean() < 0.1
    assert idx.stats["raster_bytes"] < 200 << 20
    assert 0 < idx.stats["exact_cell_fraction"] < 0.1


def test_holes_multipolygons_overlaps_invalid_and_empty():
    donut = Polygon([(113.26, 23.12), (113.28, 23.12), (113.28, 23.14), (113.26, 23.14)],
                    [[(113.265, 23.125), (113.275, 23.125), (113.275, 23.135), (113.265, 23.135)]])
    island = box(113.267, 23.127, 113.273, 23.133)  # inside the hole, not touching
    filler = box(113.265, 23.125, 113.275, 23.127)  # inside the hole, sharing the hole's south edge
    multi = MultiPolygon([box(113.29, 23.12, 113.295, 23.125), box(113.297, 23.12, 113.30, 23.125)])
    over_a = box(113.30, 23.13, 113.31, 23.14)
    over_b = box(113.305, 23.135, 113.315, 23.145)  # overlaps over_a: the interior overlap goes to a's code
    bowtie = Polygon([(113.25, 23.15), (113.26, 23.16), (113.26, 23.15), (113.25, 23.16)])  # invalid
    cw = Polygon([(113.24, 23.12), (113.24, 23.125), (113.245, 23.125), (113.245, 23.12)])  # clockwise shell
    geoms = [donut, island, filler, multi, over_b, over_a, bowtie, Polygon(), None, cw]
    codes = ["9", "5", "4", "3", "2", "1", "0", "6", "7", "8"]
    idx = GridIndex.build(codes, geoms)
    assert idx.stats["invalid_polygons"] == 1
    rng = np.random.default_rng(11)
    present = [g for g in geoms if g is not None and not g.is_empty]
    x, y = probe_points(present, rng, 100_000, pad=0.005)
    truth = brute_force(codes, geoms, x, y)
    assert np.array_equal(idx.locate(x, y), truth)
    fast = idx.raster_answers(x, y)
    assert np.array_equal(fast[fast != EXACT], truth[fast != EXACT])
    # Spot checks of the rule itself.
    got = idx.locate([113.27, 113.266, 113.2675, 113.307, 113.2925, 113.296, 113.2425, 113.27],
                     [23.13, 23.121, 23.126, 23.137, 23.122, 23.122, 23.1225, 23.125])
    assert [codes[i] if i >= 0 else None for i in got] == ["5", "9", "4", "1", "3", None, "8", "4"]


def test_empty_inputs_and_errors(tiling):
    codes, geoms = tiling
    idx = GridIndex.build(codes, geoms)
    out = idx.locate(np.array([]), np.array([]))
    assert out.dtype == np.int32 and out.size == 0
    assert list(idx.locate([np.nan], [23.13])) == [-1]
    with pytest.raises(ValueError):
        idx.locate([1.0, 2.0], [1.0])
    empty = GridIndex.build([], [])
    assert list(empty.locate([113.27, np.nan], [23.13, 1.0])) == [-1, -1]
    with pytest.raises(ValueError):
        GridIndex.build(["a"], [])


def test_points_on_raster_cell_edges(tiling):
    """Points placed exactly on fine-cell edges (where floor() rounding could go either way)."""
    codes, geoms = tiling
    idx = GridIndex.build(codes, geoms)
    rng = np.random.default_rng(5)
    i = rng.integers(0, idx.nfx, 50_000)
    j = rng.integers(0, idx.nfy, 50_000)
    x = idx.x0 + i / idx.inv_fx
    y = idx.y0 + j / idx.inv_fy
    x = np.concatenate([x, np.nextafter(x, -np.inf), np.nextafter(x, np.inf)])
    y = np.concatenate([y, np.nextafter(y, np.inf), np.nextafter(y, -np.inf)])
    assert np.array_equal(idx.locate(x, y), brute_force(codes, geoms, x, y))


@pytest.fixture(scope="module")
def yuexiu_streets():
    path = get_settings().yuexiu_dir / "yuexiu_subdistricts_osm_wgs84.geojson"
    if not path.exists():
        pytest.skip(f"real Yuexiu street polygons not available at {path}")
    import geopandas as gpd

    df = gpd.read_file(path)
    return [str(c) for c in df["ref:admin:CN:nbs"]], list(df.geometry.values)


def test_real_yuexiu_streets(yuexiu_streets):
    codes, geoms = yuexiu_streets
    idx = GridIndex.build(codes, geoms)
    rng = np.random.default_rng(1)
    x, y = probe_points(geoms, rng, 200_000)
    truth = brute_force(codes, geoms, x, y)
    assert (truth >= 0).mean() > 0.3
    assert np.array_equal(idx.locate(x, y), truth)


def test_real_yuexiu_streets_divided_into_grids(yuexiu_streets):
    codes, streets = yuexiu_streets
    rng = np.random.default_rng(2)
    geoms, gcodes = [], []
    for scode, s in zip(codes, streets):
        for k, cell in enumerate(voronoi_tiling(s, 25, rng)):
            geoms.append(cell)
            gcodes.append(f"{scode}{k:06d}")
    idx = GridIndex.build(gcodes, geoms)
    x, y = probe_points(geoms, rng, 200_000)
    assert np.array_equal(idx.locate(x, y), brute_force(gcodes, geoms, x, y))


def test_polygon_edges_lying_on_raster_cell_edges():
    """Boxes whose edges coincide with fine-cell edges: the worst case for the floor() in locate."""
    x0r, y0r, x1r, y1r = REGION
    corners = [box(x0r, y0r, x0r + 1e-4, y0r + 1e-4), box(x1r - 1e-4, y1r - 1e-4, x1r, y1r)]
    probe = GridIndex.build(["a", "b"], corners, fine_m=2.0)
    fx, fy = 1 / probe.inv_fx, 1 / probe.inv_fy
    gx = probe.x0 + (np.arange(11) * 37 + 600) * fx  # raster cell corners inside the region
    gy = probe.y0 + (np.arange(11) * 29 + 500) * fy
    geoms, codes = list(corners), ["a", "b"]
    for i in range(10):
        for j in range(10):
            geoms.append(box(gx[i], gy[j], gx[i + 1], gy[j + 1]))
            codes.append(f"c{(i * 7 + j * 3) % 100:03d}")
    idx = GridIndex.build(codes, geoms, fine_m=2.0)
    assert (idx.x0, idx.inv_fx, idx.y0, idx.inv_fy) == (probe.x0, probe.inv_fx, probe.y0, probe.inv_fy)
    px, py = np.meshgrid(np.linspace(gx[0] - 3 * fx, gx[-1] + 3 * fx, 701), gy)
    qx, qy = np.meshgrid(gx, np.linspace(gy[0] - 3 * fy, gy[-1] + 3 * fy, 701))
    x = np.concatenate([px.ravel(), qx.ravel()])
    y = np.concatenate([py.ravel(), qy.ravel()])
    x = np.concatenate([x, np.nextafter(x, -np.inf), np.nextafter(x, np.inf), x, x])
    y = np.concatenate([y, y, y, np.nextafter(y, -np.inf), np.nextafter(y, np.inf)])
    truth = brute_force(codes, geoms, x, y)
    assert (truth >= 2).mean() > 0.5
    assert np.array_equal(idx.locate(x, y), truth)
    fast = idx.raster_answers(x, y)
    assert np.array_equal(fast[fast != EXACT], truth[fast != EXACT])
