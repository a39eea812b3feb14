"""Issues 8 + 10 follow-ups: streaming body limits on the attachment upload and the Open311 POST (and on
bodies the Idempotency-Key helper reads itself), Idempotency-Key on Open311, and multipart retries
with a new boundary replaying instead of failing."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from gridserver.db import idempotency
from raw_http import raw_chunked
from gridserver.limits import LIMIT_KEY

BASE = "/open311/v2"


def _jpeg(tag: bytes) -> bytes:
    """A minimal JPEG (magic bytes + end marker) whose content depends on ``tag``."""
    return b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + tag * 16 + b"\xff\xd9"


def _multipart(boundary: str, files: list[tuple[str, bytes]], note: str) -> bytes:
    out = b""
    for name, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{note}\r\n".encode()
    return out + f"--{boundary}--\r\n".encode()


def _route_extra(router, suffix: str) -> dict:
    from fastapi.routing import APIRoute

    return next(r.openapi_extra for r in router.routes
                if isinstance(r, APIRoute) and r.path.endswith(suffix) and "POST" in r.methods)


@pytest.fixture
def upload_limit_1mb(live_url):
    """The live app's attachment-upload limit lowered to 1 MB for one test (read per request)."""
    from gridserver.incidents.routes_workflow import router

    extra = _route_extra(router, "/attachments")
    old = extra[LIMIT_KEY]
    extra[LIMIT_KEY] = 1024 * 1024
    yield
    extra[LIMIT_KEY] = old


@pytest.fixture
def incident(http, auth, make_user, small_city):
    citizen = make_user("citizen")
    inc = http.post("/api/v1/incidents", headers=auth(citizen),
                    json={"lon": 113.255, "lat": 23.146, "category": "city_appearance_01", "description": "垃圾"})
    assert inc.status_code == 201, inc.text
    return citizen, inc.json()


@pytest.fixture(scope="module")
def api_key(engine, make_user, small_city):
    from gridserver.incidents.open311 import issue_key

    who = make_user("citizen")
    with engine.begin() as conn:
        return issue_key(conn, f"app-{who['username']}", who["username"])


def _attachments(engine, incident_id: int) -> int:
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM incident_attachments WHERE incident_id = :i"),
                         {"i": incident_id}).scalar()


def _keys(engine, key: str) -> int:
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": key}).scalar()


def _open311_rows(engine, description: str) -> int:
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM incidents WHERE description = :d"), {"d": description}).scalar()


# --- 1. streaming limits ---------------------------------------------------------------------------------
def test_chunked_attachment_upload_over_the_limit_is_413_and_stores_nothing(live_url, engine, auth, incident,
                                                                            upload_limit_1mb):
    citizen, inc = incident
    key = f"up-{uuid.uuid4()}"
    boundary = "gsupload"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"huge.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff\xd8\xff\xe0"
    sent, status, body = raw_chunked(
        live_url, f"/api/v1/incidents/{inc['id']}/attachments",
        {**auth(citizen), "Content-Type": f"multipart/form-data; boundary={boundary}", "Idempotency-Key": key},
        head, b"\x00" * 32768, 64 * 1024 * 1024)
    assert status == 413 and body["code"] == "body_too_large", body
    assert sent < 16 * 1024 * 1024, f"server read {sent:,} bytes before answering"
    assert _attachments(engine, inc["id"]) == 0 and _keys(engine, key) == 0
    # a body under the limit still goes through
    import httpx

    with httpx.Client(base_url=live_url, timeout=60) as c:
        ok = c.post(f"/api/v1/incidents/{inc['id']}/attachments", headers=auth(citizen),
                    files=[("files", ("ok.jpg", _jpeg(b"a"), "image/jpeg"))])
    assert ok.status_code == 201, ok.text
    assert _attachments(engine, inc["id"]) == 1


def test_chunked_open311_post_over_the_limit_is_413_and_stores_nothing(live_url, engine, api_key):
    from gridserver.incidents.open311 import POST_MAX_BODY

    desc = f"chunked-{uuid.uuid4().hex}"
    head = (f"api_key={api_key}&service_code=city_appearance_01&lat=23.146&long=113.255&description={desc}"
            f"&first_name=").encode()
    sent, status, body = raw_chunked(live_url, f"{BASE}/requests.json",
                                      {"Content-Type": "application/x-www-form-urlencoded"},
                                      head, b"a" * 16384, 64 * 1024 * 1024)
    assert status == 413 and body["code"] == "body_too_large", body
    assert str(POST_MAX_BODY) in body["detail"].replace(",", "")
    # what the client got out before the answer includes the kernel's socket buffers (a few MB)
    assert sent < 16 * 1024 * 1024, f"server read {sent:,} bytes before answering"
    assert _open311_rows(engine, desc) == 0


def test_body_read_by_the_idempotency_helper_is_limited(http, engine, api_key, monkeypatch):
    """Open311 reads its form itself, so with a key the helper reads the body first: under its own cap."""
    from gridserver.incidents.open311 import router

    extra = _route_extra(router, "/requests.{fmt}")
    monkeypatch.setitem(extra, LIMIT_KEY, 64 * 1024 * 1024)  # the route's own cap out of the way
    monkeypatch.setattr(idempotency, "MAX_BODY_BYTES", 64 * 1024)
    desc = f"idem-big-{uuid.uuid4().hex}"
    key = f"o311-{uuid.uuid4()}"

    def body():
        yield (f"api_key={api_key}&service_code=city_appearance_01&lat=23.146&long=113.255&description={desc}"
               f"&first_name=").encode()
        for _ in range(32):
            yield b"a" * 16384

    r = http.post(f"{BASE}/requests.json", content=body(),
                  headers={"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": key})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json()["code"] == "body_too_large", r.text[:300]
    assert "Idempotency-Key" in r.json()["detail"]
    assert _keys(engine, key) == 0 and _open311_rows(engine, desc) == 0


# --- 2. Idempotency-Key on Open311 POST ------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_open311_post_honours_idempotency_key(http, engine, api_key, fmt):
    desc = f"路灯不亮 {uuid.uuid4().hex}"
    key = f"o311-{uuid.uuid4()}"
    form = {"api_key": api_key, "service_code": "public_facility_01", "lat": "23.146", "long": "113.255",
            "description": desc}
    first = http.post(f"{BASE}/requests.{fmt}", data=form, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    again = http.post(f"{BASE}/requests.{fmt}", data=form, headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
    assert again.content == first.content and again.headers["content-type"] == first.headers["content-type"]
    assert _open311_rows(engine, desc) == 1 and _keys(engine, key) == 1
    # the same key for another request: refused (the spec's error list), nothing new
    other = http.post(f"{BASE}/requests.{fmt}", data={**form, "description": desc + "!"},
                      headers={"Idempotency-Key": key})
    assert other.status_code == 400 and "already used" in other.text
    assert _open311_rows(engine, desc + "!") == 0
    # without a key two posts are two requests
    for _ in range(2):
        assert http.post(f"{BASE}/requests.{fmt}", data={**form, "description": desc + "+"}).status_code == 200
    assert _open311_rows(engine, desc + "+") == 2


def test_open311_failed_post_keeps_no_key(http, engine, api_key):
    """An error answer must not leave the key claimed: the corrected retry with a new key works and the
    failed one can be repeated (same error, not 'unfinished')."""
    key = f"o311-{uuid.uuid4()}"
    form = {"api_key": api_key, "service_code": "no_such_item", "lat": "23.146", "long": "113.255",
            "description": f"x {uuid.uuid4().hex}"}
    for _ in range(2):
        r = http.post(f"{BASE}/requests.json", data=form, headers={"Idempotency-Key": key})
        assert r.status_code == 404 and "no_such_item" in r.json()[0]["description"], r.text
    assert _keys(engine, key) == 0


# --- 3. multipart fingerprint independent of the boundary -----------------------------------------------
def test_retried_upload_with_a_new_boundary_is_replayed(http, engine, auth, incident):
    citizen, inc = incident
    key = f"up-{uuid.uuid4()}"
    files = [("a.jpg", _jpeg(b"a")), ("b.jpg", _jpeg(b"b"))]
    url = f"/api/v1/incidents/{inc['id']}/attachments"

    def post(boundary, files=files, note="现场照片"):
        return http.post(url, content=_multipart(boundary, files, note),
                         headers={**auth(citizen), "Idempotency-Key": key,
                                  "Content-Type": f"multipart/form-data; boundary={boundary}"})

    first = post("----boundaryONE1111")
    assert first.status_code == 201, first.text
    again = post("xyz-another-boundary-2222")
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true", again.text
    assert again.json() == first.json()
    assert _attachments(engine, inc["id"]) == 2
    # same key, different file content / note / file order → a different request
    for changed in (post("b3", files=[("a.jpg", _jpeg(b"a")), ("b.jpg", _jpeg(b"c"))]),
                    post("b4", note="另一条说明"), post("b5", files=files[::-1])):
        assert changed.status_code == 422 and changed.json()["code"] == "idempotency_key_reused", changed.text
    assert _attachments(engine, inc["id"]) == 2
