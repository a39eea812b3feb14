"""Re-link open incidents after the grids change (called by the grid-division work after activation).

Every open incident is located again against the current grids (``areas.locate`` — the one home of
the covering-grid rule); when its grid changes it is updated, re-routed when the responsible unit
(department or the area at the routing level) changes, and both are written to the event log.
"""

from __future__ import annotations

import json

from sqlalchemy import text

from gridserver.errors import OutsideArea
from gridserver.incidents import routing, taxonomy
from gridserver.incidents.workflow import FINISHED, log_event

LEVELS = ("grid", "community", "street", "district")


def relink_open_incidents(conn, *, now=None) -> dict:
    """Re-locate and re-route every open incident; returns counts. Does not commit."""
    from gridserver.areas.locate import locate_point

    tax = taxonomy.active(conn)
    rows = conn.execute(text(
        f"""SELECT id, status, ST_X(geom) AS lon, ST_Y(geom) AS lat, category, item_code, department,
                   route_level, route_area_code, escalation_level,
                   grid_code, community_code, street_code, district_code
            FROM incidents WHERE status NOT IN ({", ".join(f"'{s}'" for s in FINISHED)})
              AND merged_into IS NULL ORDER BY id FOR UPDATE""")).mappings().all()
    stats = {"checked": len(rows), "relocated": 0, "rerouted": 0, "outside": 0}
    for r in rows:
        try:
            loc = locate_point(conn, r["lon"], r["lat"], "wgs84")
            areas = {lv: loc.code(lv) for lv in LEVELS}
        except OutsideArea:
            areas = {lv: None for lv in LEVELS}
            stats["outside"] += 1
        old = {lv: r[f"{lv}_code"] for lv in LEVELS}
        if areas == old:
            continue
        stats["relocated"] += 1
        node = tax.nodes.get(r["item_code"] or r["category"])
        sets = {f"{lv}_code": areas[lv] for lv in LEVELS}
        data = {"from": old, "to": areas, "rerouted": False}
        if node is not None:
            level = r["route_level"] if r["escalation_level"] else node.start_level
            rt = routing.route(tax, node, areas, level)
            if rt.department != r["department"] or rt.area_code != r["route_area_code"]:
                sets.update(rt.as_columns())
                sets["route_rule"] = json.dumps(rt.rule)
                data.update(rerouted=True, from_department=r["department"], to_department=rt.department,
                            to_area=rt.area_code)
                stats["rerouted"] += 1
        cols = ", ".join(f"{k} = CAST(:{k} AS jsonb)" if k == "route_rule" else f"{k} = :{k}" for k in sets)
        conn.execute(text(f"UPDATE incidents SET {cols}, updated_at = now() WHERE id = :id"), {**sets, "id": r["id"]})
        log_event(conn, r["id"], "relink", actor=None, from_status=r["status"], to_status=r["status"],
                  note="网格调整后重新落格 re-located after a grid change", data=data, at=now)
    return stats
