"""The demo grid worker's to-do list (我的待办 on the phone app /m/).

The demo's incidents are spread over 1,893 grids and have mostly run their course, so the demo grid worker's
grid would hold no task at all. This adds a few in that grid, made by the same intake and workflow code as
live reports (located, routed, with their event history): two things a grid worker handles on the spot
(small ads, an e-bike charging in a stairwell: grid-level, simple workflow) and two cases a department has
resolved that wait for the worker's return visit (核查). Rows carry ``source = 'demo_worker'`` and are
replaced on every run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

SOURCE = "demo_worker"
#: (taxonomy item, description, the steps the demo's street operator takes before it is the worker's turn)
TASKS = (
    ("city_appearance_03", "单元楼道口墙面乱张贴小广告，需清理", ("accept", "dispatch")),
    ("fire_safety_02", "居民在楼道内给电动车充电，存在火灾隐患", ("accept", "dispatch")),
    ("public_facility_01", "小区门口路灯不亮，夜间行人不便", ("accept", "dispatch", "start", "resolve")),
    ("city_appearance_02", "巷口垃圾桶满溢，周边散落垃圾", ("accept", "dispatch", "start", "resolve")),
)


def plant_worker_tasks(engine, grids, worker: str = "gridworker", reporter: str = "citizen",
                       operator: str = "street", now: datetime | None = None) -> int:
    """Replace the planted tasks in ``worker``'s grid (``grids``: GeoDataFrame code/geometry, EPSG:4326);
    returns how many incidents were made."""
    from gridserver.auth.users import get_user
    from gridserver.incidents.service import create_incident
    from gridserver.incidents.workflow import apply_action

    now = now or datetime.now(timezone.utc)
    with Session(engine) as session, session.begin():
        session.execute(text("DELETE FROM incidents WHERE source = :s"), {"s": SOURCE})
        who = {name: get_user(session.connection(), name) for name in (worker, reporter, operator)}
        if any(u is None for u in who.values()) or not who[worker].scope_code:
            return 0
        geom = grids.set_index("code").geometry.get(who[worker].scope_code)
        if geom is None:
            return 0
        x0, y0, x1, y1 = geom.bounds
        made = 0
        for k, (category, description, steps) in enumerate(TASKS):
            # spread inside the grid: points on a diagonal through it, kept where the grid covers them
            f = (k + 1) / (len(TASKS) + 1)
            p = shapely.Point(x0 + f * (x1 - x0), y0 + f * (y1 - y0))
            p = p if geom.contains(p) else geom.representative_point()
            reported = now - timedelta(hours=6 * (len(TASKS) - k))
            inc = create_incident(session, {"lon": p.x, "lat": p.y, "category": category,
                                            "description": description}, who[reporter], source=SOURCE, now=reported)
            for n, action in enumerate(steps):
                body = {"note": "已处置完毕，请网格员回访核查"} if action == "resolve" else {}
                at = reported + timedelta(minutes=20 * (n + 1))
                apply_action(session, inc["id"], action, body, who[operator], now=at)
            made += 1
    return made
