"""The demo grid worker finds work on the phone app: planted tasks in their grid, made through the real
intake and workflow (routed, with their event history), replaced on every run."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
from sqlalchemy import text

from gridserver.settings import get_settings


def test_demo_worker_has_tasks_to_handle_and_to_verify(http, engine, small_city, monkeypatch):
    from gridserver.demo.build import ensure_demo_users
    from gridserver.demo.worker_tasks import SOURCE

    codes = {lvl: sorted(c for c, a in small_city.items() if a["level"] == lvl)
             for lvl in ("district", "street", "community", "grid")}
    ensure_demo_users(engine, {lvl: pd.DataFrame({"code": c}) for lvl, c in codes.items()})
    grids = gpd.GeoDataFrame([{"code": c, "geometry": small_city[c]["geom"]} for c in codes["grid"]], crs="EPSG:4326")
    try:
        _check(http, engine, grids, monkeypatch)
    finally:  # the small city is shared: leave no planted incident for the tests that count categories
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM incidents WHERE source = :s"), {"s": SOURCE})


def _check(http, engine, grids, monkeypatch):
    from gridserver.auth.security import create_access_token
    from gridserver.auth.users import get_user
    from gridserver.demo.worker_tasks import SOURCE, TASKS, plant_worker_tasks

    assert plant_worker_tasks(engine, grids) == len(TASKS)
    assert plant_worker_tasks(engine, grids) == len(TASKS)  # replaced, not added
    with engine.connect() as conn:
        worker = get_user(conn, "gridworker")
        n = conn.execute(text("SELECT count(*) FROM incidents WHERE source = :s"), {"s": SOURCE}).scalar_one()
    assert n == len(TASKS)
    monkeypatch.setattr(get_settings(), "demo_mode", True)  # demo accounts act only in demo mode
    token = create_access_token(worker.username, version=worker.token_version)
    tasks = http.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}).json()["items"]
    planted = [t for t in tasks if t["description"] in {d for _, d, _ in TASKS}]
    assert len(planted) == len(TASKS)
    assert all(t["grid_code"] == worker.scope_code for t in planted)
    assert sorted(t["status"] for t in planted) == ["dispatched", "dispatched", "resolved", "resolved"]
    assert {t["route_level"] for t in planted if t["status"] == "dispatched"} == {"grid"}
    auth = {"Authorization": f"Bearer {token}"}
    for t in planted:
        steps = [e["action"] for e in http.get(f"/api/v1/incidents/{t['id']}/events", headers=auth).json()["events"]]
        assert steps[0] == "report" and steps[-1] == ("dispatch" if t["status"] == "dispatched" else "resolve")
        allowed = http.get(f"/api/v1/incidents/{t['id']}/actions", headers=auth).json()["allowed_actions"]
        names = {a if isinstance(a, str) else a["name"] for a in allowed}
        assert ("start" if t["status"] == "dispatched" else "verify") in names, (t["status"], names)
