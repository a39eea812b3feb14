"""Patrols (巡查): start, batches of track points stored once, stop, coverage per grid."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

GRID = "440104001001001"  # 113.25–113.26 × 23.1425–23.15 in the small city


def _track(n=40, start=0):
    t0 = datetime.now(timezone.utc) - timedelta(minutes=30)
    # a west→east walk along the middle of the grid
    return [{"seq": i, "lon": 113.2505 + 0.009 * i / (n - 1), "lat": 23.14625,
             "t": (t0 + timedelta(seconds=10 * i)).isoformat(), "accuracy": 5} for i in range(start, n)]


@pytest.fixture
def worker(make_user):
    return make_user("grid_worker", GRID)


def test_patrol_records_a_track_once_and_covers_part_of_the_grid(http, small_city, worker, auth, make_user):
    h = auth(worker)
    r = http.post("/api/v1/patrols", json={"client_key": f"k-{worker['username']}"}, headers=h)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert r.json()["grid_code"] == GRID
    again = http.post("/api/v1/patrols", json={"client_key": f"k-{worker['username']}"}, headers=h)
    assert again.json()["id"] == pid, "a replayed start returns the same patrol"

    pts = _track()
    first = http.post(f"/api/v1/patrols/{pid}/points", json={"points": pts[:25]}, headers=h).json()
    assert first["stored"] == 25
    # the phone re-sends an overlapping batch after a network drop
    second = http.post(f"/api/v1/patrols/{pid}/points", json={"points": pts[20:]}, headers=h).json()
    assert second == {"patrol_id": pid, "received": 20, "stored": 15, "duplicates": 5, "input_crs": "wgs84"}
    stopped = http.post(f"/api/v1/patrols/{pid}/stop", headers=h).json()
    assert stopped["points"] == 40 and stopped["ended_at"]
    assert 850 < stopped["length_m"] < 950  # 0.009° of longitude at 23.1°N ≈ 921 m
    assert stopped["track"]["type"] == "LineString"

    cov = http.get("/api/v1/patrols/coverage", params={"geometry": "true"}, headers=h).json()
    (mine,) = cov["grids"]
    assert mine["grid_code"] == GRID
    # a 60 m wide band across a 1 km × 780 m grid: ~7–8 %
    assert 0.05 < mine["coverage"] < 0.10
    assert mine["covered"]["type"] in ("Polygon", "MultiPolygon")

    boss = make_user("street_operator", "440104001")
    per_grid = {g["grid_code"]: g["coverage"] for g in
                http.get("/api/v1/patrols/coverage", headers=auth(boss)).json()["grids"]}
    assert len(per_grid) == 8 and per_grid[GRID] == mine["coverage"]
    assert per_grid["440104001002004"] == 0


def test_patrol_rules(http, small_city, worker, auth, make_user):
    assert http.post("/api/v1/patrols", json={}).status_code == 401
    analyst = make_user("analyst")
    assert http.post("/api/v1/patrols", json={}, headers=auth(analyst)).status_code == 403
    pid = http.post("/api/v1/patrols", json={}, headers=auth(worker)).json()["id"]
    other = make_user("grid_worker", "440104003002004")
    r = http.post(f"/api/v1/patrols/{pid}/points", json={"points": _track(3)}, headers=auth(other))
    assert r.status_code == 403
    bad = _track(3)
    bad[1]["lat"] = 123.0
    r = http.post(f"/api/v1/patrols/{pid}/points", json={"points": bad}, headers=auth(worker))
    assert r.status_code == 422 and "points[1]" in r.json()["detail"]
    outside = http.get("/api/v1/patrols/coverage", params={"area": "440104003"}, headers=auth(worker))
    assert outside.status_code == 403
