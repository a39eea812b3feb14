"""Regions for analyst queries: a GeoJSON polygon, a bbox, an admin area code, a grid list, or a radius.

Every form is turned into a WGS84 (EPSG:4326) filter for ``features.FeatureQuery``: coordinates in
any input CRS (``wgs84``, ``cgcs2000``, ``gcj02``, ``bd09``, ``EPSG:nnnn``) go through
``geo.crs.to_wgs84``; area codes and grid lists are resolved to the current boundaries in PostGIS.
"""

from __future__ import annotations

import numpy as np
import shapely
from pydantic import BaseModel, Field
from shapely.geometry import shape
from sqlalchemy import text

from gridserver.analytics.features import FeatureQuery
from gridserver.errors import InvalidInput, NotFound
from gridserver.geo.crs import normalize_crs, to_wgs84

MAX_RADIUS_M = 50_000


class Region(BaseModel):
    """Exactly one of: ``geometry`` (GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection),
    ``bbox`` [minx, miny, maxx, maxy], ``area`` (district/street/community/grid code), ``grids`` (codes),
    ``point`` [x, y] with ``radius`` (metres)."""

    geometry: dict | None = None
    bbox: list[float] | None = None
    area: str | None = None
    grids: list[str] | None = None
    point: list[float] | None = None
    radius: float | None = Field(None, description="metres, with point")


def _to_wgs84_geom(geom, crs: str):
    if crs in ("wgs84", "cgcs2000"):
        return geom

    def fn(coords):
        x, y = to_wgs84(coords[:, 0], coords[:, 1], crs)
        return np.column_stack([x, y])

    return shapely.transform(geom, fn)


def _geojson_polygon(obj: dict):
    kind = obj.get("type")
    if kind == "FeatureCollection":
        parts = [_geojson_polygon(f) for f in obj.get("features") or []]
        if not parts:
            raise InvalidInput("region.geometry: the FeatureCollection has no features")
        return shapely.union_all(parts)
    if kind == "Feature":
        if not obj.get("geometry"):
            raise InvalidInput("region.geometry: the Feature has no geometry")
        return _geojson_polygon(obj["geometry"])
    if kind not in ("Polygon", "MultiPolygon"):
        raise InvalidInput(f"region.geometry must be a GeoJSON Polygon or MultiPolygon (or a Feature/"
                           f"FeatureCollection of them), got type {kind!r}")
    try:
        geom = shape(obj)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise InvalidInput(f"region.geometry: malformed {kind} coordinates ({exc})") from None
    if geom.is_empty:
        raise InvalidInput("region.geometry is empty")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise InvalidInput(f"region.geometry is not a valid polygon: {reason}")
    return geom


def apply_region(conn, region: Region, crs: str | None, q: FeatureQuery) -> str:
    """Fill ``q``'s spatial filter from ``region`` (coordinates in ``crs``); returns the CRS name assumed."""
    name = normalize_crs(crs)
    given = [k for k in ("geometry", "bbox", "area", "grids", "point") if getattr(region, k) is not None]
    if len(given) != 1:
        raise InvalidInput(f"region needs exactly one of geometry, bbox, area, grids, point+radius; got {given or 'none'}")
    kind = given[0]
    if kind == "geometry":
        geom = _to_wgs84_geom(_geojson_polygon(region.geometry), name)
        q.region_wkt = shapely.to_wkt(geom, rounding_precision=-1)
    elif kind == "bbox":
        b = region.bbox
        if len(b) != 4 or not all(np.isfinite(b)):
            raise InvalidInput(f"region.bbox must be 4 numbers [minx, miny, maxx, maxy], got {b}")
        if not (b[0] < b[2] and b[1] < b[3]):
            raise InvalidInput(f"region.bbox needs minx < maxx and miny < maxy, got {b}")
        corners = shapely.box(*b)
        q.region_wkt = shapely.to_wkt(_to_wgs84_geom(corners, name), rounding_precision=-1)
    elif kind == "area":
        row = conn.execute(text("SELECT ST_AsText(geom) FROM admin_areas WHERE code = :c AND valid_to IS NULL"),
                           {"c": region.area}).first()
        if row is None:
            raise NotFound(f"region.area: no current area with code {region.area!r}")
        q.region_wkt = row[0]
    elif kind == "grids":
        codes = list(dict.fromkeys(region.grids))
        if not codes:
            raise InvalidInput("region.grids is empty")
        rows = conn.execute(text("SELECT code FROM admin_areas WHERE code = ANY(:c) AND level = 'grid' AND valid_to IS NULL"),
                            {"c": codes}).scalars().all()
        missing = sorted(set(codes) - set(rows))
        if missing:
            raise NotFound(f"region.grids: no current grid with code(s) {', '.join(missing[:10])}")
        q.region_wkt = conn.execute(text(
            "SELECT ST_AsText(ST_Union(geom)) FROM admin_areas WHERE code = ANY(:c) AND valid_to IS NULL"),
            {"c": codes}).scalar_one()
    else:
        p = region.point
        if len(p) != 2 or region.radius is None:
            raise InvalidInput("region.point needs [x, y] and region.radius in metres")
        if not (0 < region.radius <= MAX_RADIUS_M):
            raise InvalidInput(f"region.radius must be between 0 and {MAX_RADIUS_M} metres, got {region.radius}")
        from gridserver.areas.locate import to_storage

        lon, lat, _ = to_storage(float(p[0]), float(p[1]), name)
        q.radius = (lon, lat, float(region.radius))
    return name
