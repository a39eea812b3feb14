"""Incidents filed with address text instead of coordinates are geocoded from our own base."""

from __future__ import annotations

from sqlalchemy import text

from address_data import address_base  # noqa: F401  (fixture)


def _room(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT code, road, house_no, building, unit, room, grid_code, ST_X(geom) x, ST_Y(geom) y "
                                 "FROM std_addresses WHERE level = 'room' AND unit <> '' AND status = 'active' "
                                 "AND source = '测试标准地址库' ORDER BY code LIMIT 1")).first()


def _count(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM incidents")).scalar()


def test_address_only_report_is_geocoded_and_says_so(http, auth, admin_token, engine, address_base):
    r = _room(engine)
    address = f"越秀区{r.road}{r.house_no}号{r.building}栋{r.unit}单元{r.room}室"
    res = http.post("/api/v1/incidents", json={"category": "water_drainage", "description": "楼道漏水",
                                               "address": address}, headers=auth(admin_token))
    assert res.status_code == 201, res.text
    body = res.json()
    assert body["geocoded"] is True and body["geocode_confidence"] == 1.0
    assert body["address_code"] == r.code and body["address"] == address
    assert abs(body["lon"] - r.x) < 1e-9 and abs(body["lat"] - r.y) < 1e-9
    assert body["grid_code"] == r.grid_code
    again = http.get(f"/api/v1/incidents/{body['id']}", headers=auth(admin_token)).json()
    assert again["geocoded"] is True and again["address_code"] == r.code


def test_report_with_coordinates_is_not_marked_geocoded(http, auth, admin_token, small_city):
    res = http.post("/api/v1/incidents", json={"category": "other", "lon": 113.255, "lat": 23.146,
                                               "address": "随便写的地址"}, headers=auth(admin_token))
    assert res.status_code == 201, res.text
    assert res.json()["geocoded"] is False and res.json()["geocode_confidence"] is None


def test_unknown_address_is_404_and_nothing_stored(http, auth, admin_token, engine, address_base):
    before = _count(engine)
    res = http.post("/api/v1/incidents", json={"category": "other", "address": "火星基地999号"},
                    headers=auth(admin_token))
    assert res.status_code == 404, res.text
    assert _count(engine) == before
