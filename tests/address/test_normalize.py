"""Normalisation: width, variants, Chinese numerals, filling upper levels from roads."""

from __future__ import annotations

import json

import pytest

from gridserver.address.normalize import (
    chinese_numeral_value,
    default_road_index,
    fill_upper_levels,
    normalize_address,
    normalize_chars,
    numerals_to_arabic,
    road_index_from_geojson,
)
from gridserver.settings import get_settings


@pytest.mark.parametrize("text", ["", "  ", "ＡＢＣ１２３－４", "廣州市越秀區東風中路３３８號", "abc 12", "𠀀字"])
def test_normalize_chars_preserves_length(text):
    assert len(normalize_chars(text)) == len(text)


def test_full_width_and_variants():
    assert normalize_chars("ＡＢ１２３（５）") == "AB123(5)"
    assert normalize_chars("廣州市越秀區東風中路３３８號２棟３樓") == "广州市越秀区东风中路338号2栋3楼"
    assert normalize_chars("單元　層") == "单元 层"
    assert normalize_chars("三元裏 五羊新城") == "三元里 五羊新城"


@pytest.mark.parametrize("numeral,value", [
    ("一", 1), ("十", 10), ("十三", 13), ("二十", 20), ("二十一", 21), ("一百零五", 105), ("三〇二", 302),
    ("两", 2), ("一千二百", 1200), ("十百", None), ("", None), ("三元", None),
])
def test_chinese_numeral_value(numeral, value):
    assert chinese_numeral_value(numeral) == value


@pytest.mark.parametrize("text,expected", [
    ("十三号", "13号"),
    ("二楼", "2楼"),
    ("三单元五〇二室", "3单元502室"),
    ("第十二层", "第12层"),
    ("二十三栋", "23栋"),
    ("一百零八弄", "108弄"),
    ("三元里大道", "三元里大道"),     # numeral inside a name, no unit after it
    ("五羊新城", "五羊新城"),
    ("十三行路", "十三行路"),
    ("三元里二号", "三元里2号"),
    ("一德路", "一德路"),
])
def test_numerals_to_arabic(text, expected):
    assert numerals_to_arabic(text) == expected


def test_normalize_address_merges_spellings():
    a = normalize_address("廣州市 越秀區 中山四路 十三號 ｂ座")
    b = normalize_address("广州市越秀区中山四路13号B座")
    assert a == b == "广州市越秀区中山四路13号B座"
    assert normalize_address("") == ""
    assert normalize_address("   ") == ""


ROADS = {normalize_address("中山四路"): ("广东省", "广州市", "越秀区")}


def test_fill_upper_levels_from_road():
    out = fill_upper_levels({"road": "中山四路", "roadno": "13号"}, ROADS)
    assert out == {"road": "中山四路", "roadno": "13号", "prov": "广东省", "city": "广州市", "district": "越秀区"}


def test_fill_upper_levels_keeps_present_and_skips_conflicts():
    assert fill_upper_levels({"city": "广州", "road": "中山四路"}, ROADS)["city"] == "广州"
    assert fill_upper_levels({"city": "广州", "road": "中山四路"}, ROADS)["district"] == "越秀区"
    # another district: the road is a namesake elsewhere, nothing is filled
    out = fill_upper_levels({"district": "天河区", "road": "中山四路"}, ROADS)
    assert "city" not in out and out["district"] == "天河区"
    # unknown road: unchanged
    assert fill_upper_levels({"road": "文一西路"}, ROADS) == {"road": "文一西路"}
    assert fill_upper_levels({}, ROADS) == {}


def test_fill_upper_levels_accepts_component_lists():
    comps = [{"label": "road", "text": "中山四路"}, {"label": "roadno", "text": "13号"}]
    assert fill_upper_levels(comps, ROADS)["district"] == "越秀区"


def test_road_index_from_geojson(tmp_path):
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "東風中路"}, "geometry": None},
        {"type": "Feature", "properties": {"name": "东华北路辅路"}, "geometry": None},
        {"type": "Feature", "properties": {}, "geometry": None},
    ]}), encoding="utf-8")
    index = road_index_from_geojson(path)
    assert set(index) == {"东风中路", "东华北路"}
    assert road_index_from_geojson(tmp_path / "missing.geojson") == {}
    (tmp_path / "bad.geojson").write_text("not json")
    assert road_index_from_geojson(tmp_path / "bad.geojson") == {}


def test_default_yuexiu_index():
    path = get_settings().yuexiu_dir / "yuexiu_roads_osm_wgs84.geojson"
    if not path.exists():
        pytest.skip(f"{path} not present (shared data)")
    index = default_road_index()
    assert len(index) > 100
    assert index["中山四路"] == ("广东省", "广州市", "越秀区")
    assert fill_upper_levels({"road": "中山四路"}, index)["district"] == "越秀区"
