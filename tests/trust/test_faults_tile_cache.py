"""Area tiles are cached per areas revision (gridserver/maps/tile_cache.py): a repeat is a cache hit
with the same bytes, and a changed area is never served stale. Incident tiles are never cached."""

from __future__ import annotations

import morecantile
from shapely.geometry import box

from conftest import load_areas

TMS = morecantile.tms.get("WebMercatorQuad")


def test_area_tiles_come_from_the_cache_until_an_area_changes(http, engine, small_city):
    from gridserver.maps import tile_cache

    t = TMS.tile(113.255, 23.145, 15)
    url = f"/tiles/grids/{t.z}/{t.x}/{t.y}.mvt"
    first = http.get(url)
    assert first.status_code == 200
    before = tile_cache.stats()
    again = http.get(url)
    assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
    after = tile_cache.stats()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]

    grid = dict(small_city["440104001001001"])
    x0, y0, x1, y1 = grid["geom"].bounds
    try:
        load_areas(engine, [{**grid, "geom": box(x0, y0, (x0 + x1) / 2, y1)}])  # the trigger bumps the revision
        changed = http.get(url)
        assert changed.status_code == 200
        assert changed.content != first.content and changed.headers["ETag"] != first.headers["ETag"]
        assert tile_cache.stats()["misses"] == after["misses"] + 1
        restored = False
    finally:
        load_areas(engine, [small_city["440104001001001"]])
        restored = True
    assert restored
    misses = tile_cache.stats()["misses"]
    back = http.get(url)  # the area changed again: rendered afresh, not the cached changed tile
    assert back.status_code == 200 and back.content != changed.content
    assert tile_cache.stats()["misses"] == misses + 1


def test_incident_tiles_are_not_cached(http, auth, make_user, small_city):
    from gridserver.maps import tile_cache

    t = TMS.tile(113.255, 23.145, 15)
    who = make_user("admin")
    before = tile_cache.stats()
    for _ in range(2):
        assert http.get(f"/tiles/incidents/{t.z}/{t.x}/{t.y}.mvt", headers=auth(who)).status_code in (200, 204)
    assert tile_cache.stats() == before
