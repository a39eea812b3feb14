"""The demo block-data generator at tiny scale on the small test city with generated roads."""

from __future__ import annotations

import json
import re
from datetime import date

import geopandas as gpd
import numpy as np
import pytest
import shapely
from sqlalchemy import text

from gridserver.blockdata import service
from gridserver.blockdata.codes import validate_credit_code
from gridserver.demo.blockdata import SCALES, build_demo_blockdata

TODAY = date.today()  # one day for every build of this module (dates count back from it)


@pytest.fixture(scope="module")
def demo(engine, small_city):
    from gridserver.demo.synthetic import synthetic_roads

    grids = [a for a in small_city.values() if a["level"] == "grid"]
    district = small_city["440104"]["geom"]
    city = {
        "district": gpd.GeoDataFrame({"code": ["440104"]}, geometry=[district], crs=4326),
        "grid": gpd.GeoDataFrame({"code": [g["code"] for g in grids]}, geometry=[g["geom"] for g in grids], crs=4326),
        "roads": synthetic_roads(np.random.default_rng(1), district, 600, 200),
    }
    summary = build_demo_blockdata(engine, city, scale="tiny", seed=3, today=TODAY)
    yield {"summary": summary, "city": city}
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE person_tags, people, households, houses, businesses, buildings, bd_grid_changes, bd_rollup, "
                          "bd_raw_rows"))
        conn.execute(text("DELETE FROM bd_imports WHERE actor = 'demo'"))
        conn.execute(text("DELETE FROM bd_datasets"))


def _q(engine, sql, **p):
    with engine.connect() as conn:
        return conn.execute(text(sql), p).all()


def test_counts_match_the_scale_and_everything_has_a_grid(demo, engine):
    s, want = demo["summary"], SCALES["tiny"]
    assert abs(s["buildings"] - want["buildings"]) <= want["buildings"] * 0.05
    assert s["people"] == want["people"] and s["businesses"] == want["businesses"]
    for t in ("buildings", "houses", "households", "people", "businesses"):
        (n_null,), = _q(engine, f"SELECT count(*) FROM {t} WHERE grid_code IS NULL OR address_code IS NULL")
        assert n_null == 0, t
    (n,), = _q(engine, "SELECT count(*) FROM people p LEFT JOIN households h USING (household_code) WHERE h.id IS NULL")
    assert n == 0


def test_footprints_avoid_roads_and_each_other_and_have_real_addresses(demo, engine):
    rows = _q(engine, "SELECT ST_AsBinary(geom) AS g, address_code FROM buildings")
    fps = shapely.from_wkb([bytes(r.g) for r in rows])
    roads = demo["city"]["roads"].geometry.values
    assert not shapely.STRtree(fps).query(roads, predicate="intersects").size  # roads stay free
    tree = shapely.STRtree(fps)
    a, b = tree.query(fps, predicate="overlaps")
    assert a.size == 0
    names = set(demo["city"]["roads"]["name"])
    addr = _q(engine, "SELECT s.road, s.level FROM buildings b JOIN std_addresses s ON s.code = b.address_code")
    assert {r.level for r in addr} == {"house"} and {r.road for r in addr} <= names


def test_grid_rule_equals_the_service_rule(demo, engine):
    with engine.begin() as conn:
        r = service.link_grids(conn, reason="check")
        assert sum(r["changed"].values()) == 0, r["moves"]
        conn.rollback()


def test_codes_are_valid_and_profiles_add_up(demo, engine):
    for (c,) in _q(engine, "SELECT credit_code FROM businesses"):
        validate_credit_code(c)
    (people,), = _q(engine, "SELECT sum(value) FROM bd_rollup WHERE metric = 'people'")
    assert people == demo["summary"]["people"]
    with engine.connect() as conn:
        p = service.profile(conn, "440104")
    assert p["people"]["total"] == demo["summary"]["people"]
    assert sum(p["people"]["by_age"].values()) == p["people"]["total"]
    assert p["tagged_groups"]["elderly_alone"]["people"] > 0


_RAW_OF = {  # table → (raw row kind, the raw row field naming the record, the record's key)
    "buildings": ("buildings", "building_code", "building_code"), "houses": ("households", "address", None),
    "households": ("households", "household_code", "household_code"), "people": ("people", "id_hash", "id_hash"),
    "businesses": ("businesses", "credit_code", "credit_code")}


def test_every_record_links_to_a_raw_row_of_its_kind_and_department(demo, engine):
    s = demo["summary"]
    want = {"buildings": s["buildings"], "houses": s["households"], "households": s["households"], "people": s["people"],
            "businesses": s["businesses"]}
    demo_runs = "(SELECT id FROM bd_imports WHERE actor = 'demo' AND status = 'done')"
    for table, (kind, field, key) in _RAW_OF.items():
        (linked,), = _q(engine, f"SELECT count(*) FROM {table} r JOIN bd_raw_rows w ON w.id = r.raw_row_id "
                                f"JOIN bd_imports i ON i.id = w.import_id WHERE i.id IN {demo_runs} AND w.kind = :k "
                                f"AND i.kind = w.kind AND w.source = r.source AND i.source = w.source"
                                + (f" AND w.data->>'{field}' = r.{key}" if key else ""), k=kind)
        assert linked == want[table], table
    # one import run per dataset, each of its raw rows used by a record (houses share their household's)
    runs = _q(engine, "SELECT kind, source, rows_total, rows_done FROM bd_imports WHERE actor = 'demo' ORDER BY kind")
    assert [(r.kind, r.source) for r in runs] == [("buildings", "住建局"), ("businesses", "市场监管"),
                                                  ("households", "公安户籍"), ("people", "公安户籍")]
    assert {r.kind: r.rows_done for r in runs} == {k: want[k] for k in ("buildings", "businesses", "households", "people")}
    (orphans,), = _q(engine, f"SELECT count(*) FROM bd_raw_rows w WHERE w.import_id IN {demo_runs} AND NOT EXISTS "
                             "(SELECT 1 FROM people p WHERE p.raw_row_id = w.id) AND NOT EXISTS (SELECT 1 FROM households h "
                             "WHERE h.raw_row_id = w.id) AND NOT EXISTS (SELECT 1 FROM buildings b WHERE b.raw_row_id = w.id) "
                             "AND NOT EXISTS (SELECT 1 FROM businesses z WHERE z.raw_row_id = w.id)")
    assert orphans == 0


def test_raw_rows_hold_no_clear_id_or_phone_number(demo, engine):
    rows = _q(engine, "SELECT w.data, p.id_masked, p.phone_masked, p.name FROM people p JOIN bd_raw_rows w ON w.id = p.raw_row_id "
                      "JOIN bd_imports i ON i.id = w.import_id WHERE i.actor = 'demo'")
    assert len(rows) == demo["summary"]["people"]
    with_phone = 0
    for data, id_masked, phone_masked, name in rows:
        # the importer's rule: ID number and phone only masked, as in the table
        assert data["id_number"] == id_masked and re.fullmatch(r"\d{4}\*{10}[\dX]{4}", data["id_number"])
        assert data["phone"] == (phone_masked or "")
        with_phone += bool(phone_masked)
        assert data["name"] == name and data["sex"] in ("男", "女") and data["residence"] in ("户籍", "流动")
        # nothing else in the row is a long digit run (an ID number has 17, a mobile 11)
        rest = {k: v for k, v in data.items() if k not in ("id_hash", "household_code")}
        assert not re.search(r"\d{11}", json.dumps(rest, ensure_ascii=False)), data
    assert with_phone > len(rows) / 2


def test_confirmation_dates_are_spread_and_some_datasets_are_overdue(demo, engine):
    from gridserver.blockdata.datasets import list_datasets

    runs = {r.kind: r for r in _q(engine, "SELECT id, kind, finished_at FROM bd_imports WHERE actor = 'demo'")}
    for table in ("buildings", "households", "people", "businesses"):
        (days, last), = _q(engine, f"SELECT count(DISTINCT r.confirmed_at::date), max(r.confirmed_at) FROM {table} r "
                                   "JOIN bd_raw_rows w ON w.id = r.raw_row_id WHERE w.import_id = :i", i=runs[table].id)
        assert days > 5 and last <= runs[table].finished_at, table
    with engine.connect() as conn:
        reg = {d["kind"]: d for d in list_datasets(conn) if d["last_import_id"] in {r.id for r in runs.values()}}
    assert set(reg) == {"buildings", "households", "people", "businesses"}
    assert {d["overdue"] for d in reg.values()} == {True, False}
    assert all(d["last_update"] == runs[k].finished_at.isoformat() for k, d in reg.items())


def test_rollups_equal_a_recount(demo, engine):
    recount = """
        SELECT grid_code, 'people' AS m, count(*) AS n, max(confirmed_at) AS last FROM people GROUP BY 1
        UNION ALL SELECT grid_code, 'households', count(*), max(confirmed_at) FROM households GROUP BY 1
        UNION ALL SELECT grid_code, 'houses', count(*), max(confirmed_at) FROM houses GROUP BY 1
        UNION ALL SELECT grid_code, 'buildings', count(*), max(confirmed_at) FROM buildings GROUP BY 1
        UNION ALL SELECT grid_code, 'businesses', count(*), max(confirmed_at) FROM businesses GROUP BY 1
        UNION ALL SELECT grid_code, 'source.person.' || source, count(*), max(confirmed_at) FROM people GROUP BY 1, 2
        UNION ALL SELECT p.grid_code, 'tag.' || t.tag, count(*), max(t.set_at) FROM person_tags t
            JOIN people p ON p.id = t.person_id WHERE t.removed_at IS NULL GROUP BY 1, 2"""
    want = set(_q(engine, recount))
    got = set(_q(engine, "SELECT grid_code, metric, value, last_at FROM bd_rollup WHERE metric IN "
                         "('people', 'households', 'houses', 'buildings', 'businesses') OR metric LIKE 'source.person.%' "
                         "OR metric LIKE 'tag.%'"))
    assert got == want and len(want) > 20


_SCHEMA = """SELECT (SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes WHERE tablename = ANY(:t)),
                    (SELECT string_agg(conname || pg_get_constraintdef(oid) || convalidated, ';' ORDER BY conname)
                     FROM pg_constraint WHERE conrelid::regclass::text = ANY(:t))"""


def test_a_build_killed_mid_load_is_repaired_by_the_next_one(demo, engine):
    """The indexes and constraints the load sets aside are journalled with the drop: a build killed
    before it restored them leaves the journal, and the next build puts them back first."""
    from gridserver.demo import bulkload
    from gridserver.demo.blockdata import _LOADED

    schema = _q(engine, _SCHEMA, t=_LOADED)[0]
    with engine.begin() as conn:   # what a build killed right after setting aside leaves behind
        i = conn.execute(text("INSERT INTO bd_imports (kind, source, file_name, file_hash, actor) "
                              "VALUES ('people', '公安户籍', 'killed.csv', '', 'demo') RETURNING id")).scalar()
        assert bulkload.set_aside(conn, _LOADED, "bd_imports", i) > 10
    assert _q(engine, _SCHEMA, t=_LOADED)[0] != schema
    with engine.connect() as conn:
        assert [j for j, _ in bulkload.pending(conn, "bd_imports")] == [i]
    build_demo_blockdata(engine, demo["city"], scale="tiny", seed=3, today=TODAY)
    assert _q(engine, _SCHEMA, t=_LOADED)[0] == schema
    with engine.connect() as conn:
        assert bulkload.pending(conn, "bd_imports") == []
    (n,), = _q(engine, "SELECT count(*) FROM people WHERE raw_row_id IS NOT NULL")
    assert n == demo["summary"]["people"]


def test_rebuild_is_deterministic_and_reuses_addresses(demo, engine):
    before = _q(engine, "SELECT count(*) FROM std_addresses")[0][0]
    ids = sorted(r[0] for r in _q(engine, "SELECT id_hash FROM people"))
    raw = sorted(_q(engine, "SELECT kind, row_hash FROM bd_raw_rows"))
    confirmed = sorted(_q(engine, "SELECT id_hash, confirmed_at FROM people"))
    build_demo_blockdata(engine, demo["city"], scale="tiny", seed=3, today=TODAY)
    assert _q(engine, "SELECT count(*) FROM std_addresses")[0][0] == before
    assert sorted(r[0] for r in _q(engine, "SELECT id_hash FROM people")) == ids
    assert sorted(_q(engine, "SELECT kind, row_hash FROM bd_raw_rows")) == raw
    assert sorted(_q(engine, "SELECT id_hash, confirmed_at FROM people")) == confirmed


def test_demo_command_refuses_an_unknown_scale():
    from typer.testing import CliRunner

    from gridserver.cli import app

    res = CliRunner().invoke(app, ["demo", "--scale", "huge"])
    assert res.exit_code == 2 and "--scale must be full, small, tiny or none" in res.output
