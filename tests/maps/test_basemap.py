"""The basemap: roads and green areas loaded into the database, served as public vector tiles."""

from __future__ import annotations

import geopandas as gpd
import mapbox_vector_tile
import morecantile
import pytest
import shapely
from sqlalchemy import text

from gridserver.demo.basemap import load_basemap, read_areas, road_class
from gridserver.settings import get_settings

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def basemap(engine, small_city):
    roads = gpd.GeoDataFrame(
        {"highway": ["primary", "footway", "residential"], "name": ["环市路", None, "小巷"]},
        geometry=[shapely.LineString([(113.2505, 23.135), (113.2895, 23.135)]),
                  shapely.LineString([(113.27, 23.121), (113.27, 23.149)]),
                  shapely.MultiLineString([[(113.255, 23.125), (113.265, 23.128)]])], crs=4326)
    grids = gpd.GeoDataFrame({"code": [c for c, a in small_city.items() if a["level"] == "grid"]},
                             geometry=[a["geom"] for a in small_city.values() if a["level"] == "grid"], crs=4326)
    counts = load_basemap(engine, {"roads": roads, "grid": grids}, None, seed=3, source="test_basemap")
    yield counts
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM basemap_roads WHERE source = 'test_basemap'"))
        conn.execute(text("DELETE FROM basemap_areas WHERE source = 'test_basemap'"))


def test_loader_stores_roads_and_generated_parks(basemap, engine):
    assert basemap["roads"] == 3 and basemap["green"] >= 1 and basemap["water"] == 0
    with engine.connect() as conn:
        classes = dict(conn.execute(text("SELECT name, class FROM basemap_roads WHERE source = 'test_basemap' "
                                         "AND name IS NOT NULL")).all())
    assert classes == {"环市路": "primary", "小巷": "residential"}
    assert road_class("footway") == "path" and road_class("trunk_link") == "trunk"


def test_road_tiles_by_zoom_are_public(http, basemap):
    t = TMS.tile(113.27, 23.135, 12)
    r = http.get(f"/tiles/roads/{t.z}/{t.x}/{t.y}.mvt")
    assert r.status_code == 200 and r.headers["cache-control"].startswith("public")
    names = {f["properties"].get("name") for f in mapbox_vector_tile.decode(r.content)["roads"]["features"]}
    assert "环市路" in names and "小巷" not in names, "only main roads at z12"
    t = TMS.tile(113.27, 23.135, 15)
    feats = mapbox_vector_tile.decode(http.get(f"/tiles/roads/{t.z}/{t.x}/{t.y}.mvt").content)["roads"]["features"]
    assert {"primary", "path"} <= {f["properties"]["class"] for f in feats}


def test_landuse_tiles_hold_green(http, basemap):
    t = TMS.tile(113.27, 23.135, 13)
    r = http.get(f"/tiles/landuse/{t.z}/{t.x}/{t.y}.mvt")
    assert r.status_code == 200
    kinds = {f["properties"]["kind"] for f in mapbox_vector_tile.decode(r.content)["landuse"]["features"]}
    assert kinds == {"green"}


def test_layers_json_lists_basemap_layers(http, basemap):
    by_id = {l["id"]: l for l in http.get("/tiles/layers.json").json()["layers"]}
    assert by_id["roads"]["count"] >= 3 and by_id["roads"]["public"]
    assert by_id["landuse"]["count"] >= 1


def test_shared_green_areas_are_read_when_present():
    d = get_settings().shared_dir / "data" / "yuexiu"
    if not (d / "yuexiu_green_osm_wgs84.geojson").is_file():
        pytest.skip("../shared/data/yuexiu not present")
    areas = read_areas(d)
    assert len(areas) > 100 and set(areas["kind"]) == {"green"}
    assert "park" in set(areas["subtype"])


def test_tianditu_is_offered_only_when_a_key_is_configured(monkeypatch):
    from gridserver.maps.tiles import tianditu_sources
    from gridserver.settings import get_settings

    monkeypatch.setattr(get_settings(), "tianditu_key", None)
    assert tianditu_sources() is None
    monkeypatch.setattr(get_settings(), "tianditu_key", "k123")
    t = tianditu_sources()
    assert t["default_visible"] is False
    vec = t["layers"]["vec"]
    assert len(vec) == 8 and vec[0].startswith("https://t0.tianditu.gov.cn/vec_w/wmts?")
    assert "TILEMATRIXSET=w" in vec[0] and "{z}" in vec[0] and vec[0].endswith("tk=k123")


def test_layers_json_has_no_tianditu_by_default(http, small_city):
    assert "tianditu" not in http.get("/tiles/layers.json").json()
