"""Block data end to end: import (CLI and service), linking, five codes, profiles, listings by role,
tags, access log, datasets, re-link after a grid redraw with history. Real PostGIS, real HTTP."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import data as T  # noqa: E402
from conftest import load_areas, scratch_codes  # noqa: E402

from gridserver.blockdata import service  # noqa: E402
from gridserver.blockdata.importer import import_file  # noqa: E402
from gridserver.blockdata.privacy import pii_hash  # noqa: E402


@pytest.fixture(scope="module")
def city(engine, tmp_path_factory):
    """Scratch district with addresses and all four files imported (buildings via the CLI)."""
    from gridserver.address.base import bulk_create, set_actor
    from gridserver.cli import app

    gen = scratch_codes(engine, T.D)
    next(gen)
    load_areas(engine, T.areas())
    with engine.begin() as conn:
        set_actor(conn, "test", "create", "block-data test addresses")
        bulk_create(conn, T.addresses(), source="测试")
    tmp = tmp_path_factory.mktemp("blockdata")
    files, facts = T.write_files(tmp)
    res = CliRunner().invoke(app, ["import", "buildings", str(files["buildings"]), "--source", "住建局", "--json"])
    assert res.exit_code == 0, res.output
    reports = {"buildings": json.loads(res.output.strip().splitlines()[-1])}
    reports["households"] = import_file(engine, files["households"], kind="households", source="公安户籍")
    reports["people"] = import_file(engine, files["people"], kind="people", source="公安户籍", update_rule="monthly")
    reports["businesses"] = import_file(engine, files["businesses"], kind="businesses", source="市场监管")
    yield {"files": files, "facts": facts, "reports": reports, "tmp": tmp}
    with engine.begin() as conn:
        for t in ("person_tags", "people", "households", "houses", "businesses", "buildings", "bd_grid_changes", "bd_rollup"):
            conn.execute(text(f"DELETE FROM {t}"))
    try:
        next(gen)
    except StopIteration:
        pass


def _one(engine, sql, **p):
    with engine.connect() as conn:
        return conn.execute(text(sql), p).first()


# --- import and linking ----------------------------------------------------------------------------
def test_buildings_link_by_largest_footprint_share_and_report_straddlers(city, engine):
    r = city["reports"]["buildings"]
    assert (r["rows"], r["inserted"], r["rejected"], r["review"]) == (5, 3, 1, 1)
    assert r["errors"] == [{"row": 4, "column": "floors", "reason": "floors must be a whole number between 0 and 200, got 'abc'"}]
    assert r["straddling_count"] == 1
    (s,) = r["straddling"]
    assert s["grid_code"] == T.NE and s["n_grids"] == 2 and abs(float(s["share"]) - 0.7) < 0.01
    rows = {b.address_code[-9:]: b for b in _all(engine, "SELECT building_code, address_code, grid_code, floors FROM buildings")}
    with engine.connect() as conn:
        codes = dict(conn.execute(text("SELECT full_text, code FROM std_addresses WHERE full_text LIKE '%测试区%'")).all())
    b1 = next(c for t, c in codes.items() if t.endswith("测绘路1号1栋"))
    b2 = next(c for t, c in codes.items() if t.endswith("测绘路2号1栋"))
    h5 = next(c for t, c in codes.items() if t.endswith("网格街5号"))
    got = {b.building_code: (b.grid_code, b.floors) for b in rows.values()}
    assert got == {b1: (T.NW, 6), b2: (T.NE, 12), h5: (T.SW, 2)}


def _all(engine, sql, **p):
    with engine.connect() as conn:
        return conn.execute(text(sql), p).all()


def test_people_validated_linked_and_stored_only_as_hmac(city, engine):
    r = city["reports"]["people"]
    assert (r["rows"], r["inserted"], r["rejected"], r["review"]) == (10, 8, 2, 1)
    errs = {(e["row"], e["column"]) for e in r["errors"]}
    assert errs == {(9, "id_number"), (10, "phone")}
    assert any("GB 11643" in e["reason"] for e in r["errors"])
    people = city["facts"]["people"]
    # the raw ID number and phone are nowhere in the database, only their HMAC and masks
    for idn, *_ in people:
        assert _one(engine, "SELECT count(*) FROM people p WHERE row_to_json(p)::text LIKE :p", p=f"%{idn}%")[0] == 0
        assert _one(engine, "SELECT count(*) FROM bd_raw_rows WHERE data::text LIKE :p", p=f"%{idn}%")[0] == 0
        assert _one(engine, "SELECT count(*) FROM bd_review WHERE data::text LIKE :p", p=f"%{idn}%")[0] == 0
    assert _one(engine, "SELECT count(*) FROM bd_raw_rows WHERE data::text LIKE '%13812345678%'")[0] == 0
    zhang = _one(engine, "SELECT * FROM people WHERE id_hash = :h", h=pii_hash(people[0][0]))
    assert zhang.name_masked == "张*明" and zhang.phone_masked == "138****5678"
    assert zhang.id_masked == people[0][0][:4] + "**********" + people[0][0][-4:]
    assert (zhang.sex, zhang.birth_year, zhang.grid_code, zhang.residence) == ("M", 1950, T.NW, "registered")
    # household H003 is in the straddling building → NE; the person linked by address only too
    assert _one(engine, "SELECT grid_code FROM people WHERE id_hash = :h", h=pii_hash(people[4][0])).grid_code == T.NE
    assert _one(engine, "SELECT grid_code FROM people WHERE id_hash = :h", h=pii_hash(people[5][0])).grid_code == T.NE
    # the unlinkable row is kept (nothing dropped) without address, and waits in review with a reason
    z = _one(engine, "SELECT address_code, grid_code FROM people WHERE id_hash = :h", h=pii_hash(people[9][0]))
    assert z.address_code is None and z.grid_code is None
    rv = _one(engine, "SELECT row_no, column_name, reason FROM bd_review WHERE kind = 'people' AND status = 'review'")
    assert rv.row_no == 11 and rv.column_name == "address" and "unlinked address" in rv.reason
    # tags from the file, with who/when
    tags = _all(engine, "SELECT t.tag, t.set_by FROM person_tags t JOIN people p ON p.id = t.person_id ORDER BY t.tag")
    assert [t.tag for t in tags] == ["elderly_alone", "floating", "left_behind_child"]


def test_households_gb18030_houses_and_businesses_xlsx(city, engine):
    assert city["reports"]["households"]["encoding"] == "gb18030"
    assert city["reports"]["households"]["inserted"] == 4
    hh = {h.household_code: h for h in _all(engine, "SELECT * FROM households")}
    assert hh["H001"].grid_code == T.NW and hh["H003"].grid_code == T.NE and hh["H004"].grid_code == T.SW
    assert hh["H001"].house_code == hh["H001"].address_code and hh["H001"].building_code
    assert hh["H004"].building_code == hh["H004"].house_code[: hh["H004"].house_code.index("S")]
    assert _one(engine, "SELECT count(*) FROM houses")[0] == 4
    b = city["reports"]["businesses"]
    assert (b["inserted"], b["rejected"]) == (2, 1) and b["errors"][0]["row"] == 4
    assert "GB 32100" in b["errors"][0]["reason"]
    good1, good2 = city["facts"]["credit"]
    assert _one(engine, "SELECT grid_code FROM businesses WHERE credit_code = :c", c=good1).grid_code == T.NE
    assert _one(engine, "SELECT grid_code FROM businesses WHERE credit_code = :c", c=good2).grid_code == T.SW


def test_reimport_is_idempotent(city, engine):
    before = _one(engine, "SELECT (SELECT count(*) FROM people), (SELECT count(*) FROM bd_raw_rows), "
                          "(SELECT count(*) FROM person_tags)")
    again = import_file(engine, city["files"]["people"], kind="people", source="公安户籍")
    assert again["already_imported"] is True
    copy = city["tmp"] / "people-copy.csv"
    copy.write_bytes(city["files"]["people"].read_bytes() + b"\n")  # same rows, another file
    r = import_file(engine, copy, kind="people", source="公安户籍")
    assert (r["inserted"], r["updated"], r["unchanged"]) == (0, 0, 8)
    after = _one(engine, "SELECT (SELECT count(*) FROM people), (SELECT count(*) FROM bd_raw_rows), "
                         "(SELECT count(*) FROM person_tags)")
    assert tuple(before) == tuple(after)


def test_bad_files_fail_before_writing(city, engine, tmp_path):
    from gridserver.cli import app
    from gridserver.errors import InvalidInput

    f = T.write_csv(tmp_path / "p.csv", ["姓名", "地址"], [["张三", "测绘路1号"]])
    with pytest.raises(InvalidInput, match="id_number"):
        import_file(engine, f, kind="people", source="x")
    res = CliRunner().invoke(app, ["import", "people", str(f), "--source", "x"])
    assert res.exit_code == 2 and "id_number" in res.output
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty"):
        import_file(engine, empty, kind="buildings", source="x")


# --- five codes -------------------------------------------------------------------------------------
def test_links_answer_all_five_directions(city, engine, http, auth, admin_token):
    zhang = city["facts"]["people"][0][0]
    p = _one(engine, "SELECT household_code, house_code, building_code, address_code FROM people WHERE id_hash = :h",
             h=pii_hash(zhang))
    good1, _ = city["facts"]["credit"]
    h = auth(admin_token)
    by_person = http.get("/api/v1/links", params={"person": zhang}, headers=h).json()
    assert by_person["building_codes"] == [p.building_code] and by_person["house_codes"] == [p.house_code]
    assert p.address_code in by_person["address_codes"]
    by_building = http.get("/api/v1/links", params={"building_code": p.building_code}, headers=h).json()
    assert pii_hash(zhang) in {x["person"] for x in by_building["people"]}
    assert p.house_code in by_building["house_codes"]
    by_house = http.get("/api/v1/links", params={"house_code": p.house_code}, headers=h).json()
    assert len(by_house["people"]) == 3 and by_house["building_codes"] == [p.building_code]
    by_address = http.get("/api/v1/links", params={"address_code": p.address_code}, headers=h).json()
    assert {x["name"] for x in by_address["people"]} == {"张三明", "李四", "王小花"}
    by_credit = http.get("/api/v1/links", params={"credit_code": good1}, headers=h).json()
    b2 = by_credit["building_codes"][0]
    assert by_credit["credit_codes"] == [good1] and by_credit["grid_codes"] == [T.NE]
    back = http.get("/api/v1/links", params={"building_code": b2}, headers=h).json()
    assert good1 in back["credit_codes"] and {x["name"] for x in back["people"]} == {"赵五", "钱六"}
    r = http.get("/api/v1/links", params={"person": T.bad_check(zhang)}, headers=h)
    assert r.status_code == 422 and "GB 11643" in r.json()["detail"]
    r = http.get("/api/v1/links", params={"building_code": "x", "credit_code": "y"}, headers=h)
    assert r.status_code == 422 and "exactly one" in r.json()["detail"]
    assert http.get("/api/v1/links", params={"building_code": "nope"}, headers=h).status_code == 404


def test_links_mask_by_role(city, http, auth, make_user):
    zhang = city["facts"]["people"][0][0]
    citizen = make_user("citizen")
    assert http.get("/api/v1/links", params={"person": zhang}, headers=auth(citizen)).status_code == 403
    other = make_user("grid_worker", T.SE)
    assert http.get("/api/v1/links", params={"person": zhang}, headers=auth(other)).status_code == 403
    analyst = make_user("analyst")
    body = http.get("/api/v1/links", params={"person": zhang}, headers=auth(analyst)).json()
    (p,) = body["people"]
    assert "name" not in p and "id_masked" not in p and "phone_masked" not in p and p["age_band"] == "60-79"


# --- profiles --------------------------------------------------------------------------------------
def test_profile_grid_and_district(city, http, auth, make_user):
    a = make_user("analyst")
    g = http.get(f"/api/v1/areas/{T.NW}/profile", headers=auth(a)).json()
    assert (g["buildings"], g["households"], g["people"]["total"]) == (1, 2, 4)
    assert g["people"]["by_sex"] == {"F": 2, "M": 2}
    assert g["people"]["by_age"] == {"0-14": 1, "60-79": 2, "80+": 1}
    assert g["tagged_groups"]["elderly_alone"]["people"] == 1 and g["tagged_groups"]["elderly_alone"]["label"] == "独居老人"
    assert {f["source"] for f in g["freshness"]} == {"住建局", "公安户籍"}
    d = http.get(f"/api/v1/areas/{T.D}/profile", headers=auth(a)).json()
    assert d["grids"] == 4 and d["buildings"] == 3 and d["households"] == 4 and d["people"]["total"] == 7
    assert d["people"]["by_residence"] == {"floating": 2, "registered": 5}
    assert d["businesses"] == {"total": 2, "by_category": {"零售": 1, "餐饮": 1}}
    w = make_user("grid_worker", T.NW)
    assert http.get(f"/api/v1/areas/{T.NW}/profile", headers=auth(w)).json()["workers"][0]["username"] == w["username"]
    assert http.get(f"/api/v1/areas/{T.NE}/profile", headers=auth(w)).status_code == 403
    assert http.get(f"/api/v1/areas/{T.NW}/profile", headers=auth(make_user("citizen"))).status_code == 403
    assert http.get(f"/api/v1/areas/{T.NW}/profile").status_code == 401
    assert http.get("/api/v1/areas/999999/profile", headers=auth(a)).status_code == 404


# --- listings and access -----------------------------------------------------------------------------
def test_grid_worker_sees_own_grid_unmasked_and_it_is_logged(city, http, auth, make_user, admin_token):
    w = make_user("grid_worker", T.NW)
    r = http.get(f"/api/v1/areas/{T.NW}/people", params={"purpose": "走访"}, headers=auth(w))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["view"] == "full" and body["total"] == 4
    assert {p["name"] for p in body["rows"]} == {"张三明", "李四", "王小花", "欧阳建国"}
    assert all(p["address_code"] and p["building_code"] and p["household_code"] for p in body["rows"])
    log = http.get("/api/v1/access-log", params={"username": w["username"]}, headers=auth(admin_token)).json()["rows"]
    assert log[0]["purpose"] == "走访" and log[0]["rows"] == 4 and log[0]["area_code"] == T.NW
    # denied: another grid, the community above, the access log itself
    assert http.get(f"/api/v1/areas/{T.NE}/people", headers=auth(w)).status_code == 403
    assert http.get(f"/api/v1/areas/{T.D}001001/people", headers=auth(w)).status_code == 403
    assert http.get("/api/v1/access-log", headers=auth(w)).status_code == 403


def test_operators_analysts_handlers_and_citizens(city, http, auth, make_user):
    op = make_user("community_operator", f"{T.D}001001")
    body = http.get(f"/api/v1/areas/{T.D}001001/people", headers=auth(op)).json()
    assert body["view"] == "full" and len(body["rows"]) == 6
    assert http.get(f"/api/v1/areas/{T.D}001002/people", headers=auth(op)).status_code == 403
    an = make_user("analyst")
    rows = http.get(f"/api/v1/areas/{T.D}/people", headers=auth(an)).json()["rows"]
    assert len(rows) == 7
    for p in rows:
        assert not {"name", "id_masked", "phone_masked", "person", "household_code"} & set(p)
        assert p["address_code"] is None or "S" not in p["address_code"]  # generalised to the building
    hd = make_user("dept_handler", T.D)
    rows = http.get(f"/api/v1/areas/{T.NW}/people", headers=auth(hd)).json()["rows"]
    assert {p["name"] for p in rows} == {"张*明", "李*", "王*花", "欧**国"}
    assert http.get(f"/api/v1/areas/{T.NW}/people", headers=auth(make_user("citizen"))).status_code == 403


def test_listings_paginate_and_filter(city, http, auth, admin_token):
    h = auth(admin_token)
    first = http.get(f"/api/v1/areas/{T.D}/people", params={"limit": 3}, headers=h).json()
    second = http.get(f"/api/v1/areas/{T.D}/people", params={"limit": 3, "cursor": first["next"]}, headers=h).json()
    third = http.get(f"/api/v1/areas/{T.D}/people", params={"limit": 3, "cursor": second["next"]}, headers=h).json()
    ids = [p["id"] for p in first["rows"] + second["rows"] + third["rows"]]
    assert len(ids) == 7 == len(set(ids)) and third["next"] is None
    f = http.get(f"/api/v1/areas/{T.D}/people", params={"residence": "floating"}, headers=h).json()["rows"]
    assert {p["name"] for p in f} == {"赵五", "钱六"}
    old = http.get(f"/api/v1/areas/{T.D}/people", params={"min_age": 70}, headers=h).json()["rows"]
    assert {p["name"] for p in old} == {"张三明", "李四", "欧阳建国"}
    t = http.get(f"/api/v1/areas/{T.D}/people", params={"tag": "left_behind_child"}, headers=h).json()["rows"]
    assert [p["name"] for p in t] == ["王小花"]
    b = http.get(f"/api/v1/areas/{T.D}/buildings", headers=h).json()["rows"]
    assert sorted(x["households"] for x in b) == [1, 1, 2]
    biz = http.get(f"/api/v1/areas/{T.SW}/businesses", headers=h).json()["rows"]
    assert [x["name"] for x in biz] == ["网格便利店"] and biz[0]["address_code"]
    r = http.get(f"/api/v1/areas/{T.D}/people", params={"at": "last week"}, headers=h)
    assert r.status_code == 422 and "YYYY-MM-DD" in r.json()["detail"]
    assert http.get(f"/api/v1/areas/{T.D}/pets", headers=h).status_code == 404


def test_tags_set_by_grid_worker_with_who_and_when(city, http, auth, make_user, engine):
    w = make_user("grid_worker", T.NW)
    li = _one(engine, "SELECT id FROM people WHERE name = '李四'").id
    r = http.post(f"/api/v1/people/{li}/tags", json={"tag": "disabled", "note": "二级"}, headers=auth(w))
    assert r.status_code == 201 and r.json()["by"] == w["username"]
    t = _one(engine, "SELECT set_by, set_at FROM person_tags WHERE person_id = :i AND tag = 'disabled'", i=li)
    assert t.set_by == w["username"] and t.set_at is not None
    prof = http.get(f"/api/v1/areas/{T.NW}/profile", headers=auth(w)).json()
    assert prof["tagged_groups"]["disabled"]["people"] == 1
    other = make_user("grid_worker", T.NE)
    assert http.post(f"/api/v1/people/{li}/tags", json={"tag": "disabled"}, headers=auth(other)).status_code == 403
    r = http.post(f"/api/v1/people/{li}/tags", json={"tag": "vip"}, headers=auth(w))
    assert r.status_code == 422 and "unknown tag" in r.json()["detail"]
    assert http.delete(f"/api/v1/people/{li}/tags/disabled", headers=auth(w)).status_code == 200
    assert "disabled" not in http.get(f"/api/v1/areas/{T.NW}/profile", headers=auth(w)).json()["tagged_groups"]


def test_access_log_is_append_only(city, engine):
    from sqlalchemy.exc import DBAPIError

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO bd_access_log (username, role, action, target) VALUES ('t', 'admin', 'x', 'y')"))
    for sql in ("UPDATE bd_access_log SET purpose = 'edited'", "DELETE FROM bd_access_log"):
        with pytest.raises(DBAPIError, match="append-only|6 months"):
            with engine.begin() as conn:
                conn.execute(text(sql))


def test_datasets_registry_marks_overdue(city, http, auth, make_user, admin_token, engine):
    a = make_user("analyst")
    ds = {d["name"]: d for d in http.get("/api/v1/datasets", headers=auth(a)).json()["datasets"]}
    assert {"buildings:住建局", "people:公安户籍", "households:公安户籍", "businesses:市场监管"} <= set(ds)
    p = ds["people:公安户籍"]
    assert p["provider"] == "公安户籍" and p["update_rule"] == "monthly" and p["overdue"] is False
    assert p["last_outcome"]["rejected"] == 2
    with engine.begin() as conn:
        conn.execute(text("UPDATE bd_datasets SET last_update = now() - interval '40 days' WHERE name = 'people:公安户籍'"))
    ds = {d["name"]: d for d in http.get("/api/v1/datasets", headers=auth(a)).json()["datasets"]}
    assert ds["people:公安户籍"]["overdue"] is True
    r = http.patch("/api/v1/datasets/people:公安户籍", json={"update_rule": "quarterly"}, headers=auth(admin_token))
    assert r.status_code == 200 and r.json()["overdue"] is False
    assert http.patch("/api/v1/datasets/people:公安户籍", json={"update_rule": "hourly"},
                      headers=auth(admin_token)).status_code == 422
    assert http.patch("/api/v1/datasets/people:公安户籍", json={"update_rule": "daily"}, headers=auth(a)).status_code == 403
    assert http.get("/api/v1/datasets", headers=auth(make_user("citizen"))).status_code == 403


# --- redraw ----------------------------------------------------------------------------------------
def test_relink_after_redraw_keeps_history(city, engine, http, auth, admin_token):
    """Move the west/east boundary of the north community to x = 113.405: the NW building and its
    people move to NE; ?at=<before> still lists them in NW."""
    h = auth(admin_token)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT now()")).scalar()
    before_nw = {p["name"] for p in http.get(f"/api/v1/areas/{T.NW}/people", headers=h).json()["rows"]}
    with engine.begin() as conn:
        conn.execute(text("UPDATE admin_areas SET valid_to = now() WHERE code LIKE :p AND level = 'grid' AND valid_to IS NULL"),
                     {"p": f"{T.D}001001%"})
        new = [a for a in T.areas(xm=113.405) if a["code"] in (T.NW, T.NE)]
        import shapely

        for a in new:
            conn.execute(text("INSERT INTO admin_areas (level, code, name, parent_code, geom, source) VALUES "
                              "('grid', :c, :n, :p, ST_Multi(ST_GeomFromText(:w, 4326)), 'redraw')"),
                         {"c": a["code"], "n": a["name"], "p": a["parent_code"], "w": shapely.to_wkt(a["geom"])})
        result = service.relink_all(conn)
    assert result["moved"][f"{T.NW}→{T.NE}"] >= 1 + 2 + 4  # building, households, people (+ houses)
    assert result["changed"]["person"] == 4 and result["changed"]["building"] == 1
    now_nw = http.get(f"/api/v1/areas/{T.NW}/people", headers=h).json()["rows"]
    assert now_nw == []
    then = http.get(f"/api/v1/areas/{T.NW}/people", params={"at": before.isoformat()}, headers=h).json()
    assert {p["name"] for p in then["rows"]} == before_nw
    assert all(p["grid_code"] == T.NW for p in then["rows"])
    ne_then = http.get(f"/api/v1/areas/{T.NE}/people", params={"at": before.isoformat()}, headers=h).json()
    assert not before_nw & {p["name"] for p in ne_then["rows"]}
    prof = http.get(f"/api/v1/areas/{T.NE}/profile", headers=h).json()
    assert prof["people"]["total"] == 6
    assert http.get(f"/api/v1/areas/{T.NW}/profile", headers=h).json()["people"]["total"] == 0
    assert _one(engine, "SELECT count(*) FROM bd_grid_changes WHERE kind = 'person' AND old_grid = :o AND new_grid = :n",
                o=T.NW, n=T.NE)[0] == 4


# --- large imports as resumable background jobs ------------------------------------------------------
def _people_file(path, n, start):
    rows = [[T.pid(start + i, "MF"[i % 2], 1960 + i % 40), f"测试{i}", "", "男女"[i % 2], "H004", "", "户籍", ""]
            for i in range(n)]
    return T.write_csv(path, ["身份证号", "姓名", "联系电话", "性别", "户号", "地址", "人口类型", "重点人群"], rows)


def test_interrupted_import_resumes_as_a_job(city, engine, http, auth, admin_token, tmp_path):
    from gridserver import jobs as J
    from gridserver.jobs.worker import import_task_modules, run_one

    f = _people_file(tmp_path / "big.csv", 30, 1000)

    class Crash(Exception):
        pass

    def crash_after_first_chunk(done, total):
        raise Crash()

    with pytest.raises(Crash):
        import_file(engine, f, kind="people", source="人口普查", chunk_rows=10, progress=crash_after_first_chunk)
    st = _one(engine, "SELECT status, rows_done FROM bd_imports WHERE source = '人口普查'")
    assert (st.status, st.rows_done) == ("running", 10)
    assert _one(engine, "SELECT count(*) FROM people WHERE source = '人口普查'")[0] == 10
    import_task_modules()
    jid = J.enqueue("blockdata.import", {"path": str(f), "kind": "people", "source": "人口普查", "chunk_rows": 10},
                    created_by="cli")
    assert run_one(engine, only=jid) == jid
    job = http.get(f"/api/v1/jobs/{jid}", headers=auth(admin_token)).json()
    assert job["state"] == "done" and (job["done"], job["total"]) == (30, 30)
    assert job["result"]["resumed_at_row"] == 10 and job["result"]["inserted"] == 30
    assert _one(engine, "SELECT count(*) FROM people WHERE source = '人口普查'")[0] == 30
    assert _one(engine, "SELECT count(*) FROM people WHERE source = '人口普查' AND grid_code = :g", g=T.SW)[0] == 30


def test_cli_background_import_shows_progress(city, engine, tmp_path):
    from gridserver.cli import app

    f = _people_file(tmp_path / "bg.csv", 12, 2000)
    res = CliRunner().invoke(app, ["import", "people", str(f), "--source", "社区登记", "--background"])
    assert res.exit_code == 0, res.output
    assert "job" in res.output and "inserted" in res.output
    assert _one(engine, "SELECT count(*) FROM people WHERE source = '社区登记'")[0] == 12
    (jid,) = _one(engine, "SELECT max(id) FROM jobs WHERE task = 'blockdata.import'")
    assert _one(engine, "SELECT state FROM jobs WHERE id = :i", i=jid).state == "done"


def test_review_queue_lists_rows_with_reasons(city, http, auth, admin_token, make_user):
    imp = city["reports"]["people"]["import_id"]
    rows = http.get("/api/v1/blockdata/review", params={"import_id": imp}, headers=auth(admin_token)).json()["rows"]
    got = {(r["row_no"], r["column_name"], r["status"]) for r in rows}
    assert got == {(9, "id_number", "rejected"), (10, "phone", "rejected"), (11, "address", "review")}
    assert all(r["reason"] for r in rows)
    assert all("*" in r["data"]["id_number"] for r in rows)  # masked even here
    w = make_user("grid_worker", T.NW)
    assert http.get("/api/v1/blockdata/review", headers=auth(w)).status_code == 403


def test_geoparquet_buildings_with_footprints(city, engine, tmp_path):
    """GeoParquet: footprints from the geometry column (in GCJ-02 here, converted), codes from a column."""
    import geopandas as gpd
    from shapely.geometry import box

    from gridserver.geo.crs import wgs84_to_gcj02

    x0, y0 = wgs84_to_gcj02(113.430, 23.205)
    x1, y1 = wgs84_to_gcj02(113.431, 23.206)
    gdf = gpd.GeoDataFrame({"建筑编码": ["X440177SE0001"], "层数": ["4"], "用途": ["仓储"]},
                           geometry=[box(float(x0), float(y0), float(x1), float(y1))], crs=4326)
    f = tmp_path / "b.parquet"
    gdf.to_parquet(f)
    r = import_file(engine, f, kind="buildings", source="测绘院", crs="gcj02")
    assert (r["inserted"], r["rejected"]) == (1, 0), r
    b = _one(engine, "SELECT grid_code, floors, ST_XMin(geom) AS x FROM buildings WHERE building_code = 'X440177SE0001'")
    assert b.grid_code == T.SE and b.floors == 4 and abs(b.x - 113.430) < 1e-5
