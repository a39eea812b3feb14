"""Analyst API: region queries (features, counts, exports), aggregates by area/grid/H3, hot-spot warnings.

Every route needs a token; layer rules (``analytics.layers``) decide what each caller sees.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from gridserver.analytics import aggregate as agg
from gridserver.analytics import export, features, layers
from gridserver.analytics.region import Region, apply_region
from gridserver.auth.deps import current_user
from gridserver.auth.users import User
from gridserver.db.engine import get_engine, get_session
from gridserver.errors import Forbidden, InvalidInput

router = APIRouter(prefix="/api/v1", tags=["分析 analytics"])
MAX_QUERY_LIMIT = 5_000_000


class QueryIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    layer: str = Field(..., description="grids | communities | streets | districts | incidents | buildings | businesses")
    region: Region | None = Field(None, description="区域 the region (omit for the whole city)")
    crs: str | None = Field(None, description="CRS of the region's coordinates: wgs84 (default), cgcs2000, gcj02, bd09, EPSG:nnnn")
    output: Literal["features", "count"] = "features"
    format: str = Field("geojson", description="geojson | ndjson | csv | parquet | gpkg (features only)")
    from_: str | None = Field(None, alias="from", description="time from (inclusive; naive = UTC+8)")
    to: str | None = Field(None, description="time to (exclusive)")
    category: list[str] | None = None
    status: list[str] | None = None
    limit: int | None = Field(None, ge=1, le=MAX_QUERY_LIMIT)


def _analytics_user(user: User) -> User:
    if user.role == "citizen":
        raise Forbidden("公众账号不能使用分析接口 citizens may not use the analytics API; it serves staff and analysts")
    return user


@router.post("/query", summary="区域查询 features or counts of a layer in a region (streamed)")
def query(body: QueryIn, format: str | None = Query(None, description="overrides body.format"),
          session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)):
    """Features of ``layer`` intersecting ``region`` (GeoJSON polygon, bbox, area code, grid list, or
    point + radius) — streamed as GeoJSON/NDJSON/CSV, or a GeoParquet/GeoPackage file — or their count.
    Region coordinates may be in any CRS (``crs``); the answer says which was assumed (``input_crs``)."""
    conn = session.connection()
    layer = layers.get_layer(conn, body.layer, user)
    q = features.FeatureQuery(limit=body.limit)
    input_crs = apply_region(conn, body.region, body.crs, q) if body.region else (body.crs or "wgs84")
    start, end = agg.parse_time(body.from_, "from"), agg.parse_time(body.to, "to")
    if start or end:
        if not layer.time_start:
            raise InvalidInput(f"layer {layer.id!r} has no time: from/to do not apply")
        q.time, q.time_end_exclusive = (start, end, False), True
    for name, values in (("category", body.category), ("status", body.status)):
        if values:
            if name not in layer.queryables:
                raise InvalidInput(f"layer {layer.id!r} has no {name}")
            q.props[name] = values
    if body.output == "count":
        return {"layer": layer.id, "count": features.count_features(conn, layer, q, user), "input_crs": input_crs}
    fmt = export.check_format(format or body.format)
    media, suffix = export.FORMATS[fmt]
    headers = {"X-Input-CRS": input_crs, "Content-Disposition": f'attachment; filename="{layer.id}{suffix}"'}
    if fmt in ("parquet", "gpkg"):
        fd, name = tempfile.mkstemp(suffix=suffix, prefix="gridserver-export-")
        os.close(fd)
        path = Path(name)
        export.export_query(conn, layer, q, user, fmt, path)
        return FileResponse(path, media_type=media, headers=headers, background=BackgroundTask(path.unlink, missing_ok=True))

    def body_chunks():
        # the request's session is closed once streaming starts: read through our own connection
        with get_engine().connect() as c:
            yield from export.iter_text(features.stream_features(c, layer, q, user), fmt,
                                        header={"layer": layer.id, "input_crs": input_crs})

    return StreamingResponse(body_chunks(), media_type=media, headers=headers)


@router.get("/aggregate", summary="聚合统计 counts of a point layer by area, grid or H3 cell, with time buckets")
def aggregate(
    layer: str = Query("incidents", description="point layer: incidents | businesses"),
    by: str = Query("grid", description="grid | community | street | district | h3:7 … h3:10"),
    from_: str | None = Query(None, alias="from", description="from (inclusive, ISO 8601; naive = UTC+8)"),
    to: str | None = Query(None, description="to (exclusive)"),
    category: list[str] | None = Query(None, description="事件分类 category (repeat or comma-separate)"),
    status: list[str] | None = Query(None, description="状态 status (repeat or comma-separate)"),
    bucket: str | None = Query(None, description="时间粒度 day | week | month (China Standard Time)"),
    geometry: bool = Query(False, description="include each key's polygon (areas, or H3 cell boundary)"),
    format: str = Query("json", description="json | geojson (a FeatureCollection of the buckets, for GIS tools)"),
    session: Session = Depends(get_session, scope="function"),
    user: User = Depends(current_user),
):
    """Each bucket: ``key`` (area code or H3 cell), ``name`` (areas), ``period`` (with ``bucket``),
    ``count`` and, on request, ``geometry``. ``format=geojson``: the buckets as GeoJSON features."""
    _analytics_user(user)
    conn = session.connection()
    lay = layers.get_layer(conn, layer, user)
    if not lay.point:
        raise InvalidInput(f"layer {layer!r} is not a point layer; aggregate incidents or businesses")
    kind, res = agg.parse_by(by)
    split = lambda vals: [v for x in vals or [] for v in x.split(",") if v]  # noqa: E731
    spec = agg.AggregateSpec(by=kind, h3_res=res, start=agg.parse_time(from_, "from"), end=agg.parse_time(to, "to"),
                             categories=split(category), statuses=split(status), bucket=bucket, geometry=geometry)
    if spec.categories and "category" not in lay.queryables:
        raise InvalidInput(f"layer {layer!r} has no category")
    if spec.statuses and "status" not in lay.queryables:
        raise InvalidInput(f"layer {layer!r} has no status")
    if format not in ("json", "geojson"):
        raise InvalidInput(f"format must be json or geojson, got {format!r}")
    if format == "geojson":
        spec.geometry = True
    out = agg.aggregate(conn, lay, spec, user)
    if format == "geojson":
        feats = [{"type": "Feature", "geometry": b.pop("geometry"), "properties": b} for b in out.pop("buckets")]
        return JSONResponse({"type": "FeatureCollection", **out, "features": feats}, media_type="application/geo+json")
    return out


@router.get("/hotspots", summary="热点预警 grids/H3 cells whose incidents rise significantly over their baseline")
def hotspots(
    by: str = Query("grid", description="grid | community | street | h3:7 … h3:10"),
    window: str = Query("7d", description="recent window, e.g. 7d, 48h"),
    baseline: str = Query("28d", description="baseline just before the window, e.g. 28d, 8w"),
    end: str | None = Query(None, description="end of the window (default now; naive = UTC+8)"),
    category: list[str] | None = Query(None),
    alpha: float = Query(0.01, gt=0, lt=1, description="false-discovery rate"),
    min_count: int = Query(3, ge=1, description="at least this many incidents in the window"),
    min_ratio: float = Query(1.5, gt=0, description="rate ratio window/baseline at least"),
    geometry: bool = Query(False),
    session: Session = Depends(get_session, scope="function"),
    user: User = Depends(current_user),
):
    """Per cell: window and baseline counts, expected count, rate ratio, z, p-value (exact conditional
    Poisson test), BH q-value, Getis-Ord Gi* z/p, and ``flagged``. Flagged cells come first."""
    _analytics_user(user)
    conn = session.connection()
    lay = layers.get_layer(conn, "incidents", user)
    cats = [v for x in category or [] for v in x.split(",") if v]
    return agg.hotspot_report(conn, lay, by=by, window=agg.parse_duration(window, "window"),
                              baseline=agg.parse_duration(baseline, "baseline"), end=agg.parse_time(end, "end"),
                              categories=cats, user=user, alpha=alpha, min_count=min_count, min_ratio=min_ratio,
                              geometry=geometry)
