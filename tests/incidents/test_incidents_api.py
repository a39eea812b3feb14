"""POST/GET /api/v1/incidents against a live server on the small city: locate, scope, filters, pages."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import shapely
from sqlalchemy import text

from gridserver.geo.crs import wgs84_to_bd09, wgs84_to_gcj02
from gridserver.incidents.categories import CATEGORIES

GRID = "440104001001001"  # 洪桥北社区第001网格, NW corner of the district
IN_GRID = (113.255, 23.146)
IN_NEIGHBOUR_GRID = (113.265, 23.146)  # 440104001001002, same community
IN_OTHER_COMMUNITY = (113.255, 23.125)  # 440104001002003
IN_OTHER_STREET = (113.285, 23.146)  # 440104003001002
OUTSIDE = (113.40, 23.13)


def _truth(city, lon, lat):
    """Ground truth with the documented rule: covering grid with the smallest code."""
    pt = shapely.Point(lon, lat)
    hits = sorted(c for c, a in city.items() if a["level"] == "grid" and a["geom"].covers(pt))
    return hits[0] if hits else None


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM incidents")).scalar_one()


def _report(http, who, auth, lon, lat, category="city_appearance", **extra):
    return http.post("/api/v1/incidents", headers=auth(who),
                     json={"lon": lon, "lat": lat, "category": category, **extra})


@pytest.fixture(scope="module")
def worker(make_user, small_city):
    return make_user("grid_worker", GRID)


# --- writing ---------------------------------------------------------------------------------------
def test_grid_worker_reports_in_own_grid(http, auth, worker, small_city):
    r = _report(http, worker, auth, *IN_GRID, description="井盖缺失 missing manhole cover", address="人民北路1号")
    assert r.status_code == 201, r.text
    body = r.json()
    g = small_city[GRID]
    assert body["grid_code"] == GRID and body["grid_name"] == g["name"]
    community, street = small_city[g["parent_code"]], small_city[small_city[g["parent_code"]]["parent_code"]]
    assert (body["community_code"], body["community_name"]) == (community["code"], "洪桥北社区")
    assert (body["street_code"], body["street_name"]) == (street["code"], "洪桥街道")
    assert body["district_code"] == "440104"
    assert body["category_label"] == CATEGORIES["city_appearance"]["label"]
    assert body["status"] == "reported" and body["reporter"] == worker["username"]
    assert body["address"] == "人民北路1号" and body["input_crs"] == "wgs84"
    assert r.headers["location"] == f"/api/v1/incidents/{body['id']}"
    again = http.get(r.headers["location"], headers=auth(worker))
    assert again.status_code == 200 and again.json() == {**body, "duplicates": None}  # candidates: intake only


def test_grid_worker_outside_own_grid_is_403_and_nothing_stored(http, auth, worker, engine, small_city):
    before = _count(engine)
    r = _report(http, worker, auth, *IN_NEIGHBOUR_GRID)
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert "440104001001002" in detail and GRID in detail and worker["username"] in detail
    assert _count(engine) == before


def test_operators_write_only_inside_their_scope(http, auth, make_user, small_city):
    community_op = make_user("community_operator", "440104001001")
    assert _report(http, community_op, auth, *IN_NEIGHBOUR_GRID).status_code == 201
    assert _report(http, community_op, auth, *IN_OTHER_COMMUNITY).status_code == 403
    street_op = make_user("street_operator", "440104003")
    r = _report(http, street_op, auth, *IN_OTHER_STREET)
    assert r.status_code == 201 and r.json()["street_name"] == "北京街道"
    assert _report(http, street_op, auth, *IN_GRID).status_code == 403


def test_citizen_reports_anywhere_but_reads_only_own(http, auth, make_user, worker, small_city):
    citizen = make_user("citizen")
    mine = []
    for lon, lat in (IN_GRID, IN_OTHER_STREET):
        r = _report(http, citizen, auth, lon, lat, category="neighbourhood")
        assert r.status_code == 201, r.text
        mine.append(r.json()["id"])
    listed = http.get("/api/v1/incidents", params={"limit": 1000}, headers=auth(citizen)).json()
    assert sorted(i["id"] for i in listed["items"]) == sorted(mine) and listed["total"] == 2
    other = _report(http, worker, auth, *IN_GRID).json()["id"]
    assert http.get(f"/api/v1/incidents/{other}", headers=auth(citizen)).status_code == 403
    # and the grid worker, whose scope covers the citizen's first report, can read it
    assert http.get(f"/api/v1/incidents/{mine[0]}", headers=auth(worker)).status_code == 200
    assert http.get(f"/api/v1/incidents/{mine[1]}", headers=auth(worker)).status_code == 403


@pytest.mark.parametrize("role,scope", [("analyst", None), ("dept_handler", "440104")])
def test_read_only_roles_cannot_report(http, auth, make_user, small_city, role, scope):
    r = _report(http, make_user(role, scope), auth, *IN_GRID)
    assert r.status_code == 403 and role in r.json()["detail"]


@pytest.mark.parametrize("payload,fragment", [
    ({"lon": 113.255, "lat": 23.146, "category": "ufo"}, "city_appearance"),
    ({"lon": 200, "lat": 23.146, "category": "other"}, "lon must be"),
    ({"lon": 113.255, "lat": -95, "category": "other"}, "lat must be"),
    ({"lon": "east", "lat": 23.146, "category": "other"}, "lon"),
    ({"lat": 23.146, "category": "other"}, "lon and lat are both required"),
    ({"category": "other", "address": "  "}, "or an address"),
    ({"lon": 113.255, "category": "other", "address": "人民北路1号"}, "lon and lat are both required"),
    ({"lon": 113.255, "lat": 23.146, "crs": "mars-2", "category": "other"}, "mars-2"),
    ({"lon": 113.255, "lat": 23.146, "category": "other", "description": "x" * 2001}, "2000"),
    ({"lon": 113.255, "lat": 23.146}, "category"),
])
def test_bad_input_is_422_and_nothing_stored(http, auth, admin_token, engine, small_city, payload, fragment):
    before = _count(engine)
    r = http.post("/api/v1/incidents", json=payload, headers=auth(admin_token))
    assert r.status_code == 422, r.text
    assert r.json()["code"] in ("invalid_input", "unknown_crs")
    assert fragment in r.json()["detail"]
    assert _count(engine) == before


def test_outside_point_is_404_and_nothing_stored(http, auth, admin_token, engine, small_city):
    before = _count(engine)
    r = _report(http, admin_token, auth, *OUTSIDE)
    assert r.status_code == 404
    assert r.json()["code"] == "outside_area" and "outside every grid" in r.json()["detail"]
    assert _count(engine) == before


@pytest.mark.parametrize("crs,forward", [("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09)])
def test_shifted_crs_lands_in_same_grid_as_wgs84(http, auth, admin_token, small_city, crs, forward):
    rng = np.random.default_rng(11)
    for lon, lat in zip(rng.uniform(113.2505, 113.2895, 8), rng.uniform(23.1205, 23.1495, 8)):
        x, y = (float(v) for v in forward(lon, lat))
        assert abs(x - lon) > 1e-3  # really shifted (hundreds of metres), not a no-op
        a = _report(http, admin_token, auth, float(lon), float(lat)).json()
        b = _report(http, admin_token, auth, x, y, crs=crs).json()
        assert b["grid_code"] == a["grid_code"] == _truth(small_city, lon, lat)
        assert b["input_crs"] == crs and (b["input_x"], b["input_y"]) == (x, y)
        assert abs(b["lon"] - lon) < 1e-6 and abs(b["lat"] - lat) < 1e-6


def test_get_unknown_id_is_404(http, auth, admin_token):
    r = http.get("/api/v1/incidents/987654321", headers=auth(admin_token))
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_categories_are_public(http):
    r = http.get("/api/v1/incidents/categories")
    assert r.status_code == 200
    assert {c["code"] for c in r.json()} == set(CATEGORIES)


# --- listing ---------------------------------------------------------------------------------------
N = 120


@pytest.fixture(scope="module")
def many(http, auth, make_user, small_city):
    """120 incidents at random points of the district, reported through the API by a fresh admin."""
    reporter = make_user("admin")
    rng = np.random.default_rng(2024)
    cats = list(CATEGORIES)
    created = []
    for k, (lon, lat) in enumerate(zip(rng.uniform(113.2501, 113.2899, N), rng.uniform(23.1201, 23.1499, N))):
        r = _report(http, reporter, auth, float(lon), float(lat), category=cats[k % 4])
        assert r.status_code == 201, r.text
        created.append(r.json())
    return reporter, created


def _all(http, headers, **params):
    r = http.get("/api/v1/incidents", params={"limit": 1000, **params}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["items"]) and body["next"] is None
    return body["items"]


def test_stored_grids_match_ground_truth(many, small_city):
    _, created = many
    assert all(i["grid_code"] == _truth(small_city, i["lon"], i["lat"]) for i in created)


def test_pages_follow_next_until_done(http, auth, many):
    reporter, created = many
    url, params, seen, pages = "/api/v1/incidents", {"reporter": reporter["username"]}, [], 0
    while url:
        r = http.get(url, params=params, headers=auth(reporter))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == N and body["limit"] == 50
        seen += [i["id"] for i in body["items"]]
        url, params, pages = body["next"], None, pages + 1
    assert pages == 3
    assert seen == sorted((i["id"] for i in created), reverse=True)  # newest first, no gap, no repeat


def test_cursor_pages_are_stable_while_new_reports_arrive(http, auth, many):
    reporter, created = many
    first = http.get("/api/v1/incidents", params={"reporter": reporter["username"], "limit": 30},
                     headers=auth(reporter)).json()
    newcomer = _report(http, reporter, auth, *IN_GRID).json()["id"]
    try:
        second = http.get(first["next"], headers=auth(reporter)).json()
        assert second["offset"] is None
        expected = sorted((i["id"] for i in created), reverse=True)[30:60]
        assert [i["id"] for i in second["items"]] == expected
    finally:
        from gridserver.db.engine import get_engine

        with get_engine().begin() as conn:  # keep the 120-row fixture exact for the other tests
            conn.execute(text("DELETE FROM incidents WHERE id = :id"), {"id": newcomer})


def test_offset_and_limit(http, auth, many):
    reporter, created = many
    r = http.get("/api/v1/incidents", params={"reporter": reporter["username"], "limit": 50, "offset": 100},
                 headers=auth(reporter)).json()
    assert r["offset"] == 100 and r["total"] == N and r["next"] is None
    assert [i["id"] for i in r["items"]] == sorted((i["id"] for i in created), reverse=True)[100:]


def test_bbox_filter_matches_points_inside(http, auth, many):
    reporter, created = many
    box = (113.255, 23.125, 113.275, 23.14)
    got = {i["id"] for i in _all(http, auth(reporter), reporter=reporter["username"], bbox=",".join(map(str, box)))}
    expected = {i["id"] for i in created if box[0] <= i["lon"] <= box[2] and box[1] <= i["lat"] <= box[3]}
    assert got == expected and 0 < len(expected) < N


def test_bbox_in_gcj02(http, auth, many):
    reporter, created = many
    box = (113.255, 23.125, 113.275, 23.14)
    gx, gy = wgs84_to_gcj02(np.array([box[0], box[2]]), np.array([box[1], box[3]]))
    gbox = ",".join(repr(float(v)) for v in (gx[0], gy[0], gx[1], gy[1]))
    got = {i["id"] for i in _all(http, auth(reporter), reporter=reporter["username"], bbox=gbox, crs="gcj02")}
    inside = {i["id"] for i in created if box[0] <= i["lon"] <= box[2] and box[1] <= i["lat"] <= box[3]}
    # the GCJ shift varies by well under 1e-5° across this box; only points that close to an edge may differ
    near_edge = {i["id"] for i in created
                 if min(abs(i["lon"] - box[0]), abs(i["lon"] - box[2]), abs(i["lat"] - box[1]),
                        abs(i["lat"] - box[3])) < 1e-5}
    assert got - near_edge == inside - near_edge and len(inside) > 0


@pytest.mark.parametrize("code", ["440104001001002", "440104001002", "440104003", "440104"])
def test_area_filter_by_grid_community_street_district(http, auth, many, code):
    reporter, created = many
    got = {i["id"] for i in _all(http, auth(reporter), reporter=reporter["username"], grid=code)}
    assert got == {i["id"] for i in created if i["grid_code"].startswith(code)}
    assert len(got) > 0


def test_category_status_and_time_filters(http, auth, many):
    reporter, created = many
    h, who = auth(reporter), reporter["username"]
    got = {i["id"] for i in _all(http, h, reporter=who, category="road_traffic", grid="440104001")}
    assert got == {i["id"] for i in created if i["category"] == "road_traffic" and i["grid_code"].startswith("440104001")}
    assert len(_all(http, h, reporter=who, status="reported")) == N
    assert _all(http, h, reporter=who, status="closed") == []
    ordered = sorted(created, key=lambda i: (i["created_at"], i["id"]))
    cut = datetime.fromisoformat(ordered[70]["created_at"])
    since = {i["id"] for i in _all(http, h, reporter=who, since=cut.isoformat())}
    until = {i["id"] for i in _all(http, h, reporter=who, until=cut.isoformat())}
    assert since == {i["id"] for i in ordered if datetime.fromisoformat(i["created_at"]) >= cut}
    assert since | until == {i["id"] for i in created} and not since & until
    # a naive timestamp is read as China time (UTC+8)
    naive_local = cut.astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
    assert {i["id"] for i in _all(http, h, reporter=who, since=naive_local.isoformat())} == since


def test_scoped_reader_sees_only_its_scope(http, auth, many, make_user):
    reporter, created = many
    op = make_user("community_operator", "440104003002")
    got = {i["id"] for i in _all(http, auth(op), reporter=reporter["username"])}
    assert got == {i["id"] for i in created if i["grid_code"].startswith("440104003002")} and got


@pytest.mark.parametrize("params,fragment", [
    ({"bbox": "113.25,23.12,113.29"}, "4 comma-separated"),
    ({"bbox": "a,b,c,d"}, "4 numbers"),
    ({"bbox": "113.29,23.12,113.25,23.15"}, "minlon < maxlon"),
    ({"bbox": "113.25,23.12,213.29,23.15"}, "lon must be"),
    ({"bbox": "113.25,23.12,113.29,23.15", "crs": "nowhere"}, "nowhere"),
    ({"grid": "4401"}, "6 (district)"),
    ({"grid": "44010400100100x"}, "6 (district)"),
    ({"category": "ufo"}, "unknown category"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"offset": -1}, "offset"),
    ({"cursor": "garbage!"}, "invalid cursor"),
    ({"since": "2026-01-02T00:00:00", "until": "2026-01-01T00:00:00"}, "must be before"),
    ({"since": "yesterday"}, "since"),
])
def test_bad_list_filters_are_422(http, auth, admin_token, params, fragment):
    r = http.get("/api/v1/incidents", params=params, headers=auth(admin_token))
    assert r.status_code == 422, r.text
    assert fragment in r.json()["detail"]
