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

#: Grids and communities within :near_deg degrees of (:lon, :lat) with their distance in metres, except the
#: point's own (a fragment of intake's context statement, where ``chain`` is the located area chain: no
#: metric distance is computed for them).
NEAR_SQL = """
    SELECT a.level, a.code, a.name,
           ST_Distance(ST_Transform(a.geom, 4547), ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 4547)) AS d
    FROM admin_areas a
    WHERE a.valid_to IS NULL AND a.level IN ('grid', 'community')
      AND ST_DWithin(a.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :near_deg)
      AND a.code NOT IN (SELECT code FROM chain)
"""
NEAR_DEG = BOUNDARY_M / 90000.0

#: Territory (辖区): a point covered by no grid but lying inside (or within TERRITORY_M metres of) a current
#: area of any level is a gap in the grid layer (a river, a hole): it is accepted into the manual dispatch
#: queue. Farther out it is outside the city's territory: a clear 404, nothing stored.
TERRITORY_M = 20.0
TERRITORY_SQL = """
    SELECT a.code FROM admin_areas a
    WHERE a.valid_to IS NULL AND ST_DWithin(a.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :terr_deg)
      AND ST_Distance(ST_Transform(a.geom, 4547), ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 4547))
          <= :terr_m
    ORDER BY NOT ST_Covers(a.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)), length(a.code) DESC, a.code
    LIMIT 1
"""  # the smallest area around the point (covering it first), None outside the territory
TERRITORY_DEG = TERRITORY_M / 90000.0

def near_from_rows(rows, own: list[str]) -> dict | None:
    """The near-boundary answer from ``NEAR_SQL`` rows (attributes level, code, name, d), without ``own``."""
    own = [c for c in own if c]
    near = [{"level": r.level, "code": r.code, "name": r.name, "distance_m": round(float(r.d), 2)}
            for r in rows if r.d <= BOUNDARY_M and r.code not in own]
    if not near:
        return None
    near.sort(key=lambda a: (a["distance_m"], a["code"]))
    return {"within_m": BOUNDARY_M, "neighbours": near,
            "message": f"上报点距网格/社区边界不足 {BOUNDARY_M:g} 米，请确认所属区域 the point is within "
                       f"{BOUNDARY_M:g} m of a boundary: confirm the area"}

_CONFIRM_SQL = """SELECT a.level, a.code, a.name,
                          ST_Distance(ST_Transform(a.geom, 4547),
                                      ST_Transform(ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), 4547)) AS d
                   FROM admin_areas a WHERE a.valid_to IS NULL AND a.code = ANY(%(chain)s)"""

def confirm_grid(conn, lon: float, lat: float, grid_code: str) -> tuple[dict, dict]:
    """({level: code}, {level: name}) of ``grid_code``'s chain when the grid lies within BOUNDARY_M of the
    point (the reporter or an operator confirming the area of a report near a boundary); InvalidInput
    (422) otherwise. ``conn`` is a psycopg connection (intake's)."""
    from gridserver.errors import InvalidInput

    chain = [grid_code[:n] for n in (15, 12, 9, 6)]
    rows = {r[1]: r for r in conn.execute(_CONFIRM_SQL, {"lon": lon, "lat": lat, "chain": chain}).fetchall()}
    grid = rows.get(grid_code)
    if grid is None or grid[0] != "grid":
        raise InvalidInput(f"confirm_grid {grid_code!r} is not a current grid")
    if grid[3] > BOUNDARY_M:
        raise InvalidInput(f"confirm_grid {grid_code} is {grid[3]:.1f} m from the point; only a grid within "
                           f"{BOUNDARY_M:g} m can be confirmed (otherwise move the point)")
    codes = {lv: c for lv, c in zip(("grid", "community", "street", "district"), chain)}
    return codes, {lv: rows[c][2] for lv, c in codes.items() if c in rows}
