"""Geocoding and reverse geocoding from our own base, through the real HTTP API."""

from __future__ import annotations

from sqlalchemy import text

from address_data import address_base  # noqa: F401  (fixture)


def _room(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT code, full_text, road, house_no, building, unit, room, grid_code, "
                                 "ST_X(geom) x, ST_Y(geom) y FROM std_addresses WHERE level = 'room' AND unit <> '' "
                                 "AND source = '测试标准地址库' ORDER BY code DESC LIMIT 1")).first()


def test_geocode_exact_address(http, engine, address_base, admin_token, auth):
    r = _room(engine)
    q = f"越秀区{r.road}{r.house_no}号{r.building}座{r.unit}单元{r.room}房"
    res = http.get("/api/v1/address/geocode", params={"q": q}, headers=auth(admin_token))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["code"] == r.code and body["full_text"] == r.full_text
    assert body["confidence"] == 1.0 and body["precision"] == "room"
    assert body["grid_code"] == r.grid_code and abs(body["lon"] - r.x) < 1e-9 and abs(body["lat"] - r.y) < 1e-9


def test_geocode_falls_back_to_the_deepest_known_level(http, engine, address_base, admin_token, auth):
    r = _room(engine)
    res = http.get("/api/v1/address/geocode", params={"q": f"{r.road}{r.house_no}号88栋9单元901室"},
                   headers=auth(admin_token))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["precision"] == "house" and body["level"] == "house"
    assert body["code"] == r.code.split("B")[0]  # the house code is the room code's prefix
    assert 0 < body["confidence"] < 0.5


def test_geocode_unknown_and_bad_input(http, address_base):
    res = http.get("/api/v1/address/geocode", params={"q": "深圳市福田区深南大道1号"})
    assert res.status_code == 404 and res.json()["code"] == "not_found"
    assert "outside the district" in res.json()["detail"]
    res = http.get("/api/v1/address/geocode", params={"q": ""})
    assert res.status_code == 422


def test_reverse_returns_nearest_houses_with_distances(http, engine, address_base, admin_token, auth):
    with engine.connect() as conn:
        h = conn.execute(text("SELECT code, ST_X(geom) x, ST_Y(geom) y FROM std_addresses WHERE level = 'house' "
                              "AND source = '测试标准地址库' ORDER BY code LIMIT 1 OFFSET 10")).first()
    res = http.get("/api/v1/address/reverse", params={"lon": h.x + 0.00002, "lat": h.y, "limit": 3},
                   headers=auth(admin_token))
    assert res.status_code == 200, res.text
    items = res.json()["items"]
    assert items[0]["code"] == h.code and 1.0 < items[0]["distance_m"] < 3.0
    assert [i["distance_m"] for i in items] == sorted(i["distance_m"] for i in items)
    assert all(i["level"] == "house" for i in items)


def test_reverse_accepts_gcj02_and_rejects_bad_crs(http, engine, address_base, admin_token, auth):
    from gridserver.geo.crs import wgs84_to_gcj02

    with engine.connect() as conn:
        h = conn.execute(text("SELECT code, ST_X(geom) x, ST_Y(geom) y FROM std_addresses WHERE level = 'house' "
                              "AND source = '测试标准地址库' ORDER BY code LIMIT 1 OFFSET 20")).first()
    gx, gy = wgs84_to_gcj02(h.x, h.y)
    res = http.get("/api/v1/address/reverse", params={"lon": float(gx), "lat": float(gy), "crs": "gcj02", "limit": 1},
                   headers=auth(admin_token))
    assert res.status_code == 200 and res.json()["items"][0]["code"] == h.code
    assert res.json()["items"][0]["distance_m"] < 0.05
    res = http.get("/api/v1/address/reverse", params={"lon": 113.27, "lat": 23.13, "crs": "mars-ish", "level": "road"})
    assert res.status_code == 422 and res.json()["code"] == "unknown_crs"
    res = http.get("/api/v1/address/reverse", params={"lon": 200, "lat": 23.13, "level": "road"})
    assert res.status_code == 422


def test_address_by_code_with_aliases_and_history(http, engine, address_base, admin_token, auth):
    r = _room(engine)
    res = http.get(f"/api/v1/address/{r.code}", headers=auth(admin_token))
    assert res.status_code == 200
    body = res.json()
    assert body["code"] == r.code and body["history"][0]["after"]["code"] == r.code
    assert http.get("/api/v1/address/440104R99999", headers=auth(admin_token)).status_code == 404


def test_geocode_for_incident(engine, address_base):
    from gridserver.address.geocode import geocode_for_incident
    from gridserver.db.engine import session_scope
    from gridserver.errors import NotFound
    import pytest

    r = _room(engine)
    with session_scope() as s:
        lon, lat, conf, code = geocode_for_incident(s, f"{r.road}{r.house_no}号{r.building}栋{r.unit}单元{r.room}")
        assert (code, conf) == (r.code, 1.0) and abs(lon - r.x) < 1e-9
        with pytest.raises(NotFound):
            geocode_for_incident(s, "不详")
