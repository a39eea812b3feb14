"""GET /tiles/{layer}/{z}/{x}/{y}.mvt and /tiles/layers.json over real HTTP on a real PostGIS."""

from __future__ import annotations

import mapbox_vector_tile
import morecantile
import pytest
from sqlalchemy import text

TMS = morecantile.tms.get("WebMercatorQuad")
MVT = "application/vnd.mapbox-vector-tile"


def _tile_covering(bbox) -> morecantile.Tile:
    """The deepest single tile that covers the whole bbox."""
    for z in range(16, -1, -1):
        found = list(TMS.tiles(*bbox, [z]))
        if len(found) == 1:
            return found[0]
    raise AssertionError("no single tile covers the bbox")


def _get(http, layer, t, **params):
    return http.get(f"/tiles/{layer}/{t.z}/{t.x}/{t.y}.mvt", params=params)


def _grid_codes(small_city):
    return {c for c, a in small_city.items() if a["level"] == "grid"}


def test_grid_tile_holds_every_small_city_grid_with_attributes(http, small_city):
    t = _tile_covering((113.2501, 23.1201, 113.2899, 23.1499))
    r = _get(http, "grids", t)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MVT
    tile = mapbox_vector_tile.decode(r.content)
    polys = tile["grids"]["features"]
    codes = {f["properties"]["code"] for f in polys}
    assert _grid_codes(small_city) <= codes
    one = next(f for f in polys if f["properties"]["code"] == "440104001001001")
    assert one["properties"]["name"] == "洪桥北社区第001网格"
    assert one["properties"]["level"] == "grid"
    assert one["properties"]["parent_code"] == "440104001001"
    assert one["geometry"]["type"] in ("Polygon", "MultiPolygon")
    # below z14 grids come without label points (no view labels them there; they were a third of a city tile)
    assert t.z < 14 and "grids_label" not in tile


def test_grid_label_points_from_z14_one_per_grid(http, small_city):
    labels = []
    for t in TMS.tiles(113.2501, 23.1201, 113.2899, 23.1499, [14]):
        r = _get(http, "grids", t)
        if r.status_code == 204:
            continue
        layer = mapbox_vector_tile.decode(r.content).get("grids_label", {"features": []})
        assert all(f["geometry"]["type"] == "Point" for f in layer["features"])
        labels += [f["properties"]["code"] for f in layer["features"]]
    # each grid's label point is in exactly one tile
    assert sorted(c for c in labels if c in _grid_codes(small_city)) == sorted(_grid_codes(small_city))


def test_each_area_layer_returns_its_own_level(http, small_city):
    t = _tile_covering((113.2501, 23.1201, 113.2899, 23.1499))
    expected = {"districts": ("district", {"440104"}), "streets": ("street", {"440104001", "440104003"}),
                "communities": ("community", {"440104001001", "440104001002", "440104003001", "440104003002"})}
    for layer, (level, codes) in expected.items():
        r = _get(http, layer, t)
        assert r.status_code == 200, (layer, r.text)
        feats = mapbox_vector_tile.decode(r.content)[layer]["features"]
        assert codes <= {f["properties"]["code"] for f in feats}, layer
        assert {f["properties"]["level"] for f in feats} == {level}


def test_deep_tile_holds_only_the_grids_it_touches(http, small_city):
    # z16 tile around the middle of grid 440104001001001 (NW grid of the NW community)
    t = TMS.tile(113.255, 23.1462, 16)
    r = _get(http, "grids", t)
    assert r.status_code == 200
    codes = {f["properties"]["code"] for f in mapbox_vector_tile.decode(r.content)["grids"]["features"]}
    assert "440104001001001" in codes
    assert "440104003002004" not in codes  # the far SE grid


def test_tile_without_data_is_204(http, small_city):
    t = TMS.tile(0.5, 0.5, 14)
    r = _get(http, "grids", t)
    assert r.status_code == 204
    assert r.content == b""


def test_unknown_layer_is_404(http, small_city):
    r = http.get("/tiles/railways/14/13346/7109.mvt")
    assert r.status_code == 404
    body = r.json()
    assert "railways" in body["detail"] and "grids" in body["detail"]


@pytest.mark.parametrize("path", ["/tiles/grids/14/16384/0.mvt", "/tiles/grids/3/0/8.mvt",
                                  "/tiles/grids/25/0/0.mvt", "/tiles/grids/-1/0/0.mvt",
                                  "/tiles/grids/14/-5/0.mvt", "/tiles/grids/x/0/0.mvt"])
def test_tile_outside_the_matrix_is_422(http, path):
    r = http.get(path)
    assert r.status_code == 422, r.text
    assert r.json()["code"] in ("invalid_tile", "invalid_input")


def test_etag_and_cache_headers(http, small_city):
    t = _tile_covering((113.2501, 23.1201, 113.2899, 23.1499))
    r = _get(http, "grids", t)
    assert r.headers["cache-control"] == "public, max-age=600"
    tag = r.headers["etag"]
    again = http.get(f"/tiles/grids/{t.z}/{t.x}/{t.y}.mvt", headers={"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    changed = http.get(f"/tiles/grids/{t.z}/{t.x}/{t.y}.mvt", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200 and changed.content == r.content




def test_tiles_are_gzip_encoded_only_when_the_client_accepts_it(http, small_city):
    import gzip

    t = _tile_covering((113.2501, 23.1201, 113.2899, 23.1499))
    url = f"/tiles/grids/{t.z}/{t.x}/{t.y}.mvt"
    plain = http.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert len(plain.content) >= 1024, "the small-city grid tile is big enough to be compressed"
    with http.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip" and "accept-encoding" in r.headers["vary"].lower()
        assert r.headers["etag"] == plain.headers["etag"]
    assert len(raw) < len(plain.content) and gzip.decompress(raw) == plain.content
    refused = http.get(url, headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers and refused.content == plain.content
@pytest.fixture
def incident(engine, small_city):
    with engine.begin() as conn:
        iid = conn.execute(text(
            """INSERT INTO incidents (category, description, status, geom, grid_code, community_code,
                                      street_code, district_code)
               VALUES ('road_traffic', '井盖缺失', 'reported', ST_SetSRID(ST_MakePoint(113.2712, 23.1234), 4326),
                       '440104003002003', '440104003002', '440104003', '440104') RETURNING id""")).scalar_one()
    yield iid
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE id = :id"), {"id": iid})


def test_incident_inserted_in_sql_shows_in_its_tile(http, incident, auth, admin_token):
    t = TMS.tile(113.2712, 23.1234, 16)
    r = http.get(f"/tiles/incidents/{t.z}/{t.x}/{t.y}.mvt", headers=auth(admin_token))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, max-age=15"
    feats = mapbox_vector_tile.decode(r.content)["incidents"]["features"]
    mine = [f for f in feats if f["properties"]["id"] == incident]
    assert len(mine) == 1
    f = mine[0]
    assert f["id"] == incident
    assert f["geometry"]["type"] == "Point"
    p = f["properties"]
    assert p["category"] == "road_traffic"
    assert p["category_label"] == "道路交通"
    assert p["status"] == "reported"
    assert p["grid_code"] == "440104003002003"
    assert p["created_at"].endswith("Z") and p["created_at"][:2] == "20"


def test_incident_status_filter(http, incident, auth, admin_token):
    t = TMS.tile(113.2712, 23.1234, 16)
    ids = lambda r: ({f["properties"]["id"] for f in mapbox_vector_tile.decode(r.content)["incidents"]["features"]}
                     if r.status_code == 200 else set())
    get = lambda status: http.get(f"/tiles/incidents/{t.z}/{t.x}/{t.y}.mvt", params={"status": status},
                                  headers=auth(admin_token))
    assert incident in ids(get("reported"))
    assert incident in ids(get("closed, reported"))
    assert incident not in ids(get("closed"))


def test_layers_json_lists_layers_with_data_bounds(http, small_city):
    r = http.get("/tiles/layers.json")
    assert r.status_code == 200
    doc = r.json()
    by_id = {l["id"]: l for l in doc["layers"]}
    assert {"districts", "streets", "communities", "grids", "incidents", "roads", "landuse"} <= set(by_id)
    grids = by_id["grids"]
    assert grids["count"] >= 16
    assert grids["tiles"][0].endswith("/tiles/grids/{z}/{x}/{y}.mvt")
    assert grids["tiles"][0].startswith("http://127.0.0.1:")
    assert grids["minzoom"] < grids["maxzoom"]
    x0, y0, x1, y1 = doc["bounds"]
    assert x0 <= 113.25 + 1e-9 and y0 <= 23.12 + 1e-9 and x1 >= 113.29 - 1e-9 and y1 >= 23.15 - 1e-9
    gx0, gy0, gx1, gy1 = grids["bounds"]
    assert gx0 <= 113.25 + 1e-9 and gy0 <= 23.12 + 1e-9 and gx1 >= 113.29 - 1e-9 and gy1 >= 23.15 - 1e-9
    labels = {c["code"]: c["label"] for c in doc["categories"]}
    assert labels["road_traffic"] == "道路交通"
    # a served tile URL from the document works
    t = TMS.tile(113.255, 23.1462, 15)
    url = grids["tiles"][0].format(z=t.z, x=t.x, y=t.y)
    assert http.get(url).status_code == 200


def test_built_assets_are_gzipped_and_revalidate_with_304(http):
    import gzip

    from gridserver.maps.routes import BUILD_HINT, DIST_DIR

    if not (DIST_DIR / "vendor.js").is_file():
        pytest.skip(f"map front-end not built: run `{BUILD_HINT}`")
    url = "/static/map/dist/vendor.js"
    plain = http.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.content == (DIST_DIR / "vendor.js").read_bytes()
    with http.stream("GET", url, headers={"Accept-Encoding": "gzip, deflate"}) as r:
        raw = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip" and r.headers["content-type"].startswith("text/javascript")
        tag = r.headers["etag"]
    assert len(raw) < len(plain.content) / 2 and gzip.decompress(raw) == plain.content
    assert tag == plain.headers["etag"]
    again = http.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert http.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_built_bundle_carries_the_licences_of_the_npm_packages_in_it(http):
    """BSD/MIT notices must travel with the minified bundle: the build writes them beside it."""
    import json
    from pathlib import Path

    from gridserver.maps.routes import BUILD_HINT, DIST_DIR

    if not (DIST_DIR / "vendor.js").is_file():
        pytest.skip(f"map front-end not built: run `{BUILD_HINT}`")
    web = Path(__file__).resolve().parents[2] / "web"
    r = http.get("/static/map/dist/THIRD-PARTY-LICENSES.txt", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain; charset=utf-8"
    for name in json.loads((web / "package.json").read_text())["dependencies"]:
        pkg = web / "node_modules" / name
        meta = json.loads((pkg / "package.json").read_text())
        assert f"{name} {meta['version']} — {meta['license']}" in r.text
        licence = next(p for p in pkg.iterdir() if p.name.lower().startswith("license"))
        assert licence.read_text().strip() in r.text
