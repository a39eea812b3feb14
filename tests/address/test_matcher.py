"""Matching quality on generated departmental tables with known truth, and the matcher's stages."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from address_data import SEED, address_base  # noqa: F401  (fixture)
from gridserver.address.demo_data import DEPARTMENTS, score_matching, write_department_table
from gridserver.address.importer import import_file
from gridserver.address.matcher import RowIn, match_rows


@pytest.mark.parametrize("source", list(DEPARTMENTS))
def test_precision_and_recall_on_a_departmental_table(engine, address_base, source):
    path, truth, mapping = write_department_table(address_base["base"], source, address_base["dir"], 1500, SEED)
    s = import_file(engine, path, source=source, mapping=mapping, rejected=address_base["dir"] / f"{source}.rej.csv")
    assert s.rows == 1500 and s.matched + s.new + s.review + s.rejected == 1500
    with engine.connect() as conn:
        score = score_matching(conn, source, truth)
    print(f"\n{source}: precision {score['precision']:.4f} recall {score['recall']:.4f} "
          f"(tp {score['true_positives']}, fp {score['false_positives']}, positives {score['positives']}; "
          f"new detected {score['new_detected']}/{score['new_total']}; parser {s.parser}; {dict(s.methods)})")
    assert score["precision"] >= 0.98
    assert score["recall"] >= 0.95


def _one(engine, q, lon=None, lat=None):
    with engine.begin() as conn:
        return match_rows(conn, [RowIn(0, q, lon, lat)])[0]


def _some_room(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT id, road, house_no, building, unit, room, ST_X(geom) x, ST_Y(geom) y "
                                 "FROM std_addresses WHERE level = 'room' AND unit <> '' AND source = '测试标准地址库' "
                                 "AND building ~ '^[0-9]+$' ORDER BY code LIMIT 1")).first()


def test_exact_after_normalisation(engine, address_base):
    r = _some_room(engine)
    cn = "一二三四五六七八九"
    q = f"廣州市越秀區{r.road}{int(r.house_no) if '-' not in r.house_no else r.house_no}號" \
        f"{cn[int(r.building) - 1]}棟{chr(ord(r.unit) + 0xFEE0)}單元{r.room}房"
    m = _one(engine, q)
    assert (m.status, m.method, m.address_id, m.score) == ("matched", "exact", r.id, 100.0)


def test_missing_unit_is_matched_when_unambiguous_else_reviewed(engine, address_base):
    r = _some_room(engine)
    with engine.connect() as conn:
        others = conn.execute(text("SELECT count(*) FROM std_addresses WHERE road = :r AND house_no = :h AND "
                                   "building = :b AND room = :m AND level = 'room'"),
                              {"r": r.road, "h": r.house_no, "b": r.building, "m": r.room}).scalar()
    m = _one(engine, f"{r.road}{r.house_no}号{r.building}栋{r.room}室")
    if others == 1:
        assert (m.status, m.method, m.address_id) == ("matched", "compatible", r.id)
    else:
        assert m.status == "review" and m.reason.startswith("ambiguous")


def test_unknown_house_on_known_road_is_new(engine, address_base):
    r = _some_room(engine)
    m = _one(engine, f"{r.road}9999号")
    assert m.status == "new" and m.key == f"{r.road}|9999||||"


def test_garbage_and_other_districts_are_rejected(engine, address_base):
    assert _one(engine, "不详").status == "rejected"
    m = _one(engine, "广州市天河区天河路385号")
    assert m.status == "rejected" and "outside the district" in m.reason


def test_misspelt_road_is_resolved_by_the_house_that_exists(engine, address_base):
    r = _some_room(engine)
    from gridserver.address.demo_data import _TYPO

    i = next((i for i, c in enumerate(r.road[:-1]) if c in _TYPO), None)
    if i is None:
        pytest.skip("no typo-able character in this road name")
    typo = r.road[:i] + _TYPO[r.road[i]] + r.road[i + 1:]
    m = _one(engine, f"{typo}{r.house_no}号{r.building}栋{r.unit}单元{r.room}室")
    assert m.parts.road_how == "fuzzy"
    assert m.status in ("matched", "review")
    if m.status == "matched":
        assert m.address_id == r.id and m.score < 100


def test_spatial_match_without_a_road(engine, address_base):
    r = _some_room(engine)
    with engine.connect() as conn:
        b = conn.execute(text("SELECT id, ST_X(geom) x, ST_Y(geom) y FROM std_addresses WHERE road = :r AND "
                              "house_no = :h AND building = :b AND level = 'building'"),
                         {"r": r.road, "h": r.house_no, "b": r.building}).first()
    m = _one(engine, f"某某小区{r.building}栋", lon=b.x + 0.00005, lat=b.y)
    assert m.status in ("matched", "review")
    if m.status == "matched":
        assert m.method == "spatial" and m.address_id == b.id


def test_demo_build_ingests_three_tables_through_matcher_and_review(engine, address_base, tmp_path):
    from gridserver.address.demo_data import build_demo_address_base
    from address_data import TEST_BBOX

    with engine.connect() as conn:
        n_before = conn.execute(text("SELECT count(*) FROM std_addresses WHERE source = '测试标准地址库'")).scalar()
    report = build_demo_address_base(engine, SEED, tmp_path, rows_per_table=2500, bbox=TEST_BBOX,
                                     base_source="测试标准地址库", max_houses_per_side=8)
    assert len(report["imports"]) == 3 and {i["source"] for i in report["imports"]} == set(DEPARTMENTS)
    assert report["standard_addresses"] >= n_before  # same seed: the base is reused, not duplicated
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM std_addresses WHERE source = '测试标准地址库'")).scalar() == n_before
    for s in report["scores"]:
        print(f"\ndemo {s['source']}: precision {s['precision']:.4f} recall {s['recall']:.4f}")
        assert s["precision"] >= 0.98 and s["recall"] >= 0.95
    assert report["auto_review"]["approved"] > 0
    assert report["queue_left"] > 0  # some decisions are left to people


def test_floor_level_addresses_are_in_the_base_and_matched(engine, address_base):
    """Some demo buildings are addressed by whole floor (B座3层): such rows exist and match their floor."""
    with engine.connect() as conn:
        r = conn.execute(text("SELECT id, road, house_no, building, floor FROM std_addresses WHERE level = 'floor' "
                              "AND source = '测试标准地址库' AND house_no ~ '^[0-9]+$' ORDER BY code LIMIT 1")).first()
    assert r is not None, "the demo base has no floor-level addresses"
    for q in (f"越秀区{r.road}{r.house_no}号{r.building}栋{r.floor}层", f"{r.road}{r.house_no}号{r.building}座{r.floor}楼"):
        m = _one(engine, q)
        assert (m.status, m.address_id) == ("matched", r.id), q


def test_area_names_come_from_the_base(engine, address_base):
    """The districts of the base and their city (from the district codes), without suffixes."""
    from gridserver.address.matcher import AreaNames

    with engine.connect() as conn:
        areas = AreaNames(conn)
    assert "越秀" in areas.districts and areas.cities == {"广州"}


def test_city_read_as_district_is_not_another_district():
    """广州越秀… written without suffixes: the tagger may read 广州 as the district. That names our city,
    not a district elsewhere; a real other district is still told apart."""
    from gridserver.address.keys import AddressParts
    from gridserver.address.matcher import AreaNames

    areas = AreaNames.__new__(AreaNames)  # the names the database would give, without one
    areas.districts, areas.cities, areas.any_area = {"越秀"}, {"广州"}, True
    assert areas.outside(AddressParts(road="福恩里", upper={"district": "广州"})) is None
    assert areas.outside(AddressParts(road="福恩里", upper={"district": "越秀区"})) is None
    assert "天河区" in areas.outside(AddressParts(road="福恩里", upper={"district": "天河区"}))
    assert "深圳" in areas.outside(AddressParts(road="福恩里", upper={"city": "深圳市"}))
