"""Property tests (hypothesis): CRS round trips, locate against shapely, address normalisation.

Bounded (``max_examples``) and derandomized so ``make test`` stays quick and repeatable; each property
is the rule written in the module it tests.
"""

from __future__ import annotations

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from gridserver.errors import OutsideArea
from gridserver.geo import crs

FAST = settings(max_examples=300, deadline=None, derandomize=True)
DB = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

# Mainland China and near waters, where GCJ-02/BD-09 apply (outside it they are the identity).
china_lon = st.floats(min_value=73.7, max_value=134.7, allow_nan=False)
china_lat = st.floats(min_value=18.2, max_value=53.5, allow_nan=False)


@FAST
@given(china_lon, china_lat)
def test_gcj02_round_trip_is_within_a_centimetre(lon, lat):
    glon, glat = crs.wgs84_to_gcj02(lon, lat)
    back = crs.gcj02_to_wgs84(glon, glat)
    assert abs(back[0] - lon) < 1e-7 and abs(back[1] - lat) < 1e-7


@FAST
@given(china_lon, china_lat)
def test_bd09_round_trip_is_within_a_centimetre(lon, lat):
    blon, blat = crs.wgs84_to_bd09(lon, lat)
    back = crs.bd09_to_wgs84(blon, blat)
    assert abs(back[0] - lon) < 1e-7 and abs(back[1] - lat) < 1e-7


@FAST
@given(st.floats(min_value=112.6, max_value=115.4), st.floats(min_value=20.0, max_value=26.0))
def test_metric_crs_round_trip_through_to_wgs84(lon, lat):
    x, y = crs.metric_transformer().transform(lon, lat)
    back = crs.to_wgs84(x, y, "EPSG:4547")
    assert abs(back[0] - lon) < 1e-8 and abs(back[1] - lat) < 1e-8


@FAST
@given(st.floats(min_value=-180, max_value=180), st.floats(min_value=-90, max_value=90))
def test_the_offsets_are_the_identity_outside_china(lon, lat):
    if 72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271:
        return  # inside the published out-of-China box
    assert crs.wgs84_to_gcj02(lon, lat) == pytest.approx((lon, lat))


# --- locate vs shapely ----------------------------------------------------------------------------

def _expected_grid(city: dict, lon: float, lat: float) -> str | None:
    """The README's rule: the grid that covers the point; on shared edges the smallest code."""
    p = Point(lon, lat)
    codes = sorted(code for code, a in city.items() if a["level"] == "grid" and shapely.covers(a["geom"], p))
    return codes[0] if codes else None


def _snap(v: float, lines: list[float]) -> float:
    """Half of the points go exactly onto a grid line (the boundary rule is the interesting case)."""
    return min(lines, key=lambda line: abs(line - v))


@pytest.fixture(scope="module")
def grid_lines(small_city):
    xs, ys = set(), set()
    for a in small_city.values():
        x0, y0, x1, y1 = a["geom"].bounds
        xs.update((x0, x1))
        ys.update((y0, y1))
    return sorted(xs), sorted(ys)


def test_locate_agrees_with_shapely_covers_and_the_smallest_code_rule(engine, small_city, grid_lines):
    from gridserver.areas.locate import locate_point

    xs, ys = grid_lines

    @DB
    @given(st.floats(113.245, 113.295), st.floats(23.115, 23.155), st.booleans(), st.booleans())
    def check(lon, lat, snap_x, snap_y):
        lon = _snap(lon, xs) if snap_x else lon
        lat = _snap(lat, ys) if snap_y else lat
        want = _expected_grid(small_city, lon, lat)
        with engine.connect() as conn:
            try:
                got = locate_point(conn, lon, lat, "wgs84").code("grid")
            except OutsideArea:
                got = None
        assert got == want, (lon, lat)

    check()


# --- address normalisation ------------------------------------------------------------------------

ADDRESS_ALPHABET = ("广东省广州市越秀区中山四路北京街道解放南路号栋单元室层座楼之弄巷"
                    "廣東州區號棟單層樓一二三四五六七八九十百千零两〇壹贰叁"
                    "0123456789０１２３４５６７８９ＡＢＣabc-－—（）() 　　\t")


@FAST
@given(st.text(alphabet=ADDRESS_ALPHABET, max_size=40))
def test_normalising_twice_changes_nothing(text):
    from gridserver.address.normalize import normalize_address

    once = normalize_address(text)
    assert normalize_address(once) == once


@FAST
@given(st.text(alphabet=ADDRESS_ALPHABET, max_size=40))
def test_normalised_addresses_have_no_whitespace_or_full_width_digits(text):
    from gridserver.address.normalize import normalize_address

    out = normalize_address(text)
    assert not any(c.isspace() for c in out)
    assert not any("０" <= c <= "９" for c in out)


def test_the_two_spellings_of_the_readme_normalise_alike():
    from gridserver.address.normalize import normalize_address

    assert normalize_address("廣州市越秀區中山四路十三號") == normalize_address("广州市越秀区中山四路13号")
