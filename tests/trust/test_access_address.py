"""Access (issue 8): what the standard address base shows to whom, and review-queue scopes.

Strangers get road-level geocoding; house … room level, reverse geocoding below road level,
details by code and the change history (with actor names) need a staff token whose scope covers
the address. The review queue and the review decisions compute a record's area with one function,
and a merge target must be in the reviewer's scope too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "address"))  # the shared test address base
from address_data import address_base  # noqa: E402,F401  (fixture)

SOURCE = "访问控制测试"
WEST, EAST = "440104001", "440104003"


@pytest.fixture(scope="module")
def room(engine, address_base):
    with engine.connect() as conn:
        return conn.execute(text(
            """SELECT r.id, r.code, r.full_text, r.road, r.house_no, r.building, r.unit, r.room, r.grid_code,
                      ST_X(r.geom) x, ST_Y(r.geom) y, road.code AS road_code, road.full_text AS road_text
               FROM std_addresses r JOIN std_addresses road ON road.level = 'road' AND r.code LIKE road.code || '%'
               WHERE r.level = 'room' AND r.unit <> '' AND r.source = '测试标准地址库' AND r.grid_code IS NOT NULL
               ORDER BY r.code LIMIT 1""")).first()


@pytest.fixture(scope="module")
def people(make_user, room):
    other = EAST if room.grid_code.startswith(WEST) else WEST
    return {"inside": make_user("grid_worker", room.grid_code),
            "community": make_user("community_operator", room.grid_code[:12]),
            "outside": make_user("street_operator", other),
            "citizen": make_user("citizen"),
            "analyst": make_user("analyst")}


def _q(r) -> str:
    return f"{r.road}{r.house_no}号{r.building}栋{r.unit}单元{r.room}室"


# --- geocode ------------------------------------------------------------------------------------------
def test_geocode_stranger_gets_the_road_only(http, room):
    res = http.get("/api/v1/address/geocode", params={"q": _q(room)})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["level"] == body["precision"] == "road" and body["code"] == room.road_code
    assert room.code not in res.text and f"{room.room}室" not in body["full_text"]
    assert "restricted" in body


@pytest.mark.parametrize("who,full", [("inside", True), ("community", True), ("analyst", True),
                                      ("outside", False), ("citizen", False)])
def test_geocode_detail_needs_staff_in_scope(http, auth, people, room, who, full):
    body = http.get("/api/v1/address/geocode", params={"q": _q(room)}, headers=auth(people[who])).json()
    if full:
        assert (body["code"], body["level"]) == (room.code, "room") and "restricted" not in body
    else:
        assert (body["code"], body["level"]) == (room.road_code, "road") and "restricted" in body


# --- reverse -------------------------------------------------------------------------------------------
def test_reverse_below_road_needs_a_token(http, auth, people, room):
    where = {"lon": room.x, "lat": room.y}
    r = http.get("/api/v1/address/reverse", params=where)  # default level=house
    assert r.status_code == 401 and "level=road" in r.json()["detail"]
    r = http.get("/api/v1/address/reverse", params={**where, "level": "room"}, headers=auth(people["citizen"]))
    assert r.status_code == 403
    r = http.get("/api/v1/address/reverse", params={**where, "level": "road", "max_distance_m": 5000})
    assert r.status_code == 200 and all(i["level"] == "road" for i in r.json()["items"])


def test_reverse_lists_only_addresses_in_scope(http, auth, people, room):
    where = {"lon": room.x, "lat": room.y, "level": "room", "limit": 10, "max_distance_m": 5000}
    mine = http.get("/api/v1/address/reverse", params=where, headers=auth(people["inside"])).json()["items"]
    assert room.code in {i["code"] for i in mine} and mine[0]["distance_m"] < 0.01
    assert all(i["grid_code"] == room.grid_code for i in mine)
    where["limit"] = 100
    # other grids exist nearby: houses, since the 100 nearest rooms can all be one compound in one grid
    # (they are, on the generated roads used without ../shared)
    everyone = http.get("/api/v1/address/reverse", params={**where, "level": "house"},
                        headers=auth(people["analyst"])).json()["items"]
    assert len(everyone) == 100 and len({i["grid_code"] for i in everyone}) > 1
    theirs = http.get("/api/v1/address/reverse", params=where, headers=auth(people["outside"])).json()["items"]
    assert room.code not in {i["code"] for i in theirs}
    assert all(i["grid_code"].startswith(people["outside"]["scope_code"]) for i in theirs)


# --- by code --------------------------------------------------------------------------------------------
def test_address_by_code_access(http, auth, people, room):
    assert http.get(f"/api/v1/address/{room.code}").status_code == 401
    assert http.get(f"/api/v1/address/{room.code}", headers=auth(people["outside"])).status_code == 403
    assert http.get(f"/api/v1/address/{room.code}", headers=auth(people["citizen"])).status_code == 403
    full = http.get(f"/api/v1/address/{room.code}", headers=auth(people["inside"]))
    assert full.status_code == 200 and full.json()["history"] and "actor" in full.json()["history"][0]
    road = http.get(f"/api/v1/address/{room.road_code}")
    assert road.status_code == 200 and road.json()["level"] == "road" and "history" not in road.json()
    assert "history" in http.get(f"/api/v1/address/{room.road_code}", headers=auth(people["analyst"])).json()


# --- review queue -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def records(engine, address_base, small_city):
    """Queued records whose area comes from different places; returns {name: id} and two houses."""
    with engine.begin() as conn:
        imp = conn.execute(text("INSERT INTO address_imports (source, file_name, file_hash) VALUES (:s, 't', 't') "
                                "RETURNING id"), {"s": SOURCE}).scalar()
        house = {}
        for street in (WEST, EAST):
            house[street] = conn.execute(text(
                "SELECT id, code FROM std_addresses WHERE level = 'house' AND status = 'active' "
                "AND grid_code LIKE :p ORDER BY code LIMIT 1"), {"p": street + "%"}).first()
        rows = {  # name: (point or None, candidate id or None)
            "point_east": ((113.275, 23.145), None),           # only its own point says where it is
            "point_west_cand_east": ((113.255, 23.145), house[EAST].id),
            "cand_west": (None, house[WEST].id),
            "nowhere": (None, None),
            "merge_me": ((113.285, 23.125), None),             # east, south-east grid
        }
        ids = {}
        for i, (name, (pt, cand)) in enumerate(rows.items()):
            ids[name] = conn.execute(text(
                """INSERT INTO dept_records (import_id, source, source_key, row_no, row_hash, raw_text, geom, status,
                                             candidate_id)
                   VALUES (:imp, :s, :k, :n, :k, :k,
                           CASE WHEN CAST(:x AS float8) IS NULL THEN NULL
                                ELSE ST_SetSRID(ST_MakePoint(:x, :y), 4326) END, 'review', :c) RETURNING id"""),
                {"imp": imp, "s": SOURCE, "k": name, "n": i + 1, "x": pt and pt[0], "y": pt and pt[1],
                 "c": cand}).scalar()
    return {"ids": ids, "house": house}


@pytest.mark.parametrize("scope", [WEST, EAST, EAST + "001", WEST + "002"])
def test_queue_shows_exactly_the_records_a_reviewer_may_decide(http, auth, make_user, admin_token, records, scope):
    role = "street_operator" if len(scope) == 9 else "community_operator"
    op = make_user(role, scope)
    seen = {i["id"] for i in http.get("/api/v1/address/review", params={"source": SOURCE, "limit": 500},
                                      headers=auth(op)).json()["items"]}
    everything = http.get("/api/v1/address/review", params={"source": SOURCE, "limit": 500},
                          headers=auth(admin_token)).json()["items"]
    assert len(everything) >= 4
    for item in everything:
        # Merging into a code that does not exist: 404 when the reviewer may decide, 403 when not;
        # either way nothing changes.
        r = http.post(f"/api/v1/address/review/{item['id']}/merge", json={"target_code": "440104R00000X"},
                      headers=auth(op))
        assert r.status_code in (403, 404), r.text
        assert (item["id"] in seen) == (r.status_code == 404), (item, scope)
        assert (item["id"] in seen) == bool(item["area_code"] and item["area_code"].startswith(scope))
    assert records["ids"]["nowhere"] not in seen
    if scope == EAST:
        assert {records["ids"]["point_east"], records["ids"]["merge_me"]} <= seen


def test_merge_target_must_be_in_scope(http, auth, make_user, records, admin_token):
    op = make_user("street_operator", EAST)
    rid = records["ids"]["merge_me"]
    r = http.post(f"/api/v1/address/review/{rid}/merge", json={"target_code": records["house"][WEST].code},
                  headers=auth(op))
    assert r.status_code == 403 and "merge target" in r.json()["detail"]
    queued = {i["id"] for i in http.get("/api/v1/address/review", params={"source": SOURCE, "limit": 500},
                                        headers=auth(admin_token)).json()["items"]}
    assert rid in queued  # nothing happened
    r = http.post(f"/api/v1/address/review/{rid}/merge", json={"target_code": records["house"][EAST].code},
                  headers=auth(op))
    assert r.status_code == 200, r.text
    assert r.json()["code"] == records["house"][EAST].code
