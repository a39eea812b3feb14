"""HTTP routes for managing areas: list them, check their topology, upload an import (admin only)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridserver.areas.importer import normalize_level
from gridserver.areas.topology import DEFAULT_TOLERANCE_M2, check_topology
from gridserver.auth.deps import require_roles
from gridserver.auth.users import ROLES
from gridserver.db.engine import get_session
from gridserver.errors import InvalidInput
from gridserver.limits import LimitedBodyRoute, max_body

router = APIRouter(prefix="/api/v1", tags=["行政区划 areas"], route_class=LimitedBodyRoute)

#: A city-wide topology check is seconds of PostGIS work: staff only (any role but citizen).
topology_reader = require_roles(*(r for r in ROLES if r != "citizen"))

MAX_LIMIT = 1000
#: Uploads are written to a temp file because GDAL reads from paths; this caps what we accept.
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
UPLOAD_SUFFIXES = (".geojson", ".json", ".zip", ".gpkg", ".parquet", ".geoparquet")


@router.get("/topology", summary="拓扑检查 topology check of areas and grids")
def topology(
    area: str | None = Query(None, description="只检查该区划的下级 only this area's descendants (code)"),
    level: str | None = Query(None, description="只检查该层级 only children of this level: street|community|grid"),
    tolerance: float = Query(DEFAULT_TOLERANCE_M2, ge=0, description="忽略小于此面积的碎片 m²"),
    geometry: bool = Query(False, description="返回问题区域几何 include each problem region as GeoJSON"),
    session: Session = Depends(get_session, scope="function"),
    _user=Depends(topology_reader),
):
    """Overlaps between siblings, gaps in a parent's coverage, children outside their parent, orphans.
    Needs a staff token (it is heavy)."""
    issues = check_topology(session, parent_code=area, level=level, tolerance=tolerance, with_geometry=geometry)
    return {"issues": [i.as_dict() for i in issues], "count": len(issues)}


def _bbox(value: str | None) -> list[float] | None:
    if value is None or value == "":
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4:
        raise InvalidInput(f"bbox must be minlon,minlat,maxlon,maxlat (4 numbers), got {value!r}")
    x0, y0, x1, y1 = parts
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise InvalidInput(f"bbox {value!r} must be WGS84 lon/lat with min <= max")
    return parts


@router.get("/areas", summary="区划/网格列表 list admin areas and grids")
def list_areas(
    level: str | None = Query(None, description="district|street|community|grid"),
    parent: str | None = Query(None, description="上级编码 parent code (direct children)"),
    bbox: str | None = Query(None, description="minlon,minlat,maxlon,maxlat (WGS84): areas intersecting it"),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0),
    format: str = Query("json", pattern="^(json|geojson)$", description="json, or geojson (FeatureCollection)"),
    at: str | None = Query(None, description="历史日期 as at: 2025-06-30 or an ISO datetime (grid versions); default now"),
    session: Session = Depends(get_session, scope="function"),
):
    """Current areas (or those in force ``at`` a past date) ordered by code, paginated; ``total`` counts all matches."""
    from gridserver.areas.versions import parse_at, valid_at

    box = _bbox(bbox)
    when = parse_at(at)
    where = [valid_at(when)]
    params: dict = {"limit": limit, "offset": offset, "at": when}
    if level:
        where.append("level = :level")
        params["level"] = normalize_level(level)
    if parent:
        where.append("parent_code = :parent")
        params["parent"] = parent
    if box:
        where.append("geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) "
                     "AND ST_Intersects(geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))")
        params.update(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
    cond = " AND ".join(where)
    total = session.execute(text(f"SELECT count(*) FROM admin_areas WHERE {cond}"), params).scalar_one()
    geo = format == "geojson"
    rows = session.execute(
        text(f"""SELECT code, name, level, parent_code, area_m2
                        {", ST_AsGeoJSON(geom, 7) AS geometry" if geo else ""}
                 FROM admin_areas WHERE {cond} ORDER BY code LIMIT :limit OFFSET :offset"""),
        params,
    ).mappings().all()
    if geo:
        return {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "id": r["code"], "geometry": json.loads(r["geometry"]),
                          "properties": {k: r[k] for k in ("code", "name", "level", "parent_code", "area_m2")}}
                         for r in rows],
            "total": total, "limit": limit, "offset": offset,
        }
    return {"items": [dict(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.post("/areas/import", summary="导入区划/网格 import an areas file (admin)",
             openapi_extra=max_body(MAX_UPLOAD_BYTES))
def upload_import(
    file: UploadFile = File(..., description="GeoJSON, zipped Shapefile, GeoPackage or GeoParquet"),
    level: str = Form(..., description="district|street|community|grid"),
    crs: str | None = Form(None, description="wgs84, cgcs2000, gcj02, bd09 or EPSG:nnnn"),
    repair: bool = Form(False),
    code_field: str | None = Form(None),
    name_field: str | None = Form(None),
    parent_field: str | None = Form(None),
    dry_run: bool = Form(False),
    user=Depends(require_roles("admin")),
):
    """Same rules as ``gridserver import areas``: all checks first, then one transaction; 422 lists problems."""
    from gridserver.areas.importer import import_areas

    name = Path(file.filename or "upload").name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InvalidInput(f"unsupported upload {name!r}: send one of {', '.join(UPLOAD_SUFFIXES)} "
                           "(a Shapefile as a .zip with its .shp/.shx/.dbf/.prj)")
    with tempfile.TemporaryDirectory(prefix="gs-import-") as tmp:
        path = Path(tmp) / name
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out, length=1024 * 1024)
        report = import_areas(path, level, crs=crs or None, repair=repair, source=f"upload:{name} by {user.username}",
                              code_field=code_field or None, name_field=name_field or None,
                              parent_field=parent_field or None, dry_run=dry_run)
    out = report.as_dict()
    out["files"] = [name]
    return out
