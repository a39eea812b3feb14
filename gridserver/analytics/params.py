"""Parsing of the feature-query parameters (OGC API Features Part 1 + Part 2): bbox, bbox-crs, crs,
datetime, limit. Every bad value is a 400 whose message names the parameter and the value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from gridserver.errors import GridserverError
from gridserver.geo.geojson import geojson_sql

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
DEFAULT_LIMIT, MAX_LIMIT = 10, 10000


class BadParameter(GridserverError):
    """An OGC query parameter that cannot be understood (the spec asks for 400)."""

    status, code = 400, "invalid_parameter"


@dataclass(frozen=True)
class OutputCRS:
    uri: str
    srid: int  # SRID the coordinates are expressed in
    lat_first: bool  # axis order of the CRS (EPSG 4326/4490 are lat, lon)
    geographic: bool
    decimals: int

    def geom_sql(self, expr: str) -> str:
        """SQL turning a stored EPSG:4326 geometry into this CRS, in its axis order."""
        g = expr if self.srid == 4326 else f"ST_Transform({expr}, {self.srid})"
        return f"ST_FlipCoordinates({g})" if self.lat_first else g

    def geojson_sql(self, expr: str, *, polygonal: bool = True) -> str:
        """SQL giving the GeoJSON of a stored geometry in this CRS at its decimals (valid after rounding)."""
        return geojson_sql(self.geom_sql(expr), self.decimals, polygonal=polygonal)


#: CRSs offered by every collection. CGCS2000 (4490) is served with the stored WGS84 numbers: the
#: two differ by well under a metre (see README "Coordinates").
CRS_LIST: dict[str, OutputCRS] = {
    CRS84: OutputCRS(CRS84, 4326, False, True, 7),
    EPSG + "4326": OutputCRS(EPSG + "4326", 4326, True, True, 7),
    EPSG + "4490": OutputCRS(EPSG + "4490", 4326, True, True, 7),
    EPSG + "3857": OutputCRS(EPSG + "3857", 3857, False, False, 2),
}


def parse_crs(value: str | None, name: str = "crs") -> OutputCRS:
    """A CRS URI from the supported list (also ``EPSG:nnnn`` / ``[EPSG:nnnn]`` shorthands); 400 otherwise."""
    if value is None or value.strip() == "":
        return CRS_LIST[CRS84]
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):  # safe CURIE form
        v = v[1:-1]
    m = re.fullmatch(r"(?i)epsg:(\d+)", v)
    if m:
        v = EPSG + m.group(1)
    if v.lower() in ("crs84", "ogc:crs84"):
        v = CRS84
    if v not in CRS_LIST:
        raise BadParameter(f"{name}: unsupported CRS {value!r}; supported: {', '.join(CRS_LIST)}")
    return CRS_LIST[v]


def parse_limit(value: str | None) -> int:
    """limit: integer ≥ 1; above the maximum it is clamped (no error), as the spec asks."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        n = int(value)
    except ValueError:
        raise BadParameter(f"limit must be an integer between 1 and {MAX_LIMIT}, got {value!r}") from None
    if n < 1:
        raise BadParameter(f"limit must be at least 1, got {n}")
    return min(n, MAX_LIMIT)


def parse_offset(value: str | None) -> int:
    if value is None or value == "":
        return 0
    try:
        n = int(value)
    except ValueError:
        raise BadParameter(f"offset must be a non-negative integer, got {value!r}") from None
    if n < 0:
        raise BadParameter(f"offset must be a non-negative integer, got {n}")
    return n


def parse_bbox(value: str, crs: OutputCRS) -> list[tuple[float, float, float, float, int]]:
    """bbox → boxes (xmin, ymin, xmax, ymax, srid) in lon/lat (or x/y) order.

    4 or 6 numbers in ``crs``'s axis order; west > east crosses the antimeridian (two boxes).
    """
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (4, 6):
        raise BadParameter(f"bbox must have 4 or 6 comma-separated numbers, got {len(parts)} in {value!r}")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise BadParameter(f"bbox must be numbers, got {value!r}") from None
    if not all(math.isfinite(n) for n in nums):
        raise BadParameter(f"bbox numbers must be finite, got {value!r}")
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    a1, b1, a2, b2 = nums
    if crs.lat_first:
        y0, x0, y1, x1 = a1, b1, a2, b2
    else:
        x0, y0, x1, y1 = a1, b1, a2, b2
    if crs.geographic:
        for lat in (y0, y1):
            if not -90 <= lat <= 90:
                raise BadParameter(f"bbox latitude {lat} is outside -90..90 in {value!r} ({crs.uri})")
        for lon in (x0, x1):
            if not -180 <= lon <= 180:
                raise BadParameter(f"bbox longitude {lon} is outside -180..180 in {value!r} ({crs.uri})")
    if y0 > y1:
        raise BadParameter(f"bbox: the lower corner is north of the upper corner in {value!r} ({crs.uri} axis order)")
    if x0 > x1:
        if not crs.geographic:
            raise BadParameter(f"bbox: minx > maxx in {value!r}")
        return [(x0, y0, 180.0, y1, crs.srid), (-180.0, y0, x1, y1, crs.srid)]
    return [(x0, y0, x1, y1, crs.srid)]


_TS = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$")


def parse_instant(value: str, name: str = "datetime") -> datetime:
    """An RFC 3339 date-time (or a date = its start, UTC); naive times are UTC."""
    v = value.strip()
    if not _TS.match(v):
        raise BadParameter(f"{name}: {value!r} is not an RFC 3339 date-time such as 2026-11-01T00:00:00Z")
    try:
        ts = datetime.fromisoformat(v.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(f"{name}: {value!r} is not a valid date-time") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def parse_datetime(value: str | None) -> tuple[datetime | None, datetime | None, bool] | None:
    """``datetime`` → (start, end, is_instant); open ends are None ('..' or empty). 400 when malformed."""
    if value is None or value.strip() == "":
        return None
    v = value.strip()
    if "/" not in v:
        ts = parse_instant(v)
        return ts, ts, True
    a, _, b = v.partition("/")
    if "/" in b:
        raise BadParameter(f"datetime: {value!r} has more than one '/'")
    start = None if a in ("", "..") else parse_instant(a)
    end = None if b in ("", "..") else parse_instant(b)
    if start is None and end is None:
        raise BadParameter(f"datetime: {value!r} is open at both ends; give at least one date-time")
    if start and end and start > end:
        raise BadParameter(f"datetime: start {a} is after end {b}")
    return start, end, False
