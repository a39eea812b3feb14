"""Routing (派遣规则): category + location → the responsible department at the right level.

The taxonomy item names a department for each admin level and the level it is first dispatched
to; the location gives the area at that level (grid → community → street → district). The
decision is stored with the rule that made it (taxonomy version, item, level, area). No location
(outside every grid, an address nobody could place) or no department for the level → the manual
dispatch queue, with the reason.

Also here: "near a boundary" — a point within ``BOUNDARY_M`` metres of its grid's or community's
edge is flagged at intake with the neighbouring areas, so the reporter or an operator can confirm.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from gridserver.incidents.taxonomy import LEVELS, Node, Taxonomy

#: A point this close (metres, EPSG:4547) to a grid/community edge is "near the boundary".
BOUNDARY_M = 5.0


@dataclass
class Route:
    department: str | None
    department_name: str | None
    level: str | None
    area_code: str | None
    rule: dict
    manual_reason: str | None = None

    def as_columns(self) -> dict:
        return {"department": self.department, "department_name": self.department_name,
                "route_level": self.level, "route_area_code": self.area_code, "route_rule": self.rule,
                "manual_reason": self.manual_reason}


def route(tax: Taxonomy, node: Node, areas: dict[str, str | None], level: str | None = None) -> Route:
    """Route ``node`` at ``areas`` ({level: area code or None}); ``level`` overrides the item's start level."""
    level = level or node.start_level
    rule = {"taxonomy_version": tax.version, "item": node.code, "level": level,
            "rule": f"{node.code}@{level}"}
    dep = node.departments.get(level)
    area = areas.get(level)
    if not areas.get("grid"):
        return Route(None, None, level, None, {**rule, "rule": "manual:no_grid"},
                     "位置不在任何网格内，需人工派遣 the location lies outside every grid (or could not be placed)")
    if dep is None:
        return Route(None, None, level, area, {**rule, "rule": "manual:no_rule"},
                     f"分类 {node.code}（{node.name}）在{level}级没有派遣规则 no routing rule for level {level}")
    return Route(dep, tax.department_name(dep), level, area, rule)


def next_level(node: Node, level: str | None) -> str | None:
    """The level above ``level`` that has a department for ``node`` (None at the top)."""
    if level not in LEVELS:
        return None
    for up in LEVELS[LEVELS.index(level) + 1:]:
        if up in node.departments:
            return up
    return None


_BOUNDARY_SQL = text("""
    WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g)
    SELECT a.level, a.code, a.name,
           ST_Distance(ST_Transform(a.geom, 4547), ST_Transform(p.g, 4547)) AS d
    FROM admin_areas a, p
    WHERE a.valid_to IS NULL AND a.level IN ('grid', 'community')
      AND a.geom && ST_Expand(p.g, :deg) AND ST_DWithin(a.geom, p.g, :deg)
      AND NOT (a.code = ANY(:own))
""")


def near_boundary(conn, lon: float, lat: float, own: list[str]) -> dict | None:
    """Neighbouring grids/communities within BOUNDARY_M of the point (None when there are none)."""
    rows = conn.execute(_BOUNDARY_SQL, {"lon": lon, "lat": lat, "deg": BOUNDARY_M / 90000.0,
                                        "own": [c for c in own if c]}).all()
    near = [{"level": r.level, "code": r.code, "name": r.name, "distance_m": round(float(r.d), 2)}
            for r in rows if r.d <= BOUNDARY_M]
    if not near:
        return None
    near.sort(key=lambda a: (a["distance_m"], a["code"]))
    return {"within_m": BOUNDARY_M, "neighbours": near,
            "message": f"上报点距网格/社区边界不足 {BOUNDARY_M:g} 米，请确认所属区域 the point is within "
                       f"{BOUNDARY_M:g} m of a boundary: confirm the area"}


def confirm_grid(conn, lon: float, lat: float, grid_code: str) -> dict:
    """The area chain of ``grid_code`` when it lies within BOUNDARY_M of the point (the reporter or an
    operator confirming the area of a report near a boundary); InvalidInput (422) otherwise."""
    from gridserver.errors import InvalidInput

    row = conn.execute(text(
        """SELECT a.code, ST_Distance(ST_Transform(a.geom, 4547),
                                      ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 4547)) AS d
           FROM admin_areas a WHERE a.level = 'grid' AND a.code = :c AND a.valid_to IS NULL"""),
        {"lon": lon, "lat": lat, "c": grid_code}).first()
    if row is None:
        raise InvalidInput(f"confirm_grid {grid_code!r} is not a current grid")
    if row.d > BOUNDARY_M:
        raise InvalidInput(f"confirm_grid {grid_code} is {row.d:.1f} m from the point; only a grid within "
                           f"{BOUNDARY_M:g} m can be confirmed (otherwise move the point)")
    return {"grid": grid_code, "community": grid_code[:12], "street": grid_code[:9], "district": grid_code[:6]}
