"""Analytics at volume: aggregates, hot spots, OGC paging, exports and the dask job over N incidents.

Uses the database at DATABASE_URL when ``--db`` names an existing database with the demo city
built in it (``gridserver demo --no-addresses --scale none``); otherwise it creates a temporary database on that
server (or the embedded PostGIS), builds the demo city there without the address base, and drops it
at the end (``--keep`` keeps it; with ``--db`` the added rows stay, reuse them with ``--incidents 0``). Then it adds ``--incidents`` synthetic incidents (default 1 M)
spread over two years, located with the batch grid index, and measures in one run, each against a
baseline measured alongside it:

* aggregate by grid / by month / by H3 res 9 (``aggregate.count_table``) vs the bare SQL
  ``GROUP BY grid_code`` (or the bare point fetch, for H3);
* the hot-spot report by grid (7 d over 28 d) vs the same two windows counted in bare SQL;
* OGC items pages of 1,000 features at offset 0, deep offsets, and the last page by keyset (``after``);
* GeoParquet export of the whole table, and the month/Hilbert-partitioned dataset;
* the dask-geopandas job on a 3-worker LocalCluster vs PostGIS for the same aggregate (equal?);
* table, index and file sizes.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/analytics.py [--incidents 1000000] [--db NAME] [--keep]

Prints a table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def best(fn, repeat: int = 3):
    """(best wall time over ``repeat`` runs, last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def server_url(db: str) -> str:
    from gridserver.db import embedded
    from gridserver.settings import get_settings

    s = get_settings()
    if s.database_url:
        base = s.database_url.replace("postgresql+psycopg://", "postgresql://")
        return base.rsplit("/", 1)[0] + "/" + db
    embedded.start(s)
    return embedded.url(s, db).replace("postgresql+psycopg://", "postgresql://")


def use_database(url: str) -> None:
    from gridserver.db import engine
    from gridserver.settings import get_settings

    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    engine.reset()


def add_incidents(engine, n: int, seed: int, end: datetime) -> int:
    """``n`` incidents uniformly over the city's grids' extent (those inside a grid kept), 2 years before ``end``."""
    from gridserver.areas.batch import current_index
    from gridserver.incidents.categories import CATEGORIES

    rng = np.random.default_rng(seed)
    with engine.connect() as conn:
        from sqlalchemy import text

        x0, y0, x1, y1 = conn.execute(text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM admin_areas "
            "WHERE level = 'grid' AND valid_to IS NULL) s")).first()
    index = current_index()
    lc = index.level_codes
    cats = np.array(list(CATEGORIES))
    done = 0
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        cur.execute("DELETE FROM incidents WHERE source = 'bench'")
        while done < n:
            m = min(200_000, int((n - done) * 1.4) + 10)
            lon, lat = rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)
            k = index.grid.locate(lon, lat)
            keep = np.flatnonzero(k >= 0)[: n - done]
            secs = rng.integers(0, 730 * 86400, len(keep))
            cat = rng.choice(cats, len(keep))
            status = rng.choice(["reported", "dispatched", "handling", "closed"], len(keep))
            buf = io.StringIO()
            for j, i in enumerate(keep):
                kk = k[i]
                ts = (end - timedelta(seconds=int(secs[j]))).isoformat()
                buf.write(f"{cat[j]}\tbench\t{status[j]}\tSRID=4326;POINT({float(lon[i])!r} {float(lat[i])!r})\t{lc['grid_code'][kk]}\t"
                          f"{lc['community_code'][kk]}\t{lc['street_code'][kk]}\t{lc['district_code'][kk]}\tbench\t{ts}\t{ts}\n")
            with cur.copy("COPY incidents (category, description, status, geom, grid_code, community_code, street_code,"
                          " district_code, source, created_at, updated_at) FROM STDIN") as copy:
                copy.write(buf.getvalue())
            done += len(keep)
        raw.commit()
        cur.execute("ANALYZE incidents")
        raw.commit()
    finally:
        raw.close()
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--incidents", type=int, default=1_000_000, help="synthetic incidents to add (0: reuse those of a previous --db run)")
    ap.add_argument("--db", help="existing database with the demo city (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary database")
    ap.add_argument("--workers", type=int, default=3)
    args = ap.parse_args()

    from sqlalchemy import text

    from gridserver.db import embedded

    temp = None
    if args.db:
        use_database(server_url(args.db))
    else:
        temp = f"bench_analytics_{os.getpid()}"
        admin = server_url("postgres")
        embedded.ensure_database(admin.replace("postgresql://", "postgresql+psycopg://"), temp)
        use_database(server_url(temp))
        from gridserver.demo.build import build_demo

        build_demo(seed=0, incidents=3000, addresses=False, scale="none")  # no block data: analytics never reads it

    from gridserver.analytics import aggregate as agg
    from gridserver.analytics import distributed as dist
    from gridserver.analytics import export, features, layers
    from gridserver.auth.users import User
    from gridserver.db.engine import get_engine

    engine = get_engine()
    res: dict = {}
    end = datetime(2026, 11, 1, tzinfo=timezone.utc)
    t0 = time.perf_counter()
    if args.incidents:
        res["incidents_added"] = add_incidents(engine, args.incidents, 7, end)
        res["load_seconds"] = round(time.perf_counter() - t0, 1)
    analyst = User(id=0, username="bench", full_name="", role="analyst", scope_code=None, department=None,
                   active=True, created_at=datetime.now())
    inc = layers.LAYERS["incidents"]
    try:
        with engine.connect() as conn:
            res["incidents_total"] = conn.execute(text("SELECT count(*) FROM incidents")).scalar_one()
            res["grids"] = conn.execute(text("SELECT count(*) FROM admin_areas WHERE level='grid' AND valid_to IS NULL")).scalar_one()
            sizes = conn.execute(text(
                "SELECT pg_relation_size('incidents'), pg_indexes_size('incidents'), pg_total_relation_size('incidents'),"
                " pg_total_relation_size('admin_areas')")).first()
            res["incidents_table_mb"], res["incidents_indexes_mb"], res["incidents_total_mb"], res["admin_areas_mb"] = (
                round(v / 2**20, 1) for v in sizes)

            def sql_grid():
                return conn.execute(text("SELECT grid_code, count(*) FROM incidents GROUP BY 1")).all()

            base, _ = best(sql_grid)
            t_grid, _ = best(lambda: agg.count_table(conn, inc, agg.AggregateSpec(by="grid"), analyst))
            t_month, month_df = best(lambda: agg.count_table(conn, inc, agg.AggregateSpec(by="grid", bucket="month"), analyst))
            res["sql_group_by_grid_s"] = round(base, 3)
            res["aggregate_grid_s"], res["aggregate_grid_ratio"] = round(t_grid, 3), round(t_grid / base, 2)
            res["aggregate_grid_month_s"], res["aggregate_grid_month_rows"] = round(t_month, 3), len(month_df[0])

            def sql_points():
                return conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM incidents")).all()

            base_pts, _ = best(sql_points, 1)
            t_h3, _ = best(lambda: agg.count_table(conn, inc, agg.AggregateSpec(by="h3", h3_res=9), analyst), 1)
            res["sql_fetch_points_s"], res["aggregate_h3_9_s"] = round(base_pts, 3), round(t_h3, 3)
            res["aggregate_h3_ratio_vs_fetch"] = round(t_h3 / base_pts, 2)

            hot_end = end
            t_hot, hot = best(lambda: agg.hotspot_report(conn, inc, by="grid", window=timedelta(days=7),
                                                         baseline=timedelta(days=28), end=hot_end, categories=[],
                                                         user=analyst), 1)

            def sql_hot():
                return conn.execute(text(
                    "SELECT grid_code, count(*) FILTER (WHERE created_at >= :w), count(*) FROM incidents "
                    "WHERE created_at >= :b AND created_at < :e GROUP BY 1"),
                    {"w": end - timedelta(days=7), "b": end - timedelta(days=35), "e": end}).all()

            base_hot, _ = best(sql_hot)
            res["hotspots_grid_s"], res["hotspots_ratio_vs_sql_counts"] = round(t_hot, 3), round(t_hot / base_hot, 2)
            res["hotspots_flagged_on_uniform_data"] = hot["flagged"]

            for off in (0, 100_000, res["incidents_total"] - 1000):
                q = features.FeatureQuery(limit=1000, offset=off)
                t, page = best(lambda: features.fetch_features(conn, inc, q, analyst))
                res[f"ogc_page_1000_offset_{off}_s"] = round(t, 3)
            last = conn.execute(text("SELECT id FROM incidents ORDER BY id OFFSET :n LIMIT 1"),
                                {"n": res["incidents_total"] - 1001}).scalar_one()
            q = features.FeatureQuery(limit=1000, after=str(last))
            t, _ = best(lambda: features.fetch_features(conn, inc, q, analyst))
            res["ogc_page_1000_keyset_last_s"] = round(t, 3)
            t_cnt, _ = best(lambda: features.count_features(conn, inc, features.FeatureQuery(), analyst))
            res["ogc_number_matched_s"] = round(t_cnt, 3)

            tmp = Path(tempfile.mkdtemp(prefix="bench-analytics-"))
            t0 = time.perf_counter()
            n = export.export_query(conn, inc, features.FeatureQuery(limit=None), analyst, "parquet", tmp / "all.parquet")
            res["export_geoparquet_s"] = round(time.perf_counter() - t0, 1)
            res["export_geoparquet_rows_per_s"] = round(n / (time.perf_counter() - t0))
            res["export_geoparquet_mb"] = round((tmp / "all.parquet").stat().st_size / 2**20, 1)
            t0 = time.perf_counter()
            man = dist.export_partitioned(conn, tmp / "ds")
            res["partitioned_export_s"] = round(time.perf_counter() - t0, 1)
            res["partitioned_files"] = len(man["files"])
            res["partitioned_mb"] = round(sum(p.stat().st_size for p in (tmp / "ds").rglob("*.parquet")) / 2**20, 1)

            spec = agg.AggregateSpec(by="grid", bucket="month")
            t_pg, want = best(lambda: dist.postgis_table(conn, spec))
            grids = dist.current_grids(conn)
        client, cluster = dist.open_client("local", args.workers)
        try:
            files = dist.select_files(tmp / "ds", None, None)
            dist.dask_aggregate(files[:1], spec, grids, client)  # warm the workers (imports)
            t_dask, got = best(lambda: dist.dask_aggregate(files, spec, grids, client), 1)
        finally:
            client.close()
            cluster.close()
        res["postgis_grid_month_s"], res["dask_grid_month_s"] = round(t_pg, 3), round(t_dask, 2)
        res["dask_ratio_vs_postgis"] = round(t_dask / t_pg, 2)
        res["dask_equals_postgis"] = bool(got.astype({"count": "int64"}).equals(want))
        res["dask_workers"] = args.workers
    finally:
        import shutil

        if "tmp" in locals():
            shutil.rmtree(tmp, ignore_errors=True)
        if temp and not args.keep:
            from gridserver.db import engine as eng

            eng.reset()
            embedded.drop_database(server_url("postgres").replace("postgresql://", "postgresql+psycopg://"), temp)
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    if args.db:
        print(f"(the bench incidents stay in {args.db} with source = 'bench'; rerun with --incidents 0 to reuse them)")
    print(json.dumps({"bench": "analytics", **res}))

if __name__ == "__main__":
    main()
