"""Area tiles answered by the pure-ASGI fast path (gridserver/maps/fast_tiles.py) from the revision-keyed
cache (gridserver/maps/tile_cache.py): same bytes and headers as the route, no database access while
the remembered areas revision is fresh, and an area change served within ``tile_revision_ttl`` —
in this process and across the worker processes of ``gridserver serve --workers 2``."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import time

import httpx
import morecantile
import psycopg
import pytest
from shapely.geometry import box

from conftest import load_areas
from serving import wait_serving

TMS = morecantile.tms.get("WebMercatorQuad")
T = morecantile.Tile(13346, 7108, 14)  # over grid 440104001001001
URL = f"/tiles/grids/{T.z}/{T.x}/{T.y}.mvt"
BIG = "/tiles/grids/12/3336/1777.mvt"  # the whole small city: large enough to be gzip-encoded
GRID = "440104001001001"


@pytest.fixture
def ttl(monkeypatch):
    """Set the revision TTL of the in-process test server; the cache starts empty."""
    from gridserver.maps import tile_cache
    from gridserver.settings import get_settings

    def set_ttl(seconds: float):
        monkeypatch.setattr(get_settings(), "tile_revision_ttl", seconds)

    tile_cache.clear()
    yield set_ttl
    tile_cache.clear()


def _headers(r: httpx.Response) -> dict:
    return {k: v for k, v in r.headers.items() if k not in ("date", "server")}


def test_a_fresh_cache_hit_is_answered_without_the_database_and_as_the_route_answers(http, small_city, ttl, auth,
                                                                                       make_user):
    from gridserver.maps import tile_cache

    ttl(60)
    first = http.get(BIG)  # rendered (miss): reads the revision once
    assert first.status_code == 200 and first.headers["cache-control"] == "public, max-age=600"
    before = tile_cache.stats()
    assert before["revision_reads"] == 1 and before["misses"] == 1
    again = [http.get(BIG) for _ in range(5)]
    after = tile_cache.stats()
    assert after["fast_hits"] == before["fast_hits"] + 5
    assert after["revision_reads"] == before["revision_reads"]  # no database access for a fresh hit
    for r in again:
        assert r.status_code == 200 and r.content == first.content and _headers(r) == _headers(first)

    # the route (a request with a token goes through FastAPI) gives the same response for the same tile
    routed = http.get(BIG, headers=auth(make_user("analyst")))
    assert routed.status_code == 200 and routed.content == first.content
    assert _headers(routed) == _headers(first)

    # gzip when accepted (the same for both ways), 304 on a matching ETag, identity otherwise
    gz = http.get(BIG, headers={"Accept-Encoding": "gzip"})
    with httpx.Client(base_url=http.base_url) as plain:  # httpx would decode; read the raw bytes
        with plain.stream("GET", BIG, headers={"Accept-Encoding": "gzip"}) as s:
            body = b"".join(s.iter_raw())
            assert s.headers["content-encoding"] == "gzip" and s.headers["etag"] == first.headers["etag"]
            assert int(s.headers["content-length"]) == len(body) < len(first.content)
    assert gzip.decompress(body) == first.content == gz.content
    nm = http.get(BIG, headers={"If-None-Match": first.headers["etag"]})
    assert nm.status_code == 304 and nm.content == b"" and nm.headers["etag"] == first.headers["etag"]
    assert "content-encoding" not in http.get(BIG, headers={"Accept-Encoding": "gzip;q=0"}).headers
    assert tile_cache.stats()["revision_reads"] == before["revision_reads"]


def test_the_fast_path_leaves_tokens_errors_and_odd_paths_to_the_route(http, small_city, ttl):
    ttl(60)
    assert http.get(URL).status_code == 200
    bad = http.get(URL, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401  # cached or not: a bad token is refused as on every route
    assert http.get(f"/tiles/grids/{T.z:03d}/{T.x}/{T.y}.mvt").status_code == 200  # '015': the route parses it
    r = http.get("/tiles/grids/30/0/0.mvt")
    assert r.status_code == 422 and r.json()["code"] == "invalid_tile"
    r = http.get(f"/tiles/nolayer/{T.z}/{T.x}/{T.y}.mvt")
    assert r.status_code == 404 and r.json()["code"] == "unknown_layer"
    assert http.get("/tiles/grids/15/0/0.mvt").status_code == 204  # empty tile, twice (second from the cache)
    empty = http.get("/tiles/grids/15/0/0.mvt")
    assert empty.status_code == 204 and empty.content == b"" and "etag" not in empty.headers
    assert http.get(f"/tiles/incidents/{T.z}/{T.x}/{T.y}.mvt").status_code == 401  # never served anonymously


def _wait_for_change(get, old: bytes, limit: float) -> float:
    """Seconds until get() returns other bytes than ``old`` (fails after ``limit``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if get() != old:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"tile still unchanged after {limit} s")


def test_an_area_change_is_served_within_the_ttl(http, engine, small_city, ttl):
    ttl(0.5)
    first = http.get(URL).content
    grid = dict(small_city[GRID])
    x0, y0, x1, y1 = grid["geom"].bounds
    try:
        load_areas(engine, [{**grid, "geom": box(x0, y0, (x0 + x1) / 2, y1)}])  # the trigger bumps the revision
        assert _wait_for_change(lambda: http.get(URL).content, first, 5) <= 0.5 + 0.3
        changed = http.get(URL).content
        time.sleep(0.6)
        assert http.get(URL).content == changed  # and stays so
    finally:
        load_areas(engine, [small_city[GRID]])
    time.sleep(0.5 + 0.3)
    assert http.get(URL).content != changed  # changed back: the tile of the newest revision again


def test_serve_workers_each_see_an_area_change_within_the_ttl(db_conninfo, small_city, engine):
    """`gridserver serve --workers 2`: two processes, each with its own cache; both serve the change."""
    from trust.test_access_serve import GRIDSERVER, ROOT, _env, _free_port

    port = _free_port()
    proc = subprocess.Popen(GRIDSERVER + ["serve", "--port", str(port), "--workers", "2"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(db_conninfo, GRIDSERVER_JWT_SECRET="w" * 8 + os.urandom(16).hex(),
                                     GRIDSERVER_TILE_REVISION_TTL="0.5"))
    base = f"http://127.0.0.1:{port}"

    def fetch_all(n=12) -> set[bytes]:  # new connections: the kernel spreads them over both workers
        return {httpx.get(base + URL, timeout=10).content for _ in range(n)}

    grid = dict(small_city[GRID])
    x0, y0, x1, y1 = grid["geom"].bounds
    try:
        wait_serving(proc, base, 60, "serve --workers 2")
        children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        assert len(children) >= 2, children  # uvicorn's supervisor and its worker processes
        before = fetch_all()
        assert len(before) == 1
        load_areas(engine, [{**grid, "geom": box(x0, y0, (x0 + x1) / 2, y1)}])
        time.sleep(0.5 + 0.3)
        after = fetch_all()
        assert len(after) == 1 and after != before, "a worker served the tile of the old areas revision"
    finally:
        load_areas(engine, [small_city[GRID]])
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "2 worker processes" in " ".join(out.split())
    with psycopg.connect(db_conninfo) as conn:  # the test database is back as it was
        assert conn.execute("SELECT count(*) FROM admin_areas WHERE code = %s AND valid_to IS NULL",
                            (GRID,)).fetchone()[0] == 1
