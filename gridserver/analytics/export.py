"""Exports of any layer query: GeoJSON, NDJSON, CSV, GeoParquet, GeoPackage — API and ``gridserver export``.

Rows are read through a server-side cursor and written batch by batch, so memory stays flat: text
formats from GeoJSON features (``features.stream_features``), GeoPackage and GeoParquet from
GeoDataFrames decoded from WKB in bulk (``features.stream_frames``); GeoParquet is one file with a
row group per batch (pyarrow ``ParquetWriter``, GeoParquet 1.0 metadata via geopandas). Coordinates are WGS84 (EPSG:4326, lon/lat) in every format.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator

import typer

from gridserver.errors import InvalidInput

FORMATS = {
    "geojson": ("application/geo+json", ".geojson"),
    "ndjson": ("application/x-ndjson", ".ndjson"),
    "csv": ("text/csv; charset=utf-8", ".csv"),
    "parquet": ("application/vnd.apache.parquet", ".parquet"),
    "gpkg": ("application/geopackage+sqlite3", ".gpkg"),
}
BATCH = 5000


def check_format(fmt: str) -> str:
    f = (fmt or "").lower()
    f = {"geoparquet": "parquet", "json": "geojson", "geopackage": "gpkg"}.get(f, f)
    if f not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return f


def iter_text(features: Iterable[dict], fmt: str, header: dict | None = None) -> Iterator[str]:
    """Text formats as chunks: a GeoJSON FeatureCollection, NDJSON (one feature per line) or CSV (WKT geometry)."""
    if fmt == "geojson":
        head = {"type": "FeatureCollection", **(header or {})}
        yield json.dumps(head, ensure_ascii=False)[:-1] + ', "features": ['
        first = True
        for f in features:
            yield ("" if first else ",\n") + json.dumps(f, ensure_ascii=False)
            first = False
        yield "]}\n"
    elif fmt == "ndjson":
        for f in features:
            yield json.dumps(f, ensure_ascii=False) + "\n"
    elif fmt == "csv":
        from shapely.geometry import shape

        cols = None
        for f in features:
            buf = io.StringIO()
            w = csv.writer(buf)
            if cols is None:
                cols = list(f["properties"])
                w.writerow(["id", *cols, "wkt"])
            g = shape(f["geometry"]).wkt if f["geometry"] else ""
            w.writerow([f["id"], *[f["properties"].get(c) for c in cols], g])
            yield buf.getvalue()
        if cols is None:
            yield "id,wkt\n"
    else:
        raise InvalidInput(f"{fmt} is a binary format")


def write_file(features: Iterable[dict], fmt: str, path: Path,
               progress: Callable[[int], None] | None = None) -> int:
    """Write GeoJSON ``features`` to ``path`` as GeoJSON/NDJSON/CSV; ``progress(n_written)`` every 1,000; returns the count."""
    fmt = check_format(fmt)
    path = Path(path)
    n = 0
    if fmt in ("geojson", "ndjson", "csv"):
        def counted():
            nonlocal n
            for f in features:
                n += 1
                if progress and n % 1000 == 0:
                    progress(n)
                yield f
        with open(path, "w", encoding="utf-8", newline="") as fh:
            for chunk in iter_text(counted(), fmt):
                fh.write(chunk)
        if progress:
            progress(n)
        return n
    raise InvalidInput(f"{fmt} is written from data frames: use write_frames")


def write_frames(frames, fmt: str, path: Path, progress: Callable[[int], None] | None = None) -> int:
    """Write GeoDataFrame batches to ``path`` as GeoPackage or GeoParquet (one row group per batch)."""
    fmt = check_format(fmt)
    path = Path(path)
    if path.exists():
        path.unlink()
    n = 0
    if fmt == "gpkg":
        import pyogrio

        for frame in frames:
            pyogrio.write_dataframe(frame, path, layer=path.stem, driver="GPKG", append=n > 0)
            n += len(frame)
            if progress:
                progress(n)
        if n == 0:
            import geopandas as gpd

            gpd.GeoDataFrame({"id": []}, geometry=[], crs="EPSG:4326").to_file(path, layer=path.stem, driver="GPKG")
        return n
    if fmt != "parquet":
        raise InvalidInput(f"{fmt} is a text format: use write_file")
    import pyarrow.parquet as pq
    from geopandas.io.arrow import _geopandas_to_arrow

    writer = None
    try:
        for frame in frames:
            table = _geopandas_to_arrow(frame)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
            n += len(frame)
            if progress:
                progress(n)
    finally:
        if writer is not None:
            writer.close()
    if n == 0:
        import geopandas as gpd

        gpd.GeoDataFrame({"id": []}, geometry=[], crs="EPSG:4326").to_parquet(path)
    return n


def export_query(conn, layer, q, user, fmt: str, path: Path, progress: Callable[[int], None] | None = None) -> int:
    """Write what ``q`` selects from ``layer`` (as ``user`` may see it) to ``path`` in ``fmt``; returns the count."""
    from gridserver.analytics import features

    fmt = check_format(fmt)
    if fmt in ("parquet", "gpkg"):
        return write_frames(features.stream_frames(conn, layer, q, user), fmt, path, progress)
    return write_file(features.stream_features(conn, layer, q, user), fmt, path, progress)


# --- CLI ----------------------------------------------------------------------------------------
def export_command(
    layer: str = typer.Option(..., "--layer", help="图层 grids | communities | streets | districts | incidents | buildings | businesses"),
    out: Path = typer.Option(..., "--out", help="输出文件 output file"),
    fmt: str = typer.Option(None, "--format", help="geojson | ndjson | csv | parquet | gpkg (default: from --out suffix)"),
    region: str = typer.Option(None, "--region", help='区域 JSON, e.g. \'{"area":"440104003"}\', \'{"bbox":[...]}\', '
                                                     '\'{"grids":[...]}\', \'{"point":\\[x,y],"radius":500}\' or a GeoJSON polygon file'),
    area: str = typer.Option(None, "--area", help="shortcut for --region '{\"area\": CODE}'"),
    crs: str = typer.Option(None, "--crs", help="CRS of the region's coordinates (wgs84, gcj02, bd09, cgcs2000, EPSG:nnnn)"),
    since: str = typer.Option(None, "--from", help="从 from (inclusive, ISO 8601; naive = UTC+8)"),
    until: str = typer.Option(None, "--to", help="至 to (exclusive)"),
    category: list[str] = typer.Option(None, "--category", help="事件分类 category (repeatable)"),
    as_user: str = typer.Option(None, "--as", help="apply this account's role and scope (default: analyst view, de-identified)"),
):
    """导出 export a layer (optionally within a region and time range) to a file, with a progress bar."""
    from datetime import datetime

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gridserver.analytics import features as feat
    from gridserver.analytics import layers as lay
    from gridserver.analytics.aggregate import parse_time
    from gridserver.analytics.region import Region, apply_region
    from gridserver.auth.users import User, get_user
    from gridserver.db.engine import get_engine, session_scope
    from gridserver.errors import GridserverError

    console = Console(stderr=True)
    try:
        fmt = check_format(fmt or out.suffix.lstrip(".") or "geojson")
        engine = get_engine()
        with session_scope() as session:
            if as_user:
                user = get_user(session, as_user)
                if user is None:
                    raise InvalidInput(f"--as: no account {as_user!r}")
            else:
                user = User(id=0, username="export", full_name="", role="analyst", scope_code=None, department=None,
                            active=True, created_at=datetime.now())
        with engine.connect() as conn:
            layer = lay.get_layer(conn, layer, user)
            q = feat.FeatureQuery(limit=None)
            spec = None
            if area:
                spec = Region(area=area)
            elif region:
                p = Path(region)
                raw = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else json.loads(region)
                spec = Region(**raw) if set(raw) & set(Region.model_fields) else Region(geometry=raw)
            if spec is not None:
                apply_region(conn, spec, crs, q)
            start, end = parse_time(since, "--from"), parse_time(until, "--to")
            if start or end:
                q.time, q.time_end_exclusive = (start, end, False), True
            if category:
                q.props["category"] = list(category)
            total = feat.count_features(conn, layer, q, user)
            with Progress(TextColumn("导出 {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as bar:
                task = bar.add_task(f"{layer.id} → {out.name}", total=max(total, 1))
                n = export_query(conn, layer, q, user, fmt, out, progress=lambda k: bar.update(task, completed=k))
                bar.update(task, completed=max(n, 1) if total == 0 else n)
    except GridserverError as exc:
        console.print(f"[red]错误 error:[/] {exc.detail}")
        raise typer.Exit(2)
    except json.JSONDecodeError as exc:
        console.print(f"[red]错误 error:[/] --region is neither a file nor valid JSON: {exc}")
        raise typer.Exit(2)
    console.print(f"{n} features → {out} ({fmt})")
