"""The demo block-data generator at tiny scale on the small test city with generated roads."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from sqlalchemy import text

from gridserver.blockdata import service
from gridserver.blockdata.codes import validate_credit_code
from gridserver.demo.blockdata import SCALES, build_demo_blockdata


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
    summary = build_demo_blockdata(engine, city, scale="tiny", seed=3)
    yield {"summary": summary, "city": city}
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE person_tags, people, households, houses, businesses, buildings, bd_grid_changes, bd_rollup"))
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


def test_rebuild_is_deterministic_and_reuses_addresses(demo, engine):
    before = _q(engine, "SELECT count(*) FROM std_addresses")[0][0]
    ids = sorted(r[0] for r in _q(engine, "SELECT id_hash FROM people"))
    build_demo_blockdata(engine, demo["city"], scale="tiny", seed=3)
    assert _q(engine, "SELECT count(*) FROM std_addresses")[0][0] == before
    assert sorted(r[0] for r in _q(engine, "SELECT id_hash FROM people")) == ids


def test_demo_command_refuses_an_unknown_scale():
    from typer.testing import CliRunner

    from gridserver.cli import app

    res = CliRunner().invoke(app, ["demo", "--scale", "huge"])
    assert res.exit_code == 2 and "--scale must be full, small, tiny or none" in res.output
