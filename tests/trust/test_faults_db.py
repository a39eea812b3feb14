"""Database faults: while PostgreSQL is down every route answers 503 with Retry-After (never 500,
never a hang); the first request after it is back succeeds; a statement that runs past
``statement_timeout`` is cancelled with a clear 503.

Runs against a private cluster and app server (tests/trust/private_pg.py): the shared servers are
never stopped.
"""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

from trust.private_pg import AppServer, PrivateCluster, any_category, setup_city_and_admin

TILE = "/tiles/grids/14/13346/7109.mvt"  # over the small city
UNCACHED_TILE = "/tiles/communities/14/13346/7109.mvt"
ANONYMOUS_UNCACHED_TILE = "/tiles/streets/14/13346/7109.mvt"
POINT = {"lon": 113.255, "lat": 23.145}

#: Values for path parameters when walking every route of the OpenAPI document.
PATH_VALUES = {"code": "440104001001001", "layer": "grids", "z": "14", "x": "13346", "y": "7109"}


@pytest.fixture(scope="module")
def faulty():
    cluster = PrivateCluster()
    try:
        url = cluster.start()
        username, password = setup_city_and_admin(url)
        server = AppServer(url, cluster.dir, GRIDSERVER_STATEMENT_TIMEOUT_MS=1500, GRIDSERVER_CONNECT_TIMEOUT=2,
                           GRIDSERVER_RETRY_AFTER=4)
        try:
            with httpx.Client(base_url=server.base, timeout=30) as client:
                r = client.post("/api/v1/auth/token", data={"username": username, "password": password})
                assert r.status_code == 200, r.text
                client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
                client.headers["X-Test-Category"] = any_category(client)
                yield cluster, server, client
        finally:
            server.stop()
    finally:
        cluster.destroy()


def _core_requests(client: httpx.Client) -> dict[str, httpx.Response]:
    """One request on each database path: ORM session, raw pool (tiles, batch locate), a write, login."""
    return {
        "areas": client.get("/api/v1/areas", params={"limit": 5}),
        "locate": client.get("/api/v1/locate", params=POINT),
        "tile": client.get(TILE),
        "batch": client.post("/api/v1/locate", json=[{"id": 1, **POINT}]),
        "incident": client.post("/api/v1/incidents", json={**POINT, "category": client.headers["X-Test-Category"],
                                                           "description": "故障测试"}),
        "me": client.get("/api/v1/auth/me"),
    }


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)


def _every_get(client: httpx.Client) -> list[tuple[str, httpx.Response]]:
    """GET every path of the OpenAPI document with required parameters filled."""
    spec = client.get("/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if op is None:
            continue
        params = {}
        for p in op.get("parameters", []):
            if p["in"] == "query" and p.get("required"):
                params[p["name"]] = {"lon": "113.255", "lat": "23.145", "q": "越秀"}.get(p["name"], "1")
        out.append((path, client.get(_fill(path), params=params)))
    return out


def test_database_down_means_503_with_retry_after_then_the_first_request_succeeds(faulty):
    cluster, server, client = faulty
    warm = _core_requests(client)
    assert {k: r.status_code for k, r in warm.items()} == {
        "areas": 200, "locate": 200, "tile": 200, "batch": 200, "incident": 201, "me": 200}, warm

    cluster.stop()
    try:
        down = _core_requests(client)
        for name, r in down.items():
            assert r.status_code == 503, (name, r.status_code, r.text)
            assert r.json()["code"] == "database_unavailable", (name, r.text)
            assert r.headers["Retry-After"] == "4", name
        # anonymous area tiles go through maps/fast_tiles.py (outside FastAPI's routing): same 503
        anonymous = httpx.get(server.base + UNCACHED_TILE, timeout=30)
        assert anonymous.status_code == 503 and anonymous.json()["code"] == "database_unavailable", anonymous.text
        assert anonymous.headers["Retry-After"] == "4"
        login = client.post("/api/v1/auth/token", data={"username": "fault_admin", "password": "whatever-123"})
        assert login.status_code == 503, login.text
        for path, r in _every_get(client):
            assert r.status_code != 500 and r.status_code < 600, (path, r.status_code, r.text[:300])
            if r.status_code == 503:
                assert "Retry-After" in r.headers, path
        assert server.proc.poll() is None
    finally:
        cluster.start()

    # no warm-up, no second try: the very first request on every path after the restart succeeds
    back = _core_requests(client)
    assert {k: r.status_code for k, r in back.items()} == {
        "areas": 200, "locate": 200, "tile": 200, "batch": 200, "incident": 201, "me": 200}, \
        {k: (r.status_code, r.text[:200]) for k, r in back.items()}
    assert back["locate"].json()["grid"]["code"] if "grid" in back["locate"].json() else True


def test_database_killed_mid_session_first_request_after_crash_recovery_succeeds(faulty):
    cluster, server, client = faulty
    assert client.get(TILE).status_code == 200
    cluster.stop("immediate")  # like a crash: no shutdown message to the clients
    cluster.start()
    back = _core_requests(client)
    assert all(r.status_code in (200, 201) for r in back.values()), \
        {k: (r.status_code, r.text[:200]) for k, r in back.items()}


def test_statement_timeout_cancels_a_stuck_query_with_a_clear_503(faulty):
    cluster, server, client = faulty
    with psycopg.connect(cluster.conninfo) as blocker:
        blocker.execute("LOCK TABLE admin_areas IN ACCESS EXCLUSIVE MODE")  # held until rollback
        # a tile not asked for before (TILE may be served from the area tile cache without the table)
        for r in (client.get("/api/v1/areas", params={"limit": 5}), client.get(UNCACHED_TILE),
                  httpx.get(server.base + ANONYMOUS_UNCACHED_TILE, timeout=30)):  # fast_tiles' thread-pool call
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["code"] == "query_timeout"
            assert "statement timeout (1.5 s)" in body["detail"]
            assert "Retry-After" in r.headers
        blocker.rollback()
    assert client.get("/api/v1/areas", params={"limit": 5}).status_code == 200
    assert client.get(UNCACHED_TILE).status_code == 200
