"""The aggregate as a distributed job: dask-geopandas over GeoParquet partitioned by month and Hilbert order.

Layout written by ``export_partitioned`` (one dataset per layer)::

    DIR/month=2026-03/part-0000.parquet   GeoParquet 1.0 (WKB points, EPSG:4326), rows in Hilbert order
    DIR/month=2026-03/part-0001.parquet
    DIR/_manifest.json                    per file: month, rows, bbox, Hilbert range

Time pruning reads only the months a query needs (from the manifest); inside a month files cover
contiguous Hilbert ranges, so each file is a compact patch of the city and a spatial filter can
skip files by bbox. The job (``dask_aggregate``) is the same aggregate as ``aggregate.count_table``
on PostGIS: admin levels by a spatial join of each partition against the current grids (covers,
smallest code on shared edges — the documented boundary rule, same answers as ``areas/lookup.py``),
cut to the level's code length; H3 cells with the h3 library; periods in China Standard Time.
``analyze_command`` (``gridserver analyze``) runs it on a dask scheduler (``local`` starts a
``distributed.LocalCluster``) and can compare it with PostGIS.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import typer
from sqlalchemy import text

from gridserver.analytics.aggregate import AggregateSpec, parse_by, parse_time
from gridserver.analytics.jobs import FREQ, partial_counts
from gridserver.errors import InvalidInput

ROWS_PER_FILE = 50_000
_CST = ZoneInfo("Asia/Shanghai")


# --- writing the partitioned GeoParquet dataset ---------------------------------------------------
def export_partitioned(conn, out_dir: Path, *, rows_per_file: int = ROWS_PER_FILE,
                       start: datetime | None = None, end: datetime | None = None, progress=None) -> dict:
    """Write the incidents (no free text, no reporter) as GeoParquet partitioned by month and Hilbert order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cond, params = "TRUE", {}
    if start:
        cond += " AND created_at >= :s"
        params["s"] = start
    if end:
        cond += " AND created_at < :e"
        params["e"] = end
    months = [r[0] for r in conn.execute(text(
        f"SELECT DISTINCT to_char(created_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM') FROM incidents WHERE {cond} ORDER BY 1"),
        params)]
    ext = conn.execute(text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                            "(SELECT ST_Extent(geom) e FROM incidents) s")).first()
    bounds = [float(v) for v in ext] if ext[0] is not None else [0.0, 0.0, 1.0, 1.0]
    files = []
    for m_i, month in enumerate(months):
        y, m = (int(v) for v in month.split("-"))
        m0 = datetime(y, m, 1, tzinfo=_CST)
        m1 = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=_CST)
        # a range on created_at (index-friendly), not to_char(): one month read per query
        gdf = gpd.read_postgis(text(
            f"SELECT id, category, status, created_at, grid_code, geom FROM incidents WHERE {cond} "
            "AND created_at >= :m0 AND created_at < :m1"), conn, geom_col="geom",
            params={**params, "m0": m0, "m1": m1})
        gdf["hilbert"] = gdf.geometry.hilbert_distance(total_bounds=bounds, level=16).astype("int64")
        gdf = gdf.sort_values(["hilbert", "id"]).reset_index(drop=True)
        part_dir = out_dir / f"month={month}"
        part_dir.mkdir(exist_ok=True)
        for old in part_dir.glob("part-*.parquet"):
            old.unlink()
        for k, lo in enumerate(range(0, len(gdf), rows_per_file)):
            chunk = gdf.iloc[lo:lo + rows_per_file]
            path = part_dir / f"part-{k:04d}.parquet"
            chunk.to_parquet(path, index=False)
            files.append({"path": str(path.relative_to(out_dir)), "month": month, "rows": len(chunk),
                          "bbox": [float(v) for v in chunk.total_bounds],
                          "hilbert": [int(chunk["hilbert"].iloc[0]), int(chunk["hilbert"].iloc[-1])]})
        if progress:
            progress(m_i + 1, len(months))
    manifest = {"layer": "incidents", "crs": "EPSG:4326", "hilbert_bounds": bounds, "hilbert_level": 16,
                "written_at": datetime.now(timezone.utc).isoformat(), "files": files}
    (out_dir / "_manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def select_files(data_dir: Path, start: datetime | None, end: datetime | None) -> list[str]:
    """The dataset's files for the months overlapping [start, end) (China Standard Time months)."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / "_manifest.json"
    if not manifest_path.is_file():
        raise InvalidInput(f"{data_dir} is not a partitioned dataset: _manifest.json missing "
                           "(write one with `gridserver analyze --export-to DIR`)")
    manifest = json.loads(manifest_path.read_text())
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    lo = start.astimezone(tz).strftime("%Y-%m") if start else None
    hi = end.astimezone(tz).strftime("%Y-%m") if end else None
    return [str(data_dir / f["path"]) for f in manifest["files"]
            if (lo is None or f["month"] >= lo) and (hi is None or f["month"] <= hi)]


# --- the job -------------------------------------------------------------------------------------
def dask_aggregate(files: list[str], spec: AggregateSpec, grids: gpd.GeoDataFrame | None, client) -> pd.DataFrame:
    """The aggregate over ``files`` on the dask ``client``: DataFrame key[, period], count (sorted)."""
    import dask_geopandas

    ddf = dask_geopandas.read_parquet(files, columns=["id", "category", "status", "created_at", "geom"])
    if spec.start is not None:
        ddf = ddf[ddf["created_at"] >= pd.Timestamp(spec.start)]
    if spec.end is not None:
        ddf = ddf[ddf["created_at"] < pd.Timestamp(spec.end)]
    if spec.categories:
        ddf = ddf[ddf["category"].isin(spec.categories)]
    if spec.statuses:
        ddf = ddf[ddf["status"].isin(spec.statuses)]
    cols = ["key"] + (["period"] if spec.bucket else [])
    meta = pd.DataFrame({c: pd.Series([], dtype="object") for c in cols} | {"count": pd.Series([], dtype="int64")})
    grids_f = client.scatter(grids, broadcast=True) if grids is not None else None
    # map: each partition counts its own keys (small); reduce: the partial counts are summed. No shuffle.
    partial = ddf.map_partitions(partial_counts, spec.by, spec.h3_res, spec.bucket, grids_f, meta=meta)
    parts = partial.compute()
    out = parts.groupby(cols, sort=True)["count"].sum().reset_index()
    out["count"] = out["count"].astype("int64")
    return out.sort_values(cols).reset_index(drop=True)


def current_grids(conn) -> gpd.GeoDataFrame:
    return gpd.read_postgis(text("SELECT code, geom FROM admin_areas WHERE level = 'grid' AND valid_to IS NULL "
                                 "ORDER BY code"), conn, geom_col="geom")


def postgis_table(conn, spec: AggregateSpec) -> pd.DataFrame:
    """The same aggregate on PostGIS (``aggregate.count_table``, whole city), in the dask result's shape."""
    from gridserver.analytics import layers
    from gridserver.analytics.aggregate import count_table
    from gridserver.auth.users import User

    system = User(id=0, username="analyze", full_name="", role="admin", scope_code=None, department=None,
                  active=True, created_at=datetime.now())
    df, _ = count_table(conn, layers.LAYERS["incidents"], spec, system)
    if spec.bucket:
        df["period"] = pd.to_datetime(df["period"]).dt.strftime("%Y-%m-%d")
    cols = ["key"] + (["period"] if spec.bucket else [])
    df["count"] = df["count"].astype("int64")
    return df[cols + ["count"]].sort_values(cols).reset_index(drop=True)


def open_client(scheduler: str, workers: int = 3):
    """(client, cluster or None): ``local`` starts a LocalCluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
        return Client(cluster), cluster
    return Client(scheduler), None


# --- CLI ------------------------------------------------------------------------------------------
def analyze_command(
    engine: str = typer.Option("dask", "--engine", help="dask (distributed job) or postgis"),
    scheduler: str = typer.Option("local", "--scheduler", help="dask scheduler address (tcp://host:8786) or 'local'"),
    workers: int = typer.Option(3, "--workers", help="with --scheduler local: number of worker processes"),
    data: Path = typer.Option(None, "--data", help="partitioned GeoParquet dataset (default: export from the database first)"),
    export_to: Path = typer.Option(None, "--export-to", help="write the partitioned dataset here (then analyse it)"),
    by: str = typer.Option("grid", "--by", help="grid | community | street | district | h3:7..h3:10"),
    bucket: str = typer.Option(None, "--bucket", help="day | week | month"),
    since: str = typer.Option(None, "--from", help="from (inclusive; naive = UTC+8)"),
    until: str = typer.Option(None, "--to", help="to (exclusive)"),
    category: list[str] = typer.Option(None, "--category", help="category (repeatable)"),
    out: Path = typer.Option(None, "--out", help="write the result as CSV"),
    compare: bool = typer.Option(False, "--compare", help="also run the aggregate on PostGIS and check equality"),
):
    """分析 run the incident aggregate as a distributed dask-geopandas job (or on PostGIS)."""
    import tempfile
    import time

    from rich.console import Console

    from gridserver.db.engine import get_engine
    from gridserver.errors import GridserverError

    console = Console(stderr=True)
    try:
        kind, res = parse_by(by)
        if bucket and bucket not in FREQ:
            raise InvalidInput(f"--bucket must be day, week or month, got {bucket!r}")
        spec = AggregateSpec(by=kind, h3_res=res, start=parse_time(since, "--from"), end=parse_time(until, "--to"),
                             categories=list(category or []), bucket=bucket)
        if engine not in ("dask", "postgis"):
            raise InvalidInput(f"--engine must be dask or postgis, got {engine!r}")
        db = get_engine()
        with db.connect() as conn:
            t0 = time.perf_counter()
            if engine == "postgis":
                result = postgis_table(conn, spec)
            else:
                tmp = None
                if data is None:
                    if export_to is None:
                        tmp = tempfile.TemporaryDirectory(prefix="gridserver-analyze-")
                    target = export_to or Path(tmp.name)
                    man = export_partitioned(conn, target, start=spec.start, end=spec.end)
                    console.print(f"GeoParquet: {sum(f['rows'] for f in man['files'])} rows in {len(man['files'])} files → {target}")
                    data_dir = target
                else:
                    data_dir = data
                files = select_files(data_dir, spec.start, spec.end)
                grids = current_grids(conn) if kind != "h3" else None
                client, cluster = open_client(scheduler, workers)
                try:
                    console.print(f"dask: {len(client.scheduler_info()['workers'])} workers at {client.scheduler.address}")
                    result = dask_aggregate(files, spec, grids, client) if files else postgis_table(conn, spec).iloc[0:0]
                finally:
                    client.close()
                    if cluster is not None:
                        cluster.close()
                    if tmp is not None:
                        tmp.cleanup()
            seconds = time.perf_counter() - t0
            same = None
            if compare:
                ref = postgis_table(conn, spec)
                same = ref.equals(result.astype({"count": "int64"}))
    except GridserverError as exc:
        console.print(f"[red]错误 error:[/] {exc.detail}")
        raise typer.Exit(2)
    if out:
        result.to_csv(out, index=False)
    console.print(f"{engine}: {len(result)} buckets, {int(result['count'].sum()) if len(result) else 0} incidents, "
                  f"{seconds:.2f} s")
    if same is not None:
        console.print("same as PostGIS: " + ("[green]yes[/]" if same else "[red]NO[/]"))
        if not same:
            raise typer.Exit(1)
    if not out:
        typer.echo(result.to_csv(index=False), nl=False)
