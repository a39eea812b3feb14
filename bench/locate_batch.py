"""Batch point → grid lookup: GridIndex against shapely STRtree, geopandas sjoin and PostGIS.

Builds ~1,893 grids of ~50 vertices over Yuexiu (the real OSM street polygons, each cut into
Voronoi cells of random seeds, edges densified), draws N random points over the extent, runs every
method on the same points in one process, checks they all give identical answers (covers, smallest
code wins), and prints points/s and the ratio of GridIndex to each baseline.

Timings include, for each method, everything from coordinate arrays to one grid index per point:
building shapely points for the shapely/geopandas paths, the min-code reduction, and for PostGIS
the join query plus streaming its (point, grid) pairs back; loading the points (COPY, geometry,
GiST index) is reported separately, and also as a total with the join.

    .venv/bin/python bench/locate_batch.py [--n 1000000] [--grids 1893] [--repeat 2] [--no-postgis]
                                           [--city voronoi|demo]
"""

from __future__ import annotations

import argparse
import io
import time
import tracemalloc

import numpy as np
import shapely
from common import emit, scratch_database, voronoi_split  # bench/common.py (the script directory is on sys.path)

from gridserver.areas.lookup import GridIndex
from gridserver.settings import get_settings


def yuexiu_grids(n_grids: int, target_vertices: int, rng) -> tuple[list[str], list]:
    """Streets cut into ~n_grids Voronoi cells (seeds ∝ area), densified to ~target_vertices each."""
    import geopandas as gpd

    path = get_settings().yuexiu_dir / "yuexiu_subdistricts_osm_wgs84.geojson"
    if path.exists():
        df = gpd.read_file(path)
        streets = list(df.geometry.values)
        scodes = [str(c) for c in df["ref:admin:CN:nbs"]]
    else:  # no ../shared: a generated outline of Yuexiu's size cut into 18 streets
        from gridserver.demo.synthetic import synthetic_outline

        print(f"{path} not found: using a generated city of the same size")
        streets = voronoi_split(synthetic_outline(rng, 33.8), 18, rng)
        scodes = [f"440104{i + 1:03d}" for i in range(len(streets))]
    areas = np.array([s.area for s in streets])
    quota = np.maximum(1, np.round(n_grids * areas / areas.sum()).astype(int))
    codes, geoms = [], []
    for scode, street, k in zip(scodes, streets, quota):
        parts = voronoi_split(street, k, rng)
        # Grid codes: street + community 001 + 3-digit sequence (prefix-hierarchical like the real ones).
        for i, p in enumerate(parts):
            codes.append(f"{scode}{1 + i // 999:03d}{1 + i % 999:03d}")
            geoms.append(p)
    geoms_arr = np.asarray(geoms, dtype=object)
    perim = shapely.length(geoms_arr).sum()
    step = perim / (target_vertices * len(geoms))
    geoms_arr = shapely.segmentize(geoms_arr, step)
    return codes, list(geoms_arr)


def min_code_reduce(n: int, point_idx: np.ndarray, poly_idx: np.ndarray, rank: np.ndarray, by_rank) -> np.ndarray:
    """From (point, polygon) hit pairs, the polygon with the smallest code per point (-1: none)."""
    big = np.iinfo(np.int64).max
    best = np.full(n, big, dtype=np.int64)
    np.minimum.at(best, point_idx, rank[poly_idx])
    out = np.full(n, -1, dtype=np.int32)
    hit = best != big
    out[hit] = by_rank[best[hit]]
    return out


def run_strtree(tree, x, y, rank, by_rank):
    pts = shapely.points(x, y)
    qi, ti = tree.query(pts, predicate="covered_by")
    return min_code_reduce(x.size, qi, ti, rank, by_rank)


def run_sjoin(polys_gdf, x, y, rank, by_rank):
    import geopandas as gpd

    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=4326)
    j = gpd.sjoin(pts, polys_gdf, predicate="intersects", how="inner")
    return min_code_reduce(x.size, j.index.to_numpy(), j["index_right"].to_numpy(), rank, by_rank)


class PostGIS:
    """Its best plain form here: polygons and points in temp tables, both GiST-indexed, so the
    join is driven from the (few) polygons and PostGIS reuses each prepared polygon for all of its
    points (a points-outer join, without the points index, ran ~3x slower)."""

    def __init__(self, codes, geoms):
        import psycopg

        from gridserver.db.engine import conninfo

        self.conn = psycopg.connect(conninfo(), autocommit=True)
        cur = self.conn.cursor()
        cur.execute("SET jit = off")  # compiling the plan only costs time for this query
        cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        cur.execute("CREATE TEMP TABLE bench_grids (idx int, code text, geom geometry(MultiPolygon, 4326))")
        with cur.copy("COPY bench_grids (idx, code, geom) FROM STDIN") as cp:
            for i, (c, g) in enumerate(zip(codes, geoms)):
                wkb = shapely.to_wkb(shapely.multipolygons(shapely.get_parts(g)), hex=True, include_srid=True)
                cp.write_row((i, c, wkb))
        cur.execute("CREATE INDEX ON bench_grids USING gist (geom)")
        cur.execute("ANALYZE bench_grids")

    def load_points(self, x, y) -> None:
        """COPY the points in (geometry computed on the way in), index and analyze them."""
        cur = self.conn.cursor()
        cur.execute("DROP TABLE IF EXISTS bench_pts")
        cur.execute("""CREATE TEMP TABLE bench_pts (id int, lon float8, lat float8,
                         geom geometry(Point, 4326) GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED)""")
        buf = io.StringIO()
        np.savetxt(buf, np.column_stack([np.arange(x.size), x, y]), fmt=["%d", "%.17g", "%.17g"], delimiter=",")
        with cur.copy("COPY bench_pts (id, lon, lat) FROM STDIN WITH (FORMAT csv)") as cp:
            cp.write(buf.getvalue())
        cur.execute("CREATE INDEX ON bench_pts USING gist (geom)")
        cur.execute("ANALYZE bench_pts")

    def join(self, n: int, rank, by_rank) -> np.ndarray:
        """All (point, grid) pairs with ST_Covers, streamed back; smallest code per point in numpy."""
        cur = self.conn.cursor()
        sql = "COPY (SELECT p.id, g.idx FROM bench_grids g JOIN bench_pts p ON ST_Covers(g.geom, p.geom)) TO STDOUT"
        with cur.copy(sql) as cp:
            data = b"".join(bytes(block) for block in cp)
        pairs = np.loadtxt(io.BytesIO(data), dtype=np.int64, ndmin=2) if data else np.empty((0, 2), np.int64)
        return min_code_reduce(n, pairs[:, 0], pairs[:, 1], rank, by_rank)


def pipeline_bench(codes, geoms, x, y, repeat: int) -> dict:
    """POST /api/v1/locate's server work from body bytes to response bytes (no socket): the previous
    implementation (pandas CSV parsing, per-row Python string joins) against the current one (pyarrow
    CSV parsing, pyarrow-built output), same index, same CSV body; answers must be byte-identical."""
    from gridserver.areas import batch

    index = batch.index_from_rows(1, [(c, g, None, None, None) for c, g in zip(codes, geoms)])
    ids = np.char.add("p", np.arange(x.size).astype(str))
    buf = io.StringIO()
    np.savetxt(buf, np.column_stack([ids, np.char.mod("%.17g", x), np.char.mod("%.17g", y)]), fmt="%s",
               delimiter=",", header="id,lon,lat", comments="")
    body = buf.getvalue().encode()

    def old(as_csv):
        pts = batch._from_csv_pandas(body, None)
        lon, lat = batch.to_lonlat(pts)
        found = index.grid.locate(lon, lat)
        out_ids = batch._ids_for_output(list(pts.ids))
        gen = batch._csv(out_ids, found, index.csv_tail) if as_csv else batch._ndjson(out_ids, found, index.json_tail)
        return b"".join(c.encode() for c in gen)

    def new(as_csv):
        pts = batch._from_csv_bytes(body, None)
        return b"".join(batch.locate_points(pts, index, as_csv)[1])

    out = {"body_mb": round(len(body) / 2**20, 1)}
    print(f"\nPOST /api/v1/locate server work, {x.size:,} CSV points ({out['body_mb']} MB body), no socket:")
    for fmt, as_csv in (("ndjson", False), ("csv", True)):
        t_old, r_old = timed(lambda: old(as_csv), repeat)
        t_new, r_new = timed(lambda: new(as_csv), repeat)
        same = r_old == r_new
        print(f"  {fmt:6s} previous {t_old:6.3f} s ({x.size / t_old:12,.0f} pts/s)   now {t_new:6.3f} s "
              f"({x.size / t_new:12,.0f} pts/s)   {t_old / t_new:5.1f}× faster   identical bytes: {'yes' if same else 'NO'}")
        if not same:
            raise SystemExit(f"{fmt}: the two implementations answer differently")
        out.update({f"pipeline_{fmt}_old_pts_s": round(x.size / t_old), f"pipeline_{fmt}_new_pts_s": round(x.size / t_new),
                    f"pipeline_{fmt}_x_faster": round(t_old / t_new, 1)})
    abody = arrow_body(ids, x, y)
    t_arrow, _ = timed(lambda: b"".join(batch.locate_points(
        batch.parse_points("application/vnd.apache.arrow.stream", abody, None), index, "arrow")[1]), repeat)
    print(f"  arrow  (Arrow IPC stream in and out, {len(abody) / 2**20:.1f} MB body) {t_arrow:6.3f} s "
          f"({x.size / t_arrow:12,.0f} pts/s)")
    out["pipeline_arrow_pts_s"] = round(x.size / t_arrow)
    return out


def arrow_body(ids, x, y) -> bytes:
    """The same points as an Arrow IPC stream (id, lon, lat), as pyarrow/polars/duckdb would send them."""
    import pyarrow as pa

    tbl = pa.table({"id": pa.array(ids), "lon": x, "lat": y})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, tbl.schema) as w:
        w.write_table(tbl)
    return sink.getvalue().to_pybytes()


def http_bench(codes, geoms, x, y, repeat: int) -> dict:
    """End to end over a socket: the grids in a scratch database, the production app under uvicorn in a
    subprocess, one admin-token POST per format: the CSV body answered as NDJSON and as CSV, and the
    same points as an Arrow IPC stream answered as Arrow (the fast option); seconds from sending to
    the last byte. The Arrow answer must carry the same codes as the CSV one."""
    import http.client
    import os
    import secrets
    import socket
    import subprocess
    import sys
    from datetime import timedelta
    from pathlib import Path

    import psycopg
    from sqlalchemy import create_engine

    from gridserver.auth.security import create_access_token
    from gridserver.auth.users import create_user
    from gridserver.db.engine import conninfo

    ids = np.char.add("p", np.arange(x.size).astype(str))
    buf = io.StringIO()
    np.savetxt(buf, np.column_stack([ids, np.char.mod("%.17g", x), np.char.mod("%.17g", y)]), fmt="%s",
               delimiter=",", header="id,lon,lat", comments="")
    body = buf.getvalue().encode()
    out = {}
    with scratch_database("gs_bench_locate_http") as db_url:
        with psycopg.connect(conninfo()) as conn:
            conn.cursor().executemany(
                "INSERT INTO admin_areas (level, code, name, geom, source) "
                "VALUES ('grid', %s, %s, ST_Multi(ST_GeomFromWKB(%s, 4326)), 'bench')",
                [(c, f"网格{c}", shapely.to_wkb(g)) for c, g in zip(codes, geoms)])
        secret = secrets.token_urlsafe(32)
        get_settings().jwt_secret = secret
        eng = create_engine(db_url)
        with eng.begin() as conn:
            create_user(conn, "bench_admin", secrets.token_urlsafe(16), "admin")
        eng.dispose()
        token = create_access_token("bench_admin", expires_delta=timedelta(hours=1))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = dict(os.environ, DATABASE_URL=db_url, GRIDSERVER_JWT_SECRET=secret)
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "gridserver.api:create_app", "--factory",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                env=env, cwd=Path(__file__).resolve().parent.parent)
        try:
            first_byte = {}

            bodies = {"ndjson": (body, "text/csv"), "csv": (body, "text/csv"),
                      "arrow": (arrow_body(ids, x, y), "application/vnd.apache.arrow.stream")}

            def post(fmt: str) -> bytes:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                t = time.perf_counter()
                c.request("POST", f"/api/v1/locate?format={fmt}", body=bodies[fmt][0],
                          headers={"content-type": bodies[fmt][1], "authorization": f"Bearer {token}"})
                r = c.getresponse()  # the answer is computed before the headers go out
                first_byte[fmt] = min(first_byte.get(fmt, 1e9), time.perf_counter() - t)
                data = r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
                return data

            deadline = time.monotonic() + 60
            while True:
                try:
                    post("ndjson")  # also loads the index
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            print(f"\nPOST /api/v1/locate over HTTP (uvicorn, admin token), {x.size:,} points "
                  f"(CSV body {len(body) / 2**20:.1f} MB, Arrow body {len(bodies['arrow'][0]) / 2**20:.1f} MB):")
            answers = {}
            for fmt, label in (("ndjson", "CSV → NDJSON"), ("csv", "CSV → CSV"), ("arrow", "Arrow → Arrow")):
                sec, data = timed(lambda: post(fmt), repeat)
                answers[fmt] = data
                print(f"  {label:14s} {sec:6.3f} s  {x.size / sec:12,.0f} pts/s  ({len(data) / 2**20:.0f} MB answer; "
                      f"headers after {first_byte[fmt]:.3f} s, the rest is the transfer)")
                out[f"http_{fmt}_pts_s"] = round(x.size / sec)
                out[f"http_{fmt}_first_byte_s"] = round(first_byte[fmt], 3)
            import pyarrow as pa
            import pyarrow.csv as pacsv

            got = pa.ipc.open_stream(answers["arrow"]).read_all()
            want = pacsv.read_csv(pa.py_buffer(answers["csv"]), convert_options=pacsv.ConvertOptions(
                column_types={f: pa.string() for f in got.column_names}, strings_can_be_null=True))
            same = all(got.column(f).cast(pa.string()).to_pylist() == want.column(f).to_pylist() for f in got.column_names)
            print(f"  Arrow answer = CSV answer (every id and code): {'yes' if same else 'NO'}")
            if not same:
                raise SystemExit("the Arrow answer differs from the CSV one")
        finally:
            proc.terminate()
            proc.wait(30)
    return out


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="points (default 1,000,000)")
    ap.add_argument("--grids", type=int, default=1893)
    ap.add_argument("--vertices", type=int, default=50, help="mean vertices per grid")
    ap.add_argument("--repeat", type=int, default=2, help="best of this many runs per method")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-postgis", action="store_true")
    ap.add_argument("--no-http", action="store_true", help="skip the end-to-end HTTP measurement")
    ap.add_argument("--pipeline-only", action="store_true",
                    help="only the POST /api/v1/locate server-work comparison (and GridIndex.locate)")
    ap.add_argument("--city", choices=("voronoi", "demo"), default="voronoi",
                    help="voronoi: streets cut by random seeds (default); demo: gridserver.demo.city.build_city "
                         "(real-looking grids, ~30 s to build)")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)

    if a.city == "demo":
        from gridserver.demo.city import build_city

        grid = build_city(get_settings().shared_dir, seed=0)["grid"]
        codes, geoms = [str(c) for c in grid["code"]], list(grid.geometry.values)
    else:
        codes, geoms = yuexiu_grids(a.grids, a.vertices, rng)
    nv = shapely.get_num_coordinates(np.asarray(geoms, dtype=object))
    print(f"grids: {len(geoms)}, vertices/grid mean {nv.mean():.1f} (min {nv.min()}, max {nv.max()})")
    x0, y0, x1, y1 = shapely.total_bounds(np.asarray(geoms, dtype=object))
    x = rng.uniform(x0, x1, a.n)
    y = rng.uniform(y0, y1, a.n)

    t = time.perf_counter()
    idx = GridIndex.build(codes, geoms)
    build_s = time.perf_counter() - t
    tracemalloc.start()  # a second build, traced, for its peak memory (tracing slows it down)
    GridIndex.build(codes, geoms)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"GridIndex build {build_s:.2f} s, peak build memory {peak / 2**20:.0f} MB, "
          f"raster {idx.stats['raster_bytes'] / 2**20:.1f} MB; stats {idx.stats}")

    results: dict[str, tuple[float, np.ndarray]] = {}
    results["GridIndex.locate"] = timed(lambda: idx.locate(x, y), a.repeat)
    n_exact = int((idx.raster_answers(x, y) == -2).sum())
    print(f"points sent to the exact test: {n_exact} ({n_exact / a.n:.2%}); "
          f"inside some grid: {(results['GridIndex.locate'][1] >= 0).mean():.1%}")

    pipeline = pipeline_bench(codes, geoms, x, y, max(2, a.repeat))
    pipeline["index_over_ndjson_pipeline"] = round(pipeline["pipeline_ndjson_new_pts_s"] and
                                                   (a.n / results["GridIndex.locate"][0]) / pipeline["pipeline_ndjson_new_pts_s"], 1)
    if not a.no_http:
        pipeline.update(http_bench(codes, geoms, x, y, max(2, a.repeat)))
        pipeline["index_over_http_ndjson"] = round((a.n / results["GridIndex.locate"][0]) / pipeline["http_ndjson_pts_s"], 1)
        pipeline["http_ndjson_over_previous_pipeline"] = round(pipeline["http_ndjson_pts_s"]
                                                               / pipeline["pipeline_ndjson_old_pts_s"], 1)
    if a.pipeline_only:
        emit("locate_batch", points=a.n, grids=len(geoms), gridindex_pts_s=round(a.n / results["GridIndex.locate"][0]),
             **pipeline, identical=True)
        return

    tree = shapely.STRtree(geoms)
    results["shapely STRtree covered_by"] = timed(lambda: run_strtree(tree, x, y, idx.rank, idx.by_rank), a.repeat)

    import geopandas as gpd

    polys_gdf = gpd.GeoDataFrame({"code": codes}, geometry=geoms, crs=4326)
    polys_gdf.sindex  # built once, like the STRtree
    results["geopandas sjoin intersects"] = timed(lambda: run_sjoin(polys_gdf, x, y, idx.rank, idx.by_rank), a.repeat)

    copy_s = None
    if not a.no_postgis:
        with scratch_database("gs_bench_locate"):  # DATABASE_URL's server, or the embedded PostGIS
            pg = PostGIS(codes, geoms)
            t = time.perf_counter()
            pg.load_points(x, y)
            copy_s = time.perf_counter() - t
            results["PostGIS ST_Covers join"] = timed(lambda: pg.join(a.n, idx.rank, idx.by_rank), a.repeat)
            pg.conn.close()

    ref = results["GridIndex.locate"][1]
    print()
    print(f"{'method':34s} {'seconds':>8s} {'points/s':>12s} {'GridIndex ×':>12s}  identical")
    fast = results["GridIndex.locate"][0]
    for name, (sec, res) in results.items():
        same = np.array_equal(res, ref)
        print(f"{name:34s} {sec:8.3f} {a.n / sec:12,.0f} {sec / fast:12.1f}  {'yes' if same else 'NO'}")
        if not same:
            bad = np.nonzero(res != ref)[0]
            print(f"   {bad.size} differ, e.g. point {bad[0]} ({x[bad[0]]!r}, {y[bad[0]]!r}): {res[bad[0]]} vs {ref[bad[0]]}")
    if copy_s is not None:
        sec = results["PostGIS ST_Covers join"][0] + copy_s
        print(f"{'PostGIS incl. loading the points':34s} {sec:8.3f} {a.n / sec:12,.0f} {sec / fast:12.1f}"
              f"  (COPY + point index alone {copy_s:.3f} s)")
    if not all(np.array_equal(r, ref) for _, r in results.values()):
        raise SystemExit("methods disagree")
    emit("locate_batch", points=a.n, grids=len(geoms), gridindex_pts_s=round(a.n / fast),
         **{f"x_vs_{k.split()[0].lower()}_{k.split()[1].lower()}": round(results[k][0] / fast, 1)
            for k in results if k != "GridIndex.locate"}, **pipeline, identical=True)


if __name__ == "__main__":
    main()
