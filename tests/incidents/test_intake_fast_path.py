"""Intake's fast path (gridserver/incidents/intake.py): the manual dispatch queue for points inside the
territory but in no grid, 404 outside it; revocation still immediate although the account is read
inside intake's own statement; a calendar change made by another process reaches the next report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta

import pytest
from shapely.geometry import box
from sqlalchemy import text

from conftest import load_areas, scratch_codes
from gridserver.incidents.deadlines import LOCAL_TZ

# A scratch district far from the small city: one street, one community, and grids over its western
# half only; the eastern half is a gap (a river, a hole in the grid layer).
D = (113.50, 23.30, 113.52, 23.32)
GAP = (113.515, 23.31)
NEAR_OUTSIDE = (113.52 + 10 / 102_000, 23.31)  # 10 m east of the district: within the tolerance
FAR_OUTSIDE = (113.56, 23.31)  # 4 km east
IN_GRID = (113.505, 23.31)


@pytest.fixture
def gap_district(engine):
    gen = scratch_codes(engine, "440199")
    next(gen)
    x0, y0, x1, y1 = D
    xm = (x0 + x1) / 2
    load_areas(engine, [
        dict(level="district", code="440199", name="测试区", parent_code=None, geom=box(*D)),
        dict(level="street", code="440199001", name="河畔街道", parent_code="440199", geom=box(*D)),
        dict(level="community", code="440199001001", name="河畔社区", parent_code="440199001", geom=box(*D)),
        dict(level="grid", code="440199001001001", name="河畔社区第001网格", parent_code="440199001001",
             geom=box(x0, y0, xm, (y0 + y1) / 2)),
        dict(level="grid", code="440199001001002", name="河畔社区第002网格", parent_code="440199001001",
             geom=box(x0, (y0 + y1) / 2, xm, y1)),
    ])
    yield
    next(gen, None)


def _post(http, who, auth, lon, lat, **extra):
    return http.post("/api/v1/incidents", headers=auth(who),
                     json={"lon": lon, "lat": lat, "category": "city_appearance_01",
                           "description": f"测试 {uuid.uuid4().hex[:8]}", **extra})


def _count(engine, description: str) -> int:
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM incidents WHERE description = :d"), {"d": description}).scalar()


def test_a_gap_inside_the_territory_goes_to_the_manual_queue(http, auth, admin_token, gap_district):
    r = _post(http, admin_token, auth, *GAP)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["grid_code"] is None and body["department"] is None
    assert body["community_code"] == "440199001001" and body["street_code"] == "440199001"
    assert "不在任何网格" in body["manual_reason"] and "440199001001" in body["manual_reason"]
    assert body["route_rule"]["rule"] == "manual:no_grid" and body["duplicates"] is None
    queue = http.get("/api/v1/incidents", params={"manual": "true", "limit": 1000}, headers=auth(admin_token)).json()
    assert body["id"] in [i["id"] for i in queue["items"]]
    stored = http.get(f"/api/v1/incidents/{body['id']}", headers=auth(admin_token)).json()
    assert stored["manual_reason"] == body["manual_reason"] and stored["community_code"] == "440199001001"
    # a few metres outside the outline is still the territory (digitising tolerance)
    near = _post(http, admin_token, auth, *NEAR_OUTSIDE)
    assert near.status_code == 201 and near.json()["manual_reason"] and near.json()["district_code"] == "440199"
    # inside a grid it is routed as usual
    placed = _post(http, admin_token, auth, *IN_GRID)
    assert placed.status_code == 201 and placed.json()["grid_code"].startswith("440199001001")
    assert placed.json()["department"] and placed.json()["manual_reason"] is None


def test_outside_the_territory_is_404_and_nothing_is_stored(http, auth, admin_token, engine, gap_district):
    r = _post(http, admin_token, auth, *FAR_OUTSIDE, description="远处 far away")
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "outside_area"
    assert "outside every grid" in r.json()["detail"] and "territory" in r.json()["detail"]
    assert _count(engine, "远处 far away") == 0


def test_a_gap_report_needs_the_scope_of_the_area_around_it(http, auth, make_user, small_city, gap_district):
    grid_worker = make_user("grid_worker", "440199001001001")
    r = _post(http, grid_worker, auth, *GAP)
    assert r.status_code == 403 and "440199001001" in r.json()["detail"]
    community = make_user("community_operator", "440199001001")
    filed = _post(http, community, auth, *GAP)
    assert filed.status_code == 201
    # the community's staff see it in their manual queue, staff of another community do not
    assert http.get(f"/api/v1/incidents/{filed.json()['id']}", headers=auth(community)).status_code == 200
    queue = http.get("/api/v1/incidents", params={"manual": "true"}, headers=auth(community)).json()["items"]
    assert filed.json()["id"] in [i["id"] for i in queue]
    other = make_user("community_operator", "440104001001")
    assert http.get(f"/api/v1/incidents/{filed.json()['id']}", headers=auth(other)).status_code == 403
    assert _post(http, make_user("citizen"), auth, *GAP).status_code == 201


@pytest.mark.parametrize("how", ["disable", "password"])
def test_a_revoked_token_cannot_report(http, auth, make_user, engine, small_city, how):
    from gridserver.auth.users import set_active, set_password

    citizen = make_user("citizen")
    assert _post(http, citizen, auth, 113.255, 23.146).status_code == 201
    with engine.begin() as conn:
        (set_active(conn, citizen["username"], False) if how == "disable"
         else set_password(conn, citizen["username"], "another-password-1"))
    r = _post(http, citizen, auth, 113.255, 23.146, description="撤销后 after revocation")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    assert _count(engine, "撤销后 after revocation") == 0


def _one_working_day_item(http) -> str:
    for cat in http.get("/api/v1/incidents/categories").json():
        for item in cat["items"]:
            if item["deadline"] == "1wd":
                return item["code"]
    pytest.skip("the active taxonomy has no 1-working-day item")


def test_a_calendar_change_in_another_process_reaches_the_next_report(http, auth, make_user, db_url, engine,
                                                                      small_city):
    item = _one_working_day_item(http)
    citizen = make_user("citizen")
    first = http.post("/api/v1/incidents", headers=auth(citizen),
                      json={"lon": 113.255, "lat": 23.146, "category": item, "description": "日历"}).json()
    due = datetime.fromisoformat(first["deadline_at"]).astimezone(LOCAL_TZ).date()
    try:
        # the CLI, another process, makes that working day a holiday
        r = subprocess.run([sys.executable, "-m", "gridserver.cli", "taxonomy", "calendar", due.isoformat(),
                            "--holiday", "--note", "测试"], env={**os.environ, "DATABASE_URL": db_url},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        second = http.post("/api/v1/incidents", headers=auth(citizen),
                           json={"lon": 113.255, "lat": 23.146, "category": item, "description": "日历"}).json()
        moved = datetime.fromisoformat(second["deadline_at"]).astimezone(LOCAL_TZ).date()
        assert moved > due and moved - due < timedelta(days=30)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM calendar_overrides WHERE day = :d"), {"d": due})
    third = http.post("/api/v1/incidents", headers=auth(citizen),
                      json={"lon": 113.255, "lat": 23.146, "category": item, "description": "日历"}).json()
    back = datetime.fromisoformat(third["deadline_at"]).astimezone(LOCAL_TZ).date()
    day = [datetime.fromisoformat(x["created_at"]).astimezone(LOCAL_TZ).date() for x in (first, third)]
    if day[0] == day[1]:  # (unless the run crossed midnight)
        assert back == due  # the override deleted (again by another connection): seen at once


class _Counting:
    """A psycopg connection that counts the statements sent through it (round trips)."""

    def __init__(self, conn):
        self._conn, self.statements = conn, []

    def execute(self, query, params=None):
        self.statements.append(query)
        return self._conn.execute(query, params)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_report_costs_two_statements_and_a_keyed_retry_one(db_conninfo, engine, make_user, small_city):
    import psycopg

    from gridserver.db.idempotency import Idempotency
    from gridserver.incidents import intake
    from gridserver.incidents.schemas import IncidentIn

    citizen = make_user("citizen")
    with engine.connect() as c:
        version = c.execute(text("SELECT token_version FROM users WHERE username = :u"),
                            {"u": citizen["username"]}).scalar()
    body = IncidentIn(lon=113.255, lat=23.146, category="city_appearance_01", description="往返 round trips")
    with psycopg.connect(db_conninfo, autocommit=True) as raw:
        conn = _Counting(raw)
        intake.create(conn, body, claims=(citizen["username"], version))  # warms the taxonomy/calendar caches
        conn.statements.clear()
        out = intake.create(conn, body, claims=(citizen["username"], version))
        assert out["id"] and len(conn.statements) == 2  # context + write (token check, locate, … inside)
        idem = Idempotency(key=uuid.uuid4().hex, endpoint="POST /api/v1/incidents", request_hash="h", client="t")
        conn.statements.clear()
        first = intake.create(conn, body, claims=(citizen["username"], version), idem=idem)
        assert first.status_code == 201 and len(conn.statements) == 2  # the answer stored by the write itself
        conn.statements.clear()
        again = intake.create(conn, body, claims=(citizen["username"], version), idem=idem)
        assert json.loads(again.body) == json.loads(first.body) and again.headers["Idempotent-Replayed"] == "true"
        assert len(conn.statements) == 1  # replayed from the context statement
