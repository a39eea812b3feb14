"""Bench: import of ~2,000 grids + topology over a synthetic Voronoi city (district/18 streets/222 communities).
Baseline: conftest.load_areas (row-by-row INSERT) on the same rows, same run."""
import sys, tempfile, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT))
import numpy as np, shapely, geopandas as gpd
from shapely.geometry import box
from gridserver.db import engine as eng
from common import emit, scratch_database  # bench/common.py: a migrated scratch DB on DATABASE_URL's server or the embedded one

import argparse
_ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_ap.add_argument("--communities", type=int, default=222, help="Voronoi communities (default 222, ~2,000 grids)")
_ap.add_argument("--grids-per-community", type=int, default=9)
A = _ap.parse_args()

with scratch_database("gs_bench_areas"), tempfile.TemporaryDirectory(prefix="gs-bench-areas-") as tmp:
    rng = np.random.default_rng(1)
    D = "440177"; x0, y0, x1, y1 = 113.25, 23.10, 113.31, 23.16
    dist = box(x0, y0, x1, y1)
    def vor(poly, n):
        bx = poly.bounds
        pts = []
        while len(pts) < n:
            p = shapely.Point(rng.uniform(bx[0], bx[2]), rng.uniform(bx[1], bx[3]))
            if poly.contains(p): pts.append(p)
        cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=poly.buffer(0.01)))
        out = [c.intersection(poly) for c in cells]
        return [shapely.segmentize(c, 0.0003) for c in out if c.area > 0]
    comms = vor(dist, A.communities)
    sseeds = np.array([[rng.uniform(x0, x1), rng.uniform(y0, y1)] for _ in range(18)])
    cent = np.array([[c.centroid.x, c.centroid.y] for c in comms])
    owner = np.argmin(((cent[:, None, :] - sseeds[None]) ** 2).sum(-1), axis=1)
    rows = [dict(level="district", code=D, name="区", parent_code=None, geom=dist)]
    scodes = {}
    for k in sorted(set(owner)):
        sc = f"{D}{k+1:03d}"; scodes[k] = sc
        rows.append(dict(level="street", code=sc, name=f"街{k}", parent_code=D,
                         geom=shapely.union_all([c for c, o in zip(comms, owner) if o == k])))
    grids = []
    cnt = {}
    for c, o in zip(comms, owner):
        sc = scodes[o]; cnt[sc] = cnt.get(sc, 0) + 1
        cc = f"{sc}{cnt[sc]:03d}"
        rows.append(dict(level="community", code=cc, name=f"社{cc}", parent_code=sc, geom=c))
        for j, g in enumerate(vor(c, A.grids_per_community)):
            grids.append(dict(level="grid", code=f"{cc}{j+1:03d}", name=f"格{cc}{j}", parent_code=cc, geom=g))
    nverts = shapely.get_num_coordinates([g["geom"] for g in grids])
    print(f"synthetic city: {len(rows)-len([r for r in rows if r['level']=='community'])-1} streets, "
          f"{sum(r['level']=='community' for r in rows)} communities, {len(grids)} grids, "
          f"mean {nverts.mean():.0f} vertices/grid")
    from gridserver.areas.importer import import_areas
    from gridserver.areas.topology import check_topology
    by = {}
    for r in rows + grids: by.setdefault(r["level"], []).append(r)
    for lvl, rs in by.items():
        gpd.GeoDataFrame({"code": [r["code"] for r in rs], "name": [r["name"] for r in rs]},
                         geometry=[r["geom"] for r in rs], crs=4326).to_file(f"{tmp}/{lvl}.geojson")
    for lvl in ("district", "street", "community"):
        import_areas(f"{tmp}/{lvl}.geojson", lvl)
    t = time.perf_counter(); r = import_areas(f"{tmp}/grid.geojson", "grid"); t_imp = time.perf_counter() - t
    print(f"import_areas grids: {r.inserted} inserted in {t_imp:.2f} s")
    t = time.perf_counter(); r2 = import_areas(f"{tmp}/grid.geojson", "grid"); t_re = time.perf_counter() - t
    print(f"re-import (all unchanged={r2.unchanged}): {t_re:.2f} s")
    e = eng.get_engine()
    with e.connect() as conn:
        for lvl in (None, "grid"):
            t = time.perf_counter(); iss = check_topology(conn, level=lvl); dt = time.perf_counter() - t
            if lvl is None: topo_s = dt
            kinds = {}
            for i in iss: kinds[i.kind] = kinds.get(i.kind, 0) + 1
            print(f"check_topology(level={lvl}): {dt:.2f} s, {len(iss)} issues {kinds}")
        t = time.perf_counter(); iss = check_topology(conn, tolerance=0); dt = time.perf_counter() - t
        print(f"check_topology(tolerance=0): {dt:.2f} s, {len(iss)} issues (float dust included)")
    from conftest import load_areas
    e = eng.get_engine()
    with e.begin() as c: c.execute(__import__("sqlalchemy").text("DELETE FROM admin_areas WHERE level='grid'"))
    t = time.perf_counter(); load_areas(e, grids); t_base = time.perf_counter() - t
    print(f"baseline conftest.load_areas (row-by-row INSERT, no checks): {t_base:.2f} s  -> importer/baseline = {t_imp/t_base:.2f}")
    with e.connect() as conn:
        t = time.perf_counter(); iss = check_topology(conn); print(f'check_topology on the baseline rows (WKT rounded to 1e-6 deg by conftest.load_areas): {time.perf_counter()-t:.2f} s, {len(iss)} issues')
    emit("areas_import_topology", grids=len(grids), import_s=round(t_imp, 3), reimport_s=round(t_re, 3),
         baseline_insert_s=round(t_base, 3), import_vs_baseline=round(t_imp / t_base, 3), topology_s=round(topo_s, 3))
