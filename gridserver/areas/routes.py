"""HTTP routes: locate a point, read an admin area."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridserver.areas.locate import locate_point
from gridserver.areas.versions import parse_at, valid_at
from gridserver.db.engine import get_session
from gridserver.errors import NotFound
from gridserver.geo.geojson import geojson_sql

router = APIRouter(prefix="/api/v1", tags=["定位 locate"])

CRS_HELP = "坐标系 input CRS: wgs84 (default), cgcs2000, gcj02, bd09, or EPSG:nnnn"
AT_HELP = "历史日期 as at: 2025-06-30 (end of that day, UTC+8) or an ISO datetime; default now"


@router.get("/locate", summary="点位落格 locate a point to its grid")
def locate(
    lon: float = Query(..., description="经度 longitude (or x in a projected CRS)"),
    lat: float = Query(..., description="纬度 latitude (or y)"),
    crs: str = Query("wgs84", description=CRS_HELP),
    at: str | None = Query(None, description=AT_HELP),
    session: Session = Depends(get_session, scope="function"),
):
    """Return the grid, community, street and district covering the point.

    404 when the point is outside every grid. On a shared boundary the grid with the smallest code wins.
    With ``at``, the grid layout in force on that date (grid versions) answers instead of the current one.
    """
    when = parse_at(at)
    out = locate_point(session, lon, lat, crs, at=when).as_dict()
    if when is not None:
        out["at"] = when.isoformat()
    return out


@router.get("/areas/{code}", summary="行政区划/网格 one admin area or grid")
def get_area(code: str, geometry: bool = False, at: str | None = Query(None, description=AT_HELP),
             session: Session = Depends(get_session, scope="function")):
    when = parse_at(at)
    row = session.execute(
        text(
            """SELECT level, code, name, parent_code, area_m2, valid_from,
                      CASE WHEN :g THEN """ + geojson_sql("geom") + """::json END AS geometry,
                      ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat,
                      ST_XMin(geom) AS xmin, ST_YMin(geom) AS ymin, ST_XMax(geom) AS xmax, ST_YMax(geom) AS ymax
               FROM admin_areas WHERE code = :code AND """ + valid_at(when)
        ),
        {"code": code, "g": geometry, "at": when},
    ).mappings().first()
    if row is None:
        when_txt = f"in force on {when.isoformat()}" if when is not None else "current"
        raise NotFound(f"no {when_txt} admin area or grid with code {code!r}")
    out = dict(row)
    out["bbox"] = [out.pop("xmin"), out.pop("ymin"), out.pop("xmax"), out.pop("ymax")]
    out["label_point"] = [out.pop("lon"), out.pop("lat")]
    if not geometry:
        out.pop("geometry")
    return out
