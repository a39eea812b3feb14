"""Buildings and businesses as OGC collections: present with the block-data tables, shaped by its privacy layer."""

from __future__ import annotations

import pytest
from sqlalchemy import text

ADDR = "440104R00012H0007B003U02S0012"


@pytest.fixture(scope="module")
def block(engine, small_city):
    with engine.connect() as conn:
        if not conn.execute(text("SELECT to_regclass('buildings') IS NOT NULL AND to_regclass('businesses') IS NOT NULL")).scalar():
            pytest.skip("block-data tables not in this build")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM businesses WHERE credit_code LIKE 'TESTAN%'"))
        conn.execute(text("DELETE FROM buildings WHERE building_code LIKE 'TESTAN%'"))
        for i, (grid, x, y) in enumerate([("440104001001001", 113.255, 23.145), ("440104003002004", 113.285, 23.122)]):
            conn.execute(text(
                """INSERT INTO buildings (building_code, address_code, name, geom, floors, use, grid_code, source)
                   VALUES (:c, :a, :n, ST_Multi(ST_Buffer(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 0.0002, 2)), 7,
                           'residential', :g, 'analytics_test')"""),
                {"c": f"TESTANB{i}", "a": ADDR, "n": f"测试楼{i}", "x": x, "y": y, "g": grid})
            conn.execute(text(
                """INSERT INTO businesses (credit_code, name, category, address_code, building_code, house_code, geom,
                                           grid_code, source)
                   VALUES (:c, :n, 'catering', :a, :b, :h, ST_SetSRID(ST_MakePoint(:x, :y), 4326), :g, 'analytics_test')"""),
                {"c": f"TESTANC{i}", "n": f"测试餐馆{i}", "a": ADDR, "b": f"TESTANB{i}", "h": f"{ADDR}H", "x": x, "y": y,
                 "g": grid})
    yield
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM businesses WHERE credit_code LIKE 'TESTAN%'"))
        conn.execute(text("DELETE FROM buildings WHERE building_code LIKE 'TESTAN%'"))


def _mine(http, headers, cid, **params):
    r = http.get(f"/ogc/collections/{cid}/items", headers=headers, params={"limit": 10000, **params})
    assert r.status_code == 200, r.text
    return [f for f in r.json()["features"] if str(f["id"]).startswith("TESTAN")]


def test_analyst_gets_deidentified_block_data(http, block, make_user, auth, ogc_schema):
    analyst = make_user("analyst")
    ids = {c["id"] for c in http.get("/ogc/collections", headers=auth(analyst)).json()["collections"]}
    assert {"buildings", "businesses"} <= ids
    assert not ids & {"people", "households", "houses", "persons"}
    b = _mine(http, auth(analyst), "buildings")
    assert len(b) == 2 and b[0]["geometry"]["type"] == "MultiPolygon"
    biz = _mine(http, auth(analyst), "businesses", category="catering")
    assert len(biz) == 2
    for f in biz:
        ogc_schema(f, "featureGeoJSON.json")
        assert f["properties"]["address_code"] == "440104R00012H0007B003"  # generalised to the building
        assert "house_code" not in f["properties"]


def test_admin_sees_full_rows_and_staff_their_scope(http, block, make_user, auth, admin_token):
    full = _mine(http, auth(admin_token), "businesses")
    assert {f["properties"]["address_code"] for f in full} == {ADDR}
    assert all(f["properties"]["house_code"] for f in full)
    street = make_user("street_operator", "440104003")
    mine = _mine(http, auth(street), "businesses")
    assert [f["properties"]["grid_code"] for f in mine] == ["440104003002004"]
    assert http.get("/ogc/collections/businesses/items/TESTANC0", headers=auth(street)).status_code == 404


def test_citizens_and_anonymous_get_no_block_data(http, block, make_user, auth):
    citizen = make_user("citizen")
    ids = {c["id"] for c in http.get("/ogc/collections", headers=auth(citizen)).json()["collections"]}
    assert not ids & {"buildings", "businesses"}
    assert http.get("/ogc/collections/businesses/items", headers=auth(citizen)).status_code == 403
    assert http.get("/ogc/collections/buildings/items").status_code == 401
