"""Topology check of the current admin areas and grids, done in PostGIS with set-based SQL.

For every parent and its direct children (street → district, community → street, grid →
community) it reports:

- ``overlap``: two siblings whose interiors intersect (area of the intersection);
- ``gap``: a part of the parent covered by none of its children (one issue per gap polygon);
- ``outside``: the part of a child that lies outside its parent;
- ``orphan``: a child whose parent code is not a current area;
- ``invalid``: a geometry PostGIS finds invalid (with the reason); it is made valid for the other checks.

Areas are in m² in EPSG:4547; each issue has a location (a point inside the problem region, WGS84
lon/lat). Pieces smaller than ``tolerance`` (default 0.01 m²) are floating-point dust and ignored.
Parents without any current child are not checked for gaps (that level has not been imported).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text

from gridserver.areas.importer import CODE_LENGTH, normalize_level
from gridserver.errors import InvalidInput, NotFound

DEFAULT_TOLERANCE_M2 = 0.01
KIND_LABELS = {"invalid": "几何无效 invalid geometry", "overlap": "同级重叠 overlap", "gap": "覆盖空隙 gap",
               "outside": "超出上级 outside parent",
               "orphan": "上级不存在 missing parent"}

# The children in scope. Written out in each query (not a shared CTE) so the planner can use the
# partial indexes on admin_areas for every join.
_SCOPE = """k.valid_to IS NULL AND k.level <> 'district'
    AND (CAST(:parent AS text) IS NULL OR (k.code LIKE :parent || '%' AND k.code <> :parent))
    AND (CAST(:level AS text) IS NULL OR k.level = :level)"""

def _valid(g: str) -> str:
    """SQL for a GEOS-safe version of ``g``: invalid rows (reported separately) are made valid first,
    so one bad polygon cannot abort the whole check with a TopologyException."""
    return f"(CASE WHEN ST_IsValid({g}) THEN {g} ELSE ST_CollectionExtract(ST_MakeValid({g}), 3) END)"


_OVERLAPS = f"""
SELECT 'overlap' AS kind, k.level, k.parent_code, ARRAY[k.code, b.code] AS codes,
       ST_Area(ST_Transform(x.g, 4547)) AS area_m2, ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat,
       CASE WHEN :geo THEN ST_AsGeoJSON(x.g, 7) END AS geometry
FROM admin_areas k
JOIN admin_areas b ON b.parent_code = k.parent_code AND b.valid_to IS NULL AND b.code > k.code
                  AND b.geom && k.geom
CROSS JOIN LATERAL (SELECT {_valid("k.geom")} AS kg, {_valid("b.geom")} AS bg) v
CROSS JOIN LATERAL (SELECT ST_CollectionExtract(ST_Intersection(v.kg, v.bg), 3) AS g) x
CROSS JOIN LATERAL (SELECT ST_PointOnSurface(x.g) AS pt) p
WHERE {_SCOPE} AND ST_Relate(v.kg, v.bg, '2********') AND ST_Area(ST_Transform(x.g, 4547)) > :tol
"""

_GAPS = f"""
WITH kids AS (
    SELECT k.parent_code, min(k.level) AS level, ST_Union({_valid("k.geom")}) AS g
    FROM admin_areas k WHERE {_SCOPE} GROUP BY k.parent_code
)
SELECT 'gap' AS kind, kids.level, kids.parent_code, ARRAY[]::text[] AS codes,
       ST_Area(ST_Transform(d.geom, 4547)) AS area_m2, ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat,
       CASE WHEN :geo THEN ST_AsGeoJSON(d.geom, 7) END AS geometry
FROM kids
JOIN admin_areas par ON par.code = kids.parent_code AND par.valid_to IS NULL
CROSS JOIN LATERAL ST_Dump(ST_CollectionExtract(ST_Difference({_valid("par.geom")}, kids.g), 3)) d
CROSS JOIN LATERAL (SELECT ST_PointOnSurface(d.geom) AS pt) p
WHERE ST_Area(ST_Transform(d.geom, 4547)) > :tol
"""

_OUTSIDE = f"""
SELECT 'outside' AS kind, k.level, k.parent_code, ARRAY[k.code] AS codes,
       ST_Area(ST_Transform(x.g, 4547)) AS area_m2, ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat,
       CASE WHEN :geo THEN ST_AsGeoJSON(x.g, 7) END AS geometry
FROM admin_areas k
JOIN admin_areas par ON par.code = k.parent_code AND par.valid_to IS NULL
CROSS JOIN LATERAL (SELECT {_valid("k.geom")} AS kg, {_valid("par.geom")} AS pg) v
CROSS JOIN LATERAL (SELECT ST_CollectionExtract(ST_Difference(v.kg, v.pg), 3) AS g) x
CROSS JOIN LATERAL (SELECT ST_PointOnSurface(x.g) AS pt) p
WHERE {_SCOPE} AND NOT ST_CoveredBy(v.kg, v.pg) AND ST_Area(ST_Transform(x.g, 4547)) > :tol
"""

_ORPHANS = f"""
SELECT 'orphan' AS kind, k.level, k.parent_code, ARRAY[k.code] AS codes, NULL::float8 AS area_m2,
       ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat, NULL AS geometry
FROM admin_areas k
CROSS JOIN LATERAL (SELECT ST_PointOnSurface({_valid("k.geom")}) AS pt) p
WHERE {_SCOPE} AND NOT EXISTS (
    SELECT 1 FROM admin_areas par WHERE par.code = k.parent_code AND par.valid_to IS NULL)
"""

# Invalid rows can only come from outside the importer (it rejects or repairs them); checked at every
# level in scope, districts included.
_INVALID = """
SELECT 'invalid' AS kind, k.level, k.parent_code, ARRAY[k.code] AS codes, NULL::float8 AS area_m2,
       ST_X(d.location) AS lon, ST_Y(d.location) AS lat, d.reason AS geometry
FROM admin_areas k
CROSS JOIN LATERAL ST_IsValidDetail(k.geom) d
WHERE k.valid_to IS NULL AND NOT d.valid
    AND (CAST(:parent AS text) IS NULL OR k.code LIKE :parent || '%')
    AND (CAST(:level AS text) IS NULL OR k.level = :level)
"""


@dataclass
class Issue:
    kind: str
    level: str
    parent_code: str | None
    codes: list[str]
    area_m2: float | None
    lon: float | None
    lat: float | None
    geometry: dict | None = field(default=None, repr=False)
    reason: str | None = None

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    def describe(self) -> str:
        if self.kind == "overlap":
            what = f"{' and '.join(self.codes)} overlap"
        elif self.kind == "gap":
            what = f"part of {self.parent_code} is covered by none of its {self.level} children"
        elif self.kind == "outside":
            what = f"{self.codes[0]} extends outside its parent {self.parent_code}"
        elif self.kind == "orphan":
            what = f"{self.codes[0]}: parent {self.parent_code} is not a current area"
        else:
            what = f"{self.codes[0]} has an invalid geometry: {self.reason}"
        area = f", {self.area_m2:.2f} m²" if self.area_m2 is not None else ""
        return f"{what}{area} at ({self.lon:.6f}, {self.lat:.6f})"

    def as_dict(self) -> dict:
        out = {"kind": self.kind, "label": self.label, "level": self.level, "parent_code": self.parent_code,
               "codes": self.codes, "area_m2": self.area_m2, "location": [self.lon, self.lat],
               "message": self.describe()}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.geometry is not None:
            out["geometry"] = self.geometry
        return out


def check_topology(conn, parent_code: str | None = None, level: str | None = None,
                   tolerance: float = DEFAULT_TOLERANCE_M2, with_geometry: bool = False) -> list[Issue]:
    """Report overlaps, gaps, children outside their parent, orphans and invalid geometries (current areas).

    ``parent_code`` limits the check to that area's descendants (and itself as a parent);
    ``level`` to children of that level (e.g. ``grid`` checks grids against their communities).
    Issues come sorted by kind, then largest area first. ``conn`` is a SQLAlchemy Connection/Session.
    """
    import json

    if level is not None:
        level = normalize_level(level)
        if level == "district":
            raise InvalidInput("level district has no parent level to check against: use street, community or grid")
    if parent_code is not None:
        parent_code = parent_code.strip()
        if not parent_code.isdigit() or len(parent_code) not in CODE_LENGTH.values():
            raise InvalidInput(f"area code {parent_code!r} must be 6, 9, 12 or 15 digits")
        found = conn.execute(text("SELECT 1 FROM admin_areas WHERE code = :c AND valid_to IS NULL"),
                             {"c": parent_code}).first()
        if found is None:
            raise NotFound(f"no current admin area with code {parent_code!r}")
    if not tolerance >= 0:
        raise InvalidInput(f"tolerance must be a number >= 0 m², got {tolerance!r}")
    params = {"parent": parent_code, "level": level, "tol": float(tolerance), "geo": bool(with_geometry)}
    issues: list[Issue] = []
    for sql in (_INVALID, _OVERLAPS, _GAPS, _OUTSIDE, _ORPHANS):
        for r in conn.execute(text(sql), params).mappings():
            invalid = r["kind"] == "invalid"  # its last column carries the reason, not GeoJSON
            issues.append(Issue(kind=r["kind"], level=r["level"], parent_code=r["parent_code"], codes=list(r["codes"]),
                                area_m2=r["area_m2"], lon=r["lon"], lat=r["lat"],
                                geometry=json.loads(r["geometry"]) if r["geometry"] and not invalid else None,
                                reason=r["geometry"] if invalid else None))
    order = {k: i for i, k in enumerate(KIND_LABELS)}
    issues.sort(key=lambda i: (order[i.kind], -(i.area_m2 or 0), i.parent_code or "", i.codes))
    return issues
