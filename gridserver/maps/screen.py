"""What the command-center wall shows, in one request: ``GET /api/v1/screen/summary``.

Everything is restricted to the incidents the caller may read (the reading rule of
``incidents.service``) and computed in SQL over ``incidents``: per-grid measures for shading (open,
overdue, reported today, and per 1,000 residents when the block-data ``people`` table exists),
today's KPIs (China Standard Time), the per-street ranking and the most overdue cases.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from gridserver.auth.deps import current_user
from gridserver.auth.users import User
from gridserver.db.engine import get_session

#: Statuses after which a case is no longer open.
DONE = ("closed", "rated", "merged")

_DAY = """(now() AT TIME ZONE 'Asia/Shanghai')::date"""

PER_GRID_SQL = f"""
SELECT i.grid_code,
       count(*) FILTER (WHERE i.status NOT IN :done) AS open,
       count(*) FILTER (WHERE i.status NOT IN :done AND i.due_at < now()) AS overdue,
       count(*) FILTER (WHERE (i.created_at AT TIME ZONE 'Asia/Shanghai')::date = {_DAY}) AS today
FROM incidents i
WHERE i.grid_code IS NOT NULL AND i.merged_into IS NULL AND ({{vis}})
GROUP BY i.grid_code
"""

KPI_SQL = f"""
SELECT
  count(*) FILTER (WHERE (i.created_at AT TIME ZONE 'Asia/Shanghai')::date = {_DAY}) AS reported,
  count(*) FILTER (WHERE (i.dispatched_at AT TIME ZONE 'Asia/Shanghai')::date = {_DAY}) AS dispatched,
  count(*) FILTER (WHERE (i.closed_at AT TIME ZONE 'Asia/Shanghai')::date = {_DAY}) AS closed,
  count(*) FILTER (WHERE (i.created_at AT TIME ZONE 'Asia/Shanghai')::date = {_DAY}
                     AND (i.closed_at AT TIME ZONE 'Asia/Shanghai')::date = {_DAY}) AS closed_same_day,
  count(*) FILTER (WHERE i.status NOT IN :done) AS open,
  count(*) FILTER (WHERE i.status NOT IN :done AND i.due_at < now()) AS overdue,
  count(*) FILTER (WHERE i.rating IS NOT NULL AND i.rated_at > now() - interval '30 days') AS rated,
  count(*) FILTER (WHERE i.rating IN ('satisfied', 'basic') AND i.rated_at > now() - interval '30 days') AS satisfied
FROM incidents i
WHERE i.merged_into IS NULL AND ({{vis}})
"""

STREETS_SQL = """
SELECT s.code, s.name,
       count(i.id) FILTER (WHERE i.status NOT IN :done) AS open,
       count(i.id) FILTER (WHERE i.status NOT IN :done AND i.due_at < now()) AS overdue,
       count(i.id) FILTER (WHERE i.created_at > now() - interval '7 days') AS week
FROM admin_areas s
LEFT JOIN incidents i ON i.street_code = s.code AND i.merged_into IS NULL AND ({vis})
WHERE s.level = 'street' AND s.valid_to IS NULL AND s.code LIKE :scope
GROUP BY s.code, s.name
ORDER BY open DESC, overdue DESC, s.code
"""

OVERDUE_SQL = """
SELECT i.id, i.category, i.status, i.grid_code, g.name AS grid_name, s.name AS street_name, i.due_at,
       ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat,
       round(extract(epoch FROM now() - i.due_at) / 3600.0, 1) AS hours_over
FROM incidents i
LEFT JOIN admin_areas g ON g.code = i.grid_code AND g.valid_to IS NULL
LEFT JOIN admin_areas s ON s.code = i.street_code AND s.valid_to IS NULL
WHERE i.status NOT IN :done AND i.due_at < now() AND i.merged_into IS NULL AND ({vis})
ORDER BY i.due_at
LIMIT :limit
"""

POPULATION_SQL = """
SELECT grid_code, count(*) AS people FROM people WHERE grid_code IS NOT NULL GROUP BY grid_code
"""


def _vis(user: User) -> tuple[str, dict]:
    from gridserver.incidents.service import _visibility  # the one home of the reading rule

    return _visibility(user)


def _population(session: Session) -> dict[str, int] | None:
    ok = session.execute(text(
        "SELECT count(*) = 1 FROM information_schema.columns WHERE table_name = 'people' AND column_name = 'grid_code'"
    )).scalar()
    if not ok:
        return None
    return {r.grid_code: r.people for r in session.execute(text(POPULATION_SQL))}


def summary(session: Session, user: User, overdue_limit: int = 20) -> dict:
    """Per-grid measures, today's KPIs, street ranking and overdue list for ``user``'s view."""
    from gridserver.incidents.categories import category_label

    vis, params = _vis(user)
    params = {**params, "done": DONE}

    def bind(sql: str):
        return text(sql.replace("{vis}", vis)).bindparams(bindparam("done", expanding=True))

    population = _population(session)
    grids = {}
    for r in session.execute(bind(PER_GRID_SQL), params):
        g = {"open": r.open, "overdue": r.overdue, "today": r.today}
        if population is not None and population.get(r.grid_code):
            g["per_1000"] = round(1000.0 * r.open / population[r.grid_code], 2)
        grids[r.grid_code] = g
    k = session.execute(bind(KPI_SQL), params).one()
    kpi = {"reported": k.reported, "dispatched": k.dispatched, "closed": k.closed, "open": k.open,
           "overdue": k.overdue,
           "same_day_closure_rate": round(k.closed_same_day / k.reported, 4) if k.reported else None,
           "satisfaction_rate": round(k.satisfied / k.rated, 4) if k.rated else None}
    streets = [dict(r._mapping) for r in session.execute(bind(STREETS_SQL),
                                                         {**params, "scope": (user.scope_code or "") + "%"})]
    overdue = []
    for r in session.execute(bind(OVERDUE_SQL), {**params, "limit": overdue_limit}):
        d = dict(r._mapping)
        d["category_label"] = category_label(d["category"])
        d["hours_over"] = float(d["hours_over"]) if d["hours_over"] is not None else None
        overdue.append(d)
    return {"grids": grids, "kpi": kpi, "streets": streets, "overdue": overdue,
            "population": population is not None, "scope": user.scope_code}


router = APIRouter(tags=["地图 maps"])


@router.get("/api/v1/screen/summary", summary="指挥大屏数据 wall summary: per-grid measures, KPIs, ranking, overdue")
def screen_summary(overdue_limit: int = Query(20, ge=1, le=200), session: Session = Depends(get_session, scope="function"),
                   user: User = Depends(current_user)):
    return summary(session, user, overdue_limit)


#: Optional endpoints of other domains the pages use when this server has them.
OPTIONAL_ENDPOINTS = {
    "stats": "/api/v1/stats/incidents", "datasets": "/api/v1/datasets", "hotspots": "/api/v1/hotspots",
    "aggregate": "/api/v1/aggregate", "profile": "/api/v1/areas/{code}/profile", "tasks": "/api/v1/tasks",
    "attachments": "/api/v1/incidents/{incident_id}/attachments", "events": "/api/v1/incidents/{incident_id}/events",
    "actions": "/api/v1/incidents/{incident_id}/actions/{action}",
}


@router.get("/api/v1/screen/capabilities", summary="页面可用接口 which optional endpoints this server has")
def capabilities(request: Request):
    """So the pages hide a panel instead of calling (and logging) an endpoint that is not there."""
    paths = set(request.app.openapi().get("paths", {}))  # cached by FastAPI after the first call
    return {k: v in paths for k, v in OPTIONAL_ENDPOINTS.items()}
