"""Texts that fit two addresses of the base: no auto-match, no geocoder guess (issue 14, "Real-world matching").

Each case adds its own roads inside a transaction that is rolled back, so the shared test base is
left as it was:

* a text that names an existing address exactly while the road one character longer has the very
  same numbers (文德路3号A栋1层 / 文德东路3号A栋1层): review for the matcher (unless the row's point
  lies at the matched address), 404 ``ambiguous_address`` for the geocoder;
* a known road followed by words before the numbers (北京路商步行街14号…, a misspelt 北京路商业步行街):
  the geocoder does not answer the known road, whose name may be only the start of the real one;
* a road the tagger cut short (广州地 | 一达道): the whole span before the numbers is corrected too.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from address_data import address_base  # noqa: F401  (fixture)
from gridserver.address.base import NewAddress, bulk_create, set_actor
from gridserver.address.geocode import geocode
from gridserver.address.matcher import RowIn, match_rows
from gridserver.errors import NotFound

# two points ~400 m apart inside the test city
P_SHORT = (113.2662, 23.1376)
P_LONG = (113.2700, 23.1350)


@pytest.fixture
def conn(engine, address_base):
    with engine.connect() as c:
        tx = c.begin()
        try:
            yield c
        finally:
            tx.rollback()


def _add(conn, roads_used: list[str], addresses: list[NewAddress]) -> dict[str, int]:
    known = set(conn.execute(text("SELECT road_key FROM std_addresses WHERE road_key = ANY(:r)"),
                             {"r": roads_used}).scalars())
    assert not known, f"the test base already has {known}: pick other road names"
    set_actor(conn, "test", "create", "test_match_ambiguous")
    return bulk_create(conn, addresses, default_district="440104")


def _twin_roads(conn) -> dict[str, int]:
    """芒果路 and 芒果东路 both with 3号A栋1层; only 芒果路 has 5号."""
    return _add(conn, ["芒果路", "芒果东路"], [
        NewAddress("芒果路", "3", "A", "", "1", "", *P_SHORT),
        NewAddress("芒果东路", "3", "A", "", "1", "", *P_LONG),
        NewAddress("芒果路", "5", "", "", "", "", *P_SHORT),
    ])


def _one(conn, q, lon=None, lat=None):
    return match_rows(conn, [RowIn(0, q, lon, lat)])[0]


def test_exact_text_whose_numbers_exist_on_a_road_one_character_longer_goes_to_review(conn):
    ids = _twin_roads(conn)
    m = _one(conn, "越秀区芒果路3号A栋1层")
    assert m.status == "review" and m.address_id is None, (m.status, m.method, m.reason)
    assert m.method == "near-road" and m.candidate_id == ids["芒果路|3|A||1|"]
    assert [r for r, _ in m.near] == ["芒果东路"]
    # the same numbers at house level are just as ambiguous
    assert _one(conn, "芒果路3号").status == "review"
    # the longer road, written in full, and a number only the shorter road has, are not ambiguous
    m = _one(conn, "越秀区芒果东路3号A栋1层")
    assert (m.status, m.address_id) == ("matched", ids["芒果东路|3|A||1|"])
    m = _one(conn, "越秀区芒果路5号")
    assert (m.status, m.address_id) == ("matched", ids["芒果路|5||||"])


def test_a_point_at_the_matched_address_confirms_it_a_point_elsewhere_does_not(conn):
    ids = _twin_roads(conn)
    far = _one(conn, "越秀区芒果路3号A栋1层", *P_LONG)      # the point is at 芒果东路3号: a dropped 东
    assert far.status == "review" and far.address_id is None, (far.status, far.method, far.reason)
    here = _one(conn, "越秀区芒果路3号A栋1层", P_SHORT[0] + 0.00005, P_SHORT[1])
    assert (here.status, here.address_id) == ("matched", ids["芒果路|3|A||1|"])


def test_geocoder_says_ambiguous_for_an_address_on_both_roads(conn):
    _twin_roads(conn)
    with pytest.raises(NotFound) as exc:
        geocode(conn, "越秀区芒果路3号A栋1层")
    assert exc.value.code == "ambiguous_address"
    assert {a["road"] for a in exc.value.extra["alternatives"]} == {"芒果路", "芒果东路"}
    assert geocode(conn, "越秀区芒果东路3号A栋1层")["full_text"].endswith("芒果东路3号A栋1层")
    assert geocode(conn, "越秀区芒果路5号")["precision"] == "house"


def test_geocoder_does_not_answer_a_known_road_followed_by_other_words(conn):
    _add(conn, ["菠萝路", "菠萝路商业步行街"], [
        NewAddress("菠萝路", "14", "", "", "", "", *P_SHORT),
        NewAddress("菠萝路商业步行街", "14", "2", "1", "", "502", *P_LONG),
    ])
    q = "越秀区菠萝路商步行街14号2栋1单元502室"
    try:
        g = geocode(conn, q)
    except NotFound:
        g = None
    # a part of 菠萝路 would be another address; the right one (or nothing) is fine
    assert g is None or g["full_text"].endswith("菠萝路商业步行街14号2栋1单元502室"), g
    # a number right after the road still falls back to the deepest known level
    g = geocode(conn, "越秀区菠萝路14号9栋")
    assert g["precision"] == "house" and g["full_text"].endswith("菠萝路14号")


def test_numbers_follow_road_rule():
    from gridserver.address.geocode import _numbers_follow_road
    from gridserver.address.keys import AddressParts
    from gridserver.address.matcher import Match

    def m(normalised, road):
        return Match(idx=0, normalised=normalised,
                     parts=AddressParts(road=road, road_end=normalised.find(road) + len(road)))

    assert _numbers_follow_road(m("越秀区北京路14号2栋", "北京路"))
    assert _numbers_follow_road(m("越秀区北京路,14号", "北京路"))
    assert _numbers_follow_road(m("越秀区北京路第14号", "北京路"))
    assert _numbers_follow_road(m("越秀区北京路", "北京路"))
    assert not _numbers_follow_road(m("越秀区北京路商步行街14号2栋1单元502室", "北京路"))
    assert not _numbers_follow_road(m("越秀区北京路大院3号", "北京路"))


def test_a_road_the_tagger_cut_short_is_corrected_as_a_whole():
    from gridserver.address.keys import AddressParts, RoadGazetteer

    gaz = RoadGazetteer(["广州地一大道", "达道路", "中山四路"])
    p = AddressParts(road="一达道", house_no="12", poi="广州地", upper={"district": "越秀区"})
    alts = gaz.resolve(p, "越秀区广州地一达道12号a栋1单元202室")
    assert (p.road, p.road_how, p.road_written) == ("广州地一大道", "fuzzy", "广州地一达道")
    assert alts[0][0] == "广州地一大道" and "达道路" not in [r for r, _ in alts]
    # the parser's road is kept when it is the closer spelling
    p = AddressParts(road="中山四跆", house_no="13", poi="某某大厦", upper={"district": "越秀区"})
    gaz.resolve(p, "越秀区某某大厦中山四跆13号")
    assert (p.road, p.road_written) == ("中山四路", "中山四跆")
