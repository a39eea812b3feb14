"""Block-data review queue decisions: link a queued row to a standard address / building (grid set by
the covering-grid rule) or reject it with a reason; scope-checked; who/when/why recorded.
Real PostGIS, real HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from shapely.geometry import box
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
import data as T  # noqa: E402
from conftest import load_areas, scratch_codes  # noqa: E402

from gridserver.blockdata.codes import make_credit_code  # noqa: E402
from gridserver.blockdata.importer import import_file  # noqa: E402

D = "440178"
W, E = f"{D}001001001", f"{D}002001001"   # west street's grid, east street's grid (split at x = 113.42)


def _areas():
    out = [dict(level="district", code=D, name="复核区", parent_code=None, geom=box(113.40, 23.20, 113.44, 23.23))]
    for s, (x0, x1) in (("001", (113.40, 113.42)), ("002", (113.42, 113.44))):
        st, cc = f"{D}{s}", f"{D}{s}001"
        g = box(x0, 23.20, x1, 23.23)
        out += [dict(level="street", code=st, name=f"复核{s}街道", parent_code=D, geom=g),
                dict(level="community", code=cc, name=f"复核{s}社区", parent_code=st, geom=g),
                dict(level="grid", code=cc + "001", name=f"复核{s}社区第001网格", parent_code=cc, geom=g)]
    return out


@pytest.fixture(scope="module")
def rq(engine, tmp_path_factory):
    from gridserver.address.base import NewAddress, bulk_create, set_actor

    gen = scratch_codes(engine, D)
    next(gen)
    load_areas(engine, _areas())
    A = dict(district_code=D, geom_source="survey")
    with engine.begin() as conn:
        set_actor(conn, "test", "create", "review-decision test addresses")
        bulk_create(conn, [NewAddress("复核路", "1", "", "", "", "", lon=113.410, lat=23.215, **A),
                           NewAddress("复核路", "2", "", "", "", "", lon=113.430, lat=23.215, **A)], source="测试")
        codes = dict(conn.execute(text("SELECT house_no, code FROM std_addresses WHERE district_code = :d AND status = 'active' "
                                       "AND road = '复核路' AND level = 'house'"), {"d": D}).all())
    tmp = tmp_path_factory.mktemp("review")
    T.write_csv(tmp / "people.csv", ["身份证号", "姓名", "联系电话", "性别", "户号", "地址", "人口类型", "重点人群"], [
        [T.pid(31, "M", 1960), "冯甲", "13800000031", "男", "", "复核路1号", "户籍", ""],
        [T.pid(32, "F", 1970), "陈乙", "13800000032", "女", "", "无名路88号", "户籍", ""],     # row 3: review
    ])
    c1, c2 = make_credit_code("9", "1", "440104", "MA5RE7001"), make_credit_code("9", "1", "440104", "MA5RE7002")
    T.write_csv(tmp / "biz.csv", ["统一社会信用代码", "名称", "行业类别", "地址", "经度", "纬度"], [
        [c1, "西边小店", "零售", "不存在路7号", "113.411", "23.216"],     # row 2: review, own point in W
        [c2, "东边小店", "零售", "不存在路9号", "113.431", "23.216"],     # row 3: review, own point in E
    ])
    T.write_csv(tmp / "buildings.csv", ["地址", "层数", "轮廓"], [
        ["没有路1号", "3", T.rect(113.4295, 23.2145, 113.4305, 23.2155)],  # row 2: review, not stored
    ])
    reps = {k: import_file(engine, tmp / f, kind=k, source="复核测试")
            for k, f in (("people", "people.csv"), ("businesses", "biz.csv"), ("buildings", "buildings.csv"))}
    with engine.connect() as conn:
        rows = {(r.kind, r.row_no): r.id for r in conn.execute(text(
            "SELECT id, kind, row_no FROM bd_review WHERE import_id = ANY(:i) AND status = 'review'"),
            {"i": [r["import_id"] for r in reps.values()]})}
    yield {"codes": codes, "rows": rows, "credit": (c1, c2), "reports": reps}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM people WHERE source = '复核测试'"))
        conn.execute(text("DELETE FROM businesses WHERE source = '复核测试'"))
        conn.execute(text("DELETE FROM houses WHERE source = '复核测试'"))
        conn.execute(text("DELETE FROM buildings WHERE source = '复核测试'"))
        conn.execute(text("DELETE FROM bd_rollup WHERE grid_code LIKE :p"), {"p": D + "%"})
    try:
        next(gen)
    except StopIteration:
        pass


@pytest.fixture(scope="module")
def ops(rq, make_user):
    return {"W": make_user("street_operator", f"{D}001"), "E": make_user("street_operator", f"{D}002")}


def _q(engine, sql, **p):
    with engine.connect() as conn:
        return conn.execute(text(sql), p).first()


def test_queue_has_the_unlinked_rows(rq):
    assert set(rq["rows"]) == {("people", 3), ("businesses", 2), ("businesses", 3), ("buildings", 2)}, rq["reports"]


def test_listing_is_limited_to_the_reviewers_area(rq, ops, http, auth, admin_token):
    ids = set(rq["rows"].values())
    everything = {r["id"]: r for r in http.get("/api/v1/blockdata/review", params={"status": "review", "limit": 1000},
                                               headers=auth(admin_token)).json()["rows"]}
    assert ids <= set(everything)
    assert everything[rq["rows"][("businesses", 2)]]["area_code"] == W
    assert everything[rq["rows"][("businesses", 3)]]["area_code"] == E
    assert everything[rq["rows"][("people", 3)]]["area_code"] is None
    seen_w = {r["id"] for r in http.get("/api/v1/blockdata/review", params={"status": "review"},
                                        headers=auth(ops["W"])).json()["rows"]}
    assert seen_w & ids == {rq["rows"][("businesses", 2)]}


def test_link_business_in_scope_and_denied_outside(rq, ops, http, auth, engine):
    rid = rq["rows"][("businesses", 2)]
    # the east operator may not decide a west row
    r = http.post(f"/api/v1/blockdata/review/{rid}/link", json={"address_code": rq["codes"]["1"]}, headers=auth(ops["E"]))
    assert r.status_code == 403 and W in r.json()["detail"]
    # nor may the west operator link its row to an address in the east
    r = http.post(f"/api/v1/blockdata/review/{rid}/link", json={"address_code": rq["codes"]["2"]}, headers=auth(ops["W"]))
    assert r.status_code == 403 and "target" in r.json()["detail"]
    assert _q(engine, "SELECT status FROM bd_review WHERE id = :i", i=rid).status == "review"
    r = http.post(f"/api/v1/blockdata/review/{rid}/link", json={"address_code": rq["codes"]["1"], "note": "现场核实"},
                  headers=auth(ops["W"]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["status"], out["grid_code"], out["address_code"], out["by"]) == ("resolved", W, rq["codes"]["1"], ops["W"]["username"])
    b = _q(engine, "SELECT address_code, grid_code FROM businesses WHERE credit_code = :c", c=rq["credit"][0])
    assert (b.address_code, b.grid_code) == (rq["codes"]["1"], W)
    rv = _q(engine, "SELECT status, data->'decision' AS d FROM bd_review WHERE id = :i", i=rid)
    assert rv.status == "resolved" and rv.d["by"] == ops["W"]["username"] and rv.d["reason"] == "现场核实" and rv.d["at"]
    # decided once: a second decision is a conflict naming who decided
    r = http.post(f"/api/v1/blockdata/review/{rid}/reject", json={"reason": "x"}, headers=auth(ops["W"]))
    assert r.status_code == 409 and ops["W"]["username"] in r.json()["detail"]


def test_person_of_unknown_area_only_citywide_then_grid_by_rule(rq, ops, http, auth, admin_token, engine):
    rid = rq["rows"][("people", 3)]
    r = http.post(f"/api/v1/blockdata/review/{rid}/link", json={"address_code": rq["codes"]["2"]}, headers=auth(ops["E"]))
    assert r.status_code == 403
    r = http.post(f"/api/v1/blockdata/review/{rid}/link", json={"address_code": "440178999999"}, headers=auth(admin_token))
    assert r.status_code == 422 and "address_code" in r.json()["detail"]
    r = http.post(f"/api/v1/blockdata/review/{rid}/link", json={}, headers=auth(admin_token))
    assert r.status_code == 422
    r = http.post(f"/api/v1/blockdata/review/{rid}/link", json={"address_code": rq["codes"]["2"]}, headers=auth(admin_token))
    assert r.status_code == 200, r.text
    p = _q(engine, "SELECT address_code, grid_code FROM people WHERE id = :i", i=r.json()["record_id"])
    assert (p.address_code, p.grid_code) == (rq["codes"]["2"], E)
    h = _q(engine, "SELECT grid_code FROM houses WHERE house_code = :c", c=rq["codes"]["2"])
    assert h is not None and h.grid_code == E   # the implied house, as the importer makes it
    assert _q(engine, "SELECT value FROM bd_rollup WHERE grid_code = :g AND metric = 'people'", g=E).value == 1
    # now the row lies in E: the east operator sees it, the west one does not
    seen = {x["id"] for x in http.get("/api/v1/blockdata/review", params={"status": "resolved"},
                                      headers=auth(ops["E"])).json()["rows"]}
    assert rid in seen
    seen = {x["id"] for x in http.get("/api/v1/blockdata/review", params={"status": "resolved"},
                                      headers=auth(ops["W"])).json()["rows"]}
    assert rid not in seen


def test_building_row_becomes_a_building(rq, http, auth, admin_token, engine):
    rid = rq["rows"][("buildings", 2)]
    r = http.post(f"/api/v1/blockdata/review/{rid}/link", json={"address_code": rq["codes"]["2"]}, headers=auth(admin_token))
    assert r.status_code == 200, r.text
    b = _q(engine, "SELECT building_code, grid_code, geom IS NOT NULL AS has_geom FROM buildings WHERE id = :i",
           i=r.json()["record_id"])
    assert b.grid_code == E and b.has_geom and b.building_code == rq["codes"]["2"]


def test_reject_needs_reason_and_scope_and_is_decided_once(rq, ops, http, auth, engine, live_url):
    rid = rq["rows"][("businesses", 3)]
    assert http.post(f"/api/v1/blockdata/review/{rid}/reject", json={"reason": "重复"}, headers=auth(ops["W"])).status_code == 403
    r = http.post(f"/api/v1/blockdata/review/{rid}/reject", json={"reason": "  "}, headers=auth(ops["E"]))
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    # two reviewers at once: one decision wins, the other is told it was already decided
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def go(reason):
        with httpx.Client(base_url=live_url, timeout=60) as c:
            return c.post(f"/api/v1/blockdata/review/{rid}/reject", json={"reason": reason}, headers=auth(ops["E"]))

    with ThreadPoolExecutor(2) as ex:
        got = list(ex.map(go, ["企业已注销", "企业已注销(2)"]))
    assert sorted(x.status_code for x in got) == [200, 409], [x.text for x in got]
    r = next(x for x in got if x.status_code == 200)
    rv = _q(engine, "SELECT status, data->'decision' AS d FROM bd_review WHERE id = :i", i=rid)
    assert rv.status == "rejected" and rv.d["reason"] == r.json()["reason"] and rv.d["by"] == ops["E"]["username"]
    # the record itself is kept
    assert _q(engine, "SELECT count(*) AS n FROM businesses WHERE credit_code = :c", c=rq["credit"][1]).n == 1
    assert http.post("/api/v1/blockdata/review/999999999/reject", json={"reason": "x"},
                     headers=auth(ops["E"])).status_code == 404


def test_person_review_row_carries_the_key_not_shown(rq, http, auth, admin_token, engine):
    """The importer keeps the person's ID-number HMAC on the review row (indexed lookup); listings hide it."""
    rid = rq["rows"][("people", 3)]
    assert _q(engine, "SELECT data ? 'id_hash' AS k FROM bd_review WHERE id = :i", i=rid).k
    rows = http.get("/api/v1/blockdata/review", params={"import_id": rq["reports"]["people"]["import_id"]},
                    headers=auth(admin_token)).json()["rows"]
    assert rows and all("id_hash" not in r["data"] for r in rows)
    # a review row written before the key was kept still finds its person (by the stored raw row)
    with engine.begin() as conn:
        conn.execute(text("UPDATE bd_review SET data = data - 'id_hash' WHERE id = :i"), {"i": rid})
    rows = {r["id"]: r for r in http.get("/api/v1/blockdata/review", params={"import_id": rq["reports"]["people"]["import_id"]},
                                         headers=auth(admin_token)).json()["rows"]}
    assert rows[rid]["area_code"] == E
