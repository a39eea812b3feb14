"""Access (issue 8): heavy endpoints need a token beyond small sizes, and request bodies are cut
off at their limit WHILE streaming (chunked, no Content-Length) — JSON/CSV, multipart uploads."""

from __future__ import annotations

import pytest

from gridserver.address.parser import MODEL_PATH
from gridserver.areas import admin_routes, batch
from gridserver.limits import LIMIT_KEY
from raw_http import raw_chunked

CSV_LINE = b"113.26,23.13\n"


def _csv(n: int) -> bytes:
    return b"lon,lat\n" + CSV_LINE * n


def _chunks(total: int, chunk: int = 64 * 1024):
    """A CSV body of about ``total`` bytes, sent in chunks (httpx → Transfer-Encoding: chunked)."""
    yield b"lon,lat\n"
    line_chunk = CSV_LINE * (chunk // len(CSV_LINE))
    sent = 0
    while sent < total:
        yield line_chunk
        sent += len(line_chunk)


# --- batch locate ----------------------------------------------------------------------------------
def test_anonymous_batch_is_capped_and_a_token_lifts_the_cap(http, small_city, admin_token, auth):
    n = batch.ANONYMOUS_MAX_POINTS + 1
    r = http.post("/api/v1/locate", content=_csv(n), headers={"content-type": "text/csv"})
    assert r.status_code == 413, r.text[:300]
    assert "without a token" in r.json()["detail"] and "auth/token" in r.json()["detail"]
    r = http.post("/api/v1/locate", content=_csv(n), headers={"content-type": "text/csv", **auth(admin_token)})
    assert r.status_code == 200 and r.text.count("\n") == n
    small = http.post("/api/v1/locate", content=_csv(10), headers={"content-type": "text/csv"})
    assert small.status_code == 200 and small.text.count("440104") == 10 * 4  # grid..district codes


def test_anonymous_body_limit_declared_and_chunked(http, small_city):
    body = _csv(batch.ANONYMOUS_MAX_BODY_BYTES // len(CSV_LINE) + 1000)  # few points per byte? still > 1 MB
    r = http.post("/api/v1/locate", content=body, headers={"content-type": "text/csv"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large" and "declared" in r.json()["detail"]
    r = http.post("/api/v1/locate", content=_chunks(2 * batch.ANONYMOUS_MAX_BODY_BYTES),
                  headers={"content-type": "text/csv"})
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 413 and r.json()["code"] == "body_too_large", r.text[:300]


def test_token_body_limit_applies_to_chunked_bodies(http, small_city, admin_token, auth, monkeypatch):
    monkeypatch.setattr(batch, "MAX_BODY_BYTES", 1024 * 1024)
    r = http.post("/api/v1/locate", content=_chunks(3 * 1024 * 1024),
                  headers={"content-type": "text/csv", **auth(admin_token)})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large", r.text[:300]
    ok = http.post("/api/v1/locate", content=_chunks(512 * 1024), headers={"content-type": "text/csv",
                                                                           **auth(admin_token)})
    assert ok.status_code == 200


def test_chunked_body_is_cut_off_while_streaming(live_url, small_city):
    """The server answers 413 after ~1 MB of an endless chunked body; it never reads the rest."""
    total, chunk = 64 * 1024 * 1024, CSV_LINE * 2000  # 26 kB per chunk
    sent, status, answer = raw_chunked(live_url, "/api/v1/locate", {"Content-Type": "text/csv"},
                                       b"lon,lat\n", chunk, total)
    assert sent < 16 * 1024 * 1024, f"server read {sent:,} bytes before answering"
    assert status == 413, answer


def test_multipart_upload_to_batch_locate_is_cut_off(http, small_city):
    boundary = "gsboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.csv\"\r\n"
               f"Content-Type: text/csv\r\n\r\n").encode()
        yield from _chunks(2 * batch.ANONYMOUS_MAX_BODY_BYTES)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = http.post("/api/v1/locate", content=body(),
                  headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large", r.text[:300]


@pytest.fixture
def small_upload_limit(live_url):
    """Lower the areas upload limit of the live app's route to 1 MB for one test."""
    from fastapi.routing import APIRoute

    from gridserver.areas.admin_routes import router

    extra = next(r.openapi_extra for r in router.routes if isinstance(r, APIRoute) and r.path.endswith("/areas/import"))
    old = extra[LIMIT_KEY]
    extra[LIMIT_KEY] = 1024 * 1024
    yield
    extra[LIMIT_KEY] = old


def test_area_upload_is_cut_off_while_streaming(http, admin_token, auth, small_upload_limit):
    boundary = "gsboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"level\"\r\n\r\ngrid\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"g.geojson\"\r\n"
               f"Content-Type: application/geo+json\r\n\r\n").encode()
        for _ in range(64):
            yield b" " * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = http.post("/api/v1/areas/import", content=body(),
                  headers={"content-type": f"multipart/form-data; boundary={boundary}", **auth(admin_token)})
    assert r.status_code == 413, r.text[:300]
    assert r.json()["code"] == "body_too_large" and "1,048,576" in r.json()["detail"]
    assert admin_routes.MAX_UPLOAD_BYTES == 200 * 1024 * 1024  # the real limit is untouched


# --- topology ------------------------------------------------------------------------------------------
def test_topology_needs_a_staff_token(http, small_city, make_user, auth):
    assert http.get("/api/v1/topology").status_code == 401
    assert http.get("/api/v1/topology", headers=auth(make_user("citizen"))).status_code == 403
    r = http.get("/api/v1/topology", params={"area": "440104"}, headers=auth(make_user("analyst")))
    assert r.status_code == 200 and "issues" in r.json()


# --- address parse ---------------------------------------------------------------------------------------
@pytest.mark.skipif(not MODEL_PATH.exists(), reason="parser model not built")
def test_anonymous_parse_batches_are_small(http, admin_token, auth):
    from gridserver.address.routes_parse import ANONYMOUS_MAX_BATCH

    texts = ["广州市越秀区中山四路13号"] * (ANONYMOUS_MAX_BATCH + 1)
    r = http.post("/api/v1/address/parse", json=texts)
    assert r.status_code == 422 and r.json()["code"] == "too_many" and "log in" in r.json()["detail"]
    r = http.post("/api/v1/address/parse", json=texts, headers=auth(admin_token))
    assert r.status_code == 200 and len(r.json()) == len(texts)
    assert http.post("/api/v1/address/parse", json=texts[:3]).status_code == 200
    big = ["越" * 5000] * 10  # ~150 kB of JSON: over the anonymous body limit
    r = http.post("/api/v1/address/parse", json=big)
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    r = http.post("/api/v1/address/parse", content=(b'["' + "越".encode() * 50_000 + b'"]' for _ in range(1)),
                  headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    assert http.post("/api/v1/address/parse", json=big, headers=auth(admin_token)).status_code == 200
