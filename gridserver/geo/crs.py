"""Coordinate reference systems: pyproj for everything it knows, plus GCJ-02 and BD-09.

GCJ-02 ("Mars coordinates", used by Amap/Tencent/most Chinese phones) and BD-09 (Baidu) are
obfuscated variants of WGS84 that no standard library ships. The forward formulas are the
well-known published ones; the inverse is solved by fixed-point iteration to < 1e-7 degrees
(about 1 cm). All functions are vectorised over numpy arrays.

Input CRS names accepted everywhere: ``wgs84`` (EPSG:4326), ``cgcs2000`` (EPSG:4490, treated as
WGS84: the two differ by well under 1 m), ``gcj02``, ``bd09``, or anything pyproj understands
(``EPSG:4547``, a WKT or PROJ string).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from gridserver.errors import UnknownCRS

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by GCJ-02
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0

ALIASES = {
    "wgs84": "wgs84", "epsg:4326": "wgs84", "4326": "wgs84", "wgs-84": "wgs84",
    "cgcs2000": "cgcs2000", "epsg:4490": "cgcs2000", "4490": "cgcs2000",
    "gcj02": "gcj02", "gcj-02": "gcj02", "mars": "gcj02",
    "bd09": "bd09", "bd-09": "bd09", "bd09ll": "bd09", "baidu": "bd09",
}
#: Names listed in error messages and API docs.
KNOWN = ("wgs84", "cgcs2000", "gcj02", "bd09")


def _out_of_china(lon, lat):
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _transform_lat(x, y):
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lon(x, y):
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lon, lat):
    """WGS84 → GCJ-02 (points outside China are returned unchanged, as the standard does)."""
    lon = np.asarray(lon, dtype="f8")
    lat = np.asarray(lat, dtype="f8")
    dlat = _transform_lat(lon - 105.0, lat - 35.0)
    dlon = _transform_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    out = _out_of_china(lon, lat)
    return np.where(out, lon, lon + dlon), np.where(out, lat, lat + dlat)


def gcj02_to_wgs84(lon, lat, *, tol: float = 1e-9, max_iter: int = 30):
    """GCJ-02 → WGS84 by fixed-point iteration on the forward formula (error < 1e-7°)."""
    glon = np.asarray(lon, dtype="f8")
    glat = np.asarray(lat, dtype="f8")
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(max_iter):
        flon, flat = wgs84_to_gcj02(wlon, wlat)
        dlon, dlat = flon - glon, flat - glat
        wlon = wlon - dlon
        wlat = wlat - dlat
        if np.all(np.abs(dlon) < tol) and np.all(np.abs(dlat) < tol):
            break
    return wlon, wlat


def gcj02_to_bd09(lon, lat):
    lon = np.asarray(lon, dtype="f8")
    lat = np.asarray(lat, dtype="f8")
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd09_to_gcj02_approx(lon, lat):
    x = np.asarray(lon, dtype="f8") - 0.0065
    y = np.asarray(lat, dtype="f8") - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_gcj02(lon, lat, *, tol: float = 1e-10, max_iter: int = 10):
    """BD-09 → GCJ-02: the published closed-form inverse (≈1e-6° error), refined by iterating
    on the exact forward formula to < 1e-9°."""
    blon = np.asarray(lon, dtype="f8")
    blat = np.asarray(lat, dtype="f8")
    glon, glat = _bd09_to_gcj02_approx(blon, blat)
    for _ in range(max_iter):
        flon, flat = gcj02_to_bd09(glon, glat)
        dlon, dlat = flon - blon, flat - blat
        glon, glat = glon - dlon, glat - dlat
        if np.all(np.abs(dlon) < tol) and np.all(np.abs(dlat) < tol):
            break
    return glon, glat


def bd09_to_wgs84(lon, lat):
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def wgs84_to_bd09(lon, lat):
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def normalize_crs(name: str | None) -> str:
    """Canonical CRS name: one of KNOWN, or an ``EPSG:nnnn``/WKT string pyproj accepts.

    ``None`` or empty means WGS84 (the documented default). Raises UnknownCRS with the list of
    accepted names when neither we nor pyproj know it.
    """
    if name is None or str(name).strip() == "":
        return "wgs84"
    key = str(name).strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    try:
        crs = _pyproj_crs(str(name).strip())
    except CRSError:
        raise UnknownCRS(
            f"unknown coordinate system {name!r}: use one of {', '.join(KNOWN)} "
            "or an EPSG code such as EPSG:4547"
        ) from None
    epsg = crs.to_epsg()
    if epsg == 4326:
        return "wgs84"
    if epsg == 4490:
        return "cgcs2000"
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


@lru_cache(maxsize=64)
def _pyproj_crs(text: str) -> CRS:
    return CRS.from_user_input(text)


@lru_cache(maxsize=64)
def _to_wgs84_transformer(crs: str) -> Transformer:
    return Transformer.from_crs(_pyproj_crs(crs), "EPSG:4326", always_xy=True)


def to_wgs84(x, y, crs: str | None = "wgs84"):
    """Convert coordinates given in ``crs`` to WGS84 lon/lat (numpy arrays)."""
    name = normalize_crs(crs)
    x = np.asarray(x, dtype="f8")
    y = np.asarray(y, dtype="f8")
    if name in ("wgs84", "cgcs2000"):
        return x, y
    if name == "gcj02":
        return gcj02_to_wgs84(x, y)
    if name == "bd09":
        return bd09_to_wgs84(x, y)
    return _to_wgs84_transformer(name).transform(x, y)


@lru_cache(maxsize=8)
def metric_transformer(inverse: bool = False) -> Transformer:
    """WGS84 ↔ the metric CRS used for areas and lengths (EPSG:4547)."""
    from gridserver.settings import METRIC_CRS

    a, b = ("EPSG:4326", METRIC_CRS) if not inverse else (METRIC_CRS, "EPSG:4326")
    return Transformer.from_crs(a, b, always_xy=True)
