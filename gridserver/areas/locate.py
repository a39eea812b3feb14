"""Point → grid, community, street and district: the narrow, well-tested heart of the service.

Boundary rule (documented, deterministic): a grid contains a point when it *covers* it (interior or
boundary). A point on an edge or vertex shared by several grids belongs to the one with the
smallest code. The batch path (``lookup.GridIndex``) implements the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import text

from gridserver.errors import InvalidInput, OutsideArea
from gridserver.geo.crs import normalize_crs, to_wgs84

LEVELS = ("district", "street", "community", "grid")

_LOCATE_SQL = text(
    """
    WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g),
    hit AS (
        SELECT a.code FROM admin_areas a, pt
        WHERE a.level = 'grid' AND a.valid_to IS NULL AND ST_Covers(a.geom, pt.g)
        ORDER BY a.code LIMIT 1
    )
    SELECT chain.level, chain.code, chain.name FROM hit
    CROSS JOIN LATERAL (
        WITH RECURSIVE up AS (
            SELECT level, code, name, parent_code FROM admin_areas
            WHERE code = hit.code AND valid_to IS NULL
            UNION ALL
            SELECT p.level, p.code, p.name, p.parent_code FROM admin_areas p
            JOIN up ON p.code = up.parent_code AND p.valid_to IS NULL
        ) SELECT level, code, name FROM up
    ) chain
    """
)

#: The same query for the layout in force at ``:at`` (grid versions, see ``areas/versions.py``).
_LOCATE_AT_SQL = text(
    """
    WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g),
    hit AS (
        SELECT a.code FROM admin_areas a, pt
        WHERE a.level = 'grid' AND a.valid_from <= :at AND (a.valid_to IS NULL OR a.valid_to > :at)
          AND ST_Covers(a.geom, pt.g)
        ORDER BY a.code LIMIT 1
    )
    SELECT chain.level, chain.code, chain.name FROM hit
    CROSS JOIN LATERAL (
        WITH RECURSIVE up AS (
            SELECT level, code, name, parent_code FROM admin_areas
            WHERE code = hit.code AND valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)
            UNION ALL
            SELECT p.level, p.code, p.name, p.parent_code FROM admin_areas p
            JOIN up ON p.code = up.parent_code AND p.valid_from <= :at AND (p.valid_to IS NULL OR p.valid_to > :at)
        ) SELECT level, code, name FROM up
    ) chain
    """
)


@dataclass
class Location:
    lon: float
    lat: float
    input_crs: str
    areas: dict[str, dict[str, str]]

    def code(self, level: str) -> str | None:
        return self.areas.get(level, {}).get("code")

    def as_dict(self) -> dict:
        out = {"lon": self.lon, "lat": self.lat, "input_crs": self.input_crs}
        for level in LEVELS:
            a = self.areas.get(level)
            out[level] = a if a else None
        return out


def check_lonlat(x, y, crs: str) -> None:
    """Reject non-finite numbers and, for geographic input, values outside lon/lat ranges."""
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InvalidInput(f"coordinates must be finite numbers, got lon={x!r} lat={y!r}")
    if crs in ("wgs84", "cgcs2000", "gcj02", "bd09"):
        if not -180 <= x <= 180:
            raise InvalidInput(f"lon must be a number between -180 and 180, got {x}")
        if not -90 <= y <= 90:
            raise InvalidInput(f"lat must be a number between -90 and 90, got {y}")


def to_storage(x: float, y: float, crs: str | None) -> tuple[float, float, str]:
    """Validate a point given in ``crs`` and convert it to WGS84. Returns (lon, lat, crs name)."""
    name = normalize_crs(crs)
    check_lonlat(x, y, name)
    lon, lat = to_wgs84(x, y, name)
    return float(lon), float(lat), name


def locate_point(conn, x: float, y: float, crs: str | None = "wgs84", at=None) -> Location:
    """Locate one point (in ``crs``) to its grid and the areas above it.

    ``at`` (a timezone-aware datetime) asks for the grid layout in force then instead of the current
    one. Raises OutsideArea (HTTP 404) when no grid (current, or in force at ``at``) covers the point.
    """
    lon, lat, name = to_storage(x, y, crs)
    if at is None:
        rows = conn.execute(_LOCATE_SQL, {"lon": lon, "lat": lat}).all()
    else:
        rows = conn.execute(_LOCATE_AT_SQL, {"lon": lon, "lat": lat, "at": at}).all()
    if not rows:
        when = f" on {at.isoformat()}" if at is not None else ""
        raise OutsideArea(
            f"point lon={x} lat={y} ({name}) → WGS84 ({lon:.7f}, {lat:.7f}) is outside every grid{when}",
        )
    areas = {r.level: {"code": r.code, "name": r.name} for r in rows}
    return Location(lon=lon, lat=lat, input_crs=name, areas=areas)
