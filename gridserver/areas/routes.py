"""HTTP routes: locate a point, read an admin area."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridserver.areas.locate import locate_point
from gridserver.db.engine import get_session
from gridserver.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["定位 locate"])

CRS_HELP = "坐标系 input CRS: wgs84 (default), cgcs2000, gcj02, bd09, or EPSG:nnnn"


@router.get("/locate", summary="点位落格 locate a point to its grid")
def locate(
    lon: float = Query(..., description="经度 longitude (or x in a projected CRS)"),
    lat: float = Query(..., description="纬度 latitude (or y)"),
    crs: str = Query("wgs84", description=CRS_HELP),
    session: Session = Depends(get_session, scope="function"),
):
    """Return the grid, community, street and district covering the point.

    404 when the point is outside every grid. On a shared boundary the grid with the smallest code wins.
    """
    return locate_point(session, lon, lat, crs).as_dict()


@router.get("/areas/{code}", summary="行政区划/网格 one admin area or grid")
def get_area(code: str, geometry: bool = False, session: Session = Depends(get_session, scope="function")):
    row = session.execute(
        text(
            """SELECT level, code, name, parent_code, area_m2, valid_from,
                      CASE WHEN :g THEN ST_AsGeoJSON(geom, 7)::json END AS geometry,
                      ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat,
                      ST_XMin(geom) AS xmin, ST_YMin(geom) AS ymin, ST_XMax(geom) AS xmax, ST_YMax(geom) AS ymax
               FROM admin_areas WHERE code = :code AND valid_to IS NULL"""
        ),
        {"code": code, "g": geometry},
    ).mappings().first()
    if row is None:
        raise NotFound(f"no current admin area or grid with code {code!r}")
    out = dict(row)
    out["bbox"] = [out.pop("xmin"), out.pop("ymin"), out.pop("xmax"), out.pop("ymax")]
    out["label_point"] = [out.pop("lon"), out.pop("lat")]
    if not geometry:
        out.pop("geometry")
    return out
