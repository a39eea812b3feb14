"""Departmental-style variants of real addresses of the test base, with known truth, through the geocoder
(real HTTP) and the import matcher: no wrong answers of any kind, and the easy variants are found.

The variants and the scoring are those of ``bench/address_match.py`` (which runs them on the full
Yuexiu demo base and prints precision/recall per variant kind).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from address_data import address_base  # noqa: F401  (fixture)

_spec = importlib.util.spec_from_file_location("bench_address_match",
                                               Path(__file__).resolve().parents[2] / "bench" / "address_match.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # (its dataclasses look their module up there)
_spec.loader.exec_module(bench)

#: Variant kinds that must be found exactly almost always (the rest may go to review / coarser).
EASY = ("standard", "hao_traditional", "no_district", "bare_admin", "building_alias", "floor_room", "zhi_number")


@pytest.fixture(scope="module")
def variants(engine, address_base):
    vs = bench.make_variants(address_base["base"], n_addresses=120, seed=11)
    # other tests may have added addresses to the shared test base since: a "not in the base" truth
    # must still be true
    with engine.connect() as conn:
        present = set(conn.execute(text("SELECT match_key FROM std_addresses WHERE match_key = ANY(:k) "
                                        "AND status <> 'retired'"),
                                   {"k": [v.truth for v in vs if not v.in_base]}).scalars())
    return [v for v in vs if v.in_base or v.truth not in present]


def test_variants_cover_every_kind(variants):
    kinds = {v.kind for v in variants}
    assert {"standard", "hao_traditional", "no_district", "bare_admin", "building_alias", "floor_room",
            "near_number", "typo_char", "missing_char", "gcj02_point", "gcj02_as_wgs84"} <= kinds, kinds


def test_import_matcher_never_merges_two_different_addresses(engine, variants):
    with engine.begin() as conn:
        results = bench.run_import(conn, variants)
    scores = bench.score_import(results)
    wrong = [(v.kind, v.text, key, v.truth) for v, status, key in results
             if status == "matched" and (key != v.truth or not v.in_base)]
    assert not wrong, wrong
    assert scores["all"]["precision"] >= 0.995
    for kind in EASY:
        if kind in scores:
            assert scores[kind]["recall"] >= 0.95, (kind, scores[kind])
    # a house number the base does not have is a new address (or review), never another house
    assert scores["near_number"]["recall"] == 1.0, scores["near_number"]


def test_geocode_api_gives_no_wrong_answers(http, engine, variants, admin_token, auth):
    """Through GET /api/v1/address/geocode: each answer is the address, one of its ancestors, or none."""
    sample = [v for v in variants if v.kind not in bench.POINT_KINDS]
    # every kind, capped per kind to keep the test short
    seen: dict[str, int] = {}
    picked = []
    for v in sample:
        if seen.get(v.kind, 0) < 15:
            seen[v.kind] = seen.get(v.kind, 0) + 1
            picked.append(v)
    headers = auth(admin_token)
    codes = []
    for v in picked:
        res = http.get("/api/v1/address/geocode", params={"q": v.text}, headers=headers)
        assert res.status_code in (200, 404), (v.text, res.status_code, res.text)
        codes.append(res.json()["code"] if res.status_code == 200 else None)
    with engine.connect() as conn:
        key_of = dict(conn.execute(text("SELECT code, match_key FROM std_addresses WHERE code = ANY(:c)"),
                                   {"c": [c for c in codes if c]}).all())
    answers = [(v, key_of.get(c) if c else None) for v, c in zip(picked, codes)]
    scores = bench.score_geocode(answers)
    wrong = [(v.kind, v.text, key, v.truth) for v, key in answers
             if key is not None and key != v.truth and key not in bench._ancestors(v.truth)]
    assert not wrong, wrong
    for kind in EASY:
        if kind in scores:
            assert scores[kind]["recall"] >= 0.95, (kind, scores[kind])


def test_geocode_says_ambiguous_for_a_road_missing_a_character(http, engine, address_base, admin_token, auth):
    """中山路 (no such road) fits 中山四路 and 中山五路 alike: 404 ambiguous_address with the candidate
    roads (public names only), not a guess. Built from the base: two roads that differ only in their
    third character and share a house number."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            """SELECT a.road, b.road AS other, a.house_no FROM std_addresses a
               JOIN std_addresses b ON b.level = 'house' AND b.house_no = a.house_no AND a.road < b.road
                    AND length(a.road) = 4 AND length(b.road) = 4 AND left(a.road, 2) = left(b.road, 2)
                    AND right(a.road, 1) = right(b.road, 1) AND b.status <> 'retired'
               WHERE a.level = 'house' AND a.status <> 'retired' ORDER BY 1, 2, 3 LIMIT 20""")).all()
        roads = set(conn.execute(text("SELECT road FROM std_addresses WHERE level = 'road'")).scalars())
    pairs = [(a, b, h) for a, b, h in rows if a[:2] + a[3] not in roads]
    if not pairs:
        pytest.skip("the test base has no two roads that differ only in their third character")
    road, other, house_no = pairs[0]
    res = http.get("/api/v1/address/geocode", params={"q": f"越秀区{road[:2]}{road[3]}{house_no}号"},
                   headers=auth(admin_token))
    body = res.json()
    assert res.status_code == 404 and body["code"] == "ambiguous_address", body
    assert {road, other} <= {a["road"] for a in body["alternatives"]}
    assert all(set(a) == {"road"} for a in body["alternatives"])


def test_ambiguity_rules():
    """The two situations the geocoder refuses to guess in, and one it answers."""
    from gridserver.address.geocode import _refuse_if_ambiguous
    from gridserver.address.keys import AddressParts, RoadGazetteer
    from gridserver.address.matcher import Match, one_char_longer
    from gridserver.errors import NotFound

    fuzzy = Match(idx=0, parts=AddressParts(road="中山四路", house_no="68", road_how="fuzzy"),
                  alternatives=[("中山四路", 86.0), ("中山五路", 86.0), ("中山大道", 60.0)])
    with pytest.raises(NotFound) as exc:
        _refuse_if_ambiguous("中山路68号", fuzzy)
    assert exc.value.code == "ambiguous_address"
    assert [a["road"] for a in exc.value.extra["alternatives"]] == ["中山四路", "中山五路"]
    clear = Match(idx=0, parts=AddressParts(road="梅东路", house_no="2", road_how="fuzzy"),
                  alternatives=[("梅东路", 80.0), ("梅花路", 60.0)])
    _refuse_if_ambiguous("梅冬路2号", clear)  # one road clearly closest: no refusal
    near = Match(idx=0, parts=AddressParts(road="麓湖路", house_no="12", road_how="exact"), near=[("麓湖横路", 5)])
    with pytest.raises(NotFound):
        _refuse_if_ambiguous("麓湖路12号1栋1单元301室", near)
    gaz = RoadGazetteer(["麓湖路", "麓湖横路", "中山四路", "中山五路", "湖路"])
    assert one_char_longer(gaz, "麓湖路") == ["麓湖横路"]
    assert sorted(one_char_longer(gaz, "中山路")) == ["中山五路", "中山四路"]
    assert one_char_longer(gaz, "湖路") == ["麓湖路"]


def test_normalise_zhi_numbers_and_bare_area_names():
    from gridserver.address.matcher import AreaNames
    from gridserver.address.keys import AddressParts
    from gridserver.address.normalize import normalize_address

    assert normalize_address("中山四路13号之一") == "中山四路13-1号"
    assert normalize_address("中山四路13之1号") == normalize_address("中山四路13-1号") == "中山四路13-1号"
    assert normalize_address("中山四路13号之1栋") == "中山四路13号之1栋"  # not a sub-number: left alone
    areas = AreaNames.__new__(AreaNames)
    areas.districts, areas.cities, areas.any_area = {"越秀"}, {"广州"}, True
    assert areas.outside(AddressParts(road="寺右二马路", upper={"city": "广州", "district": "越秀寺右二马路"})) is None
    assert areas.outside(AddressParts(road="深南大道", upper={"city": "深圳", "district": "福田区"}))
