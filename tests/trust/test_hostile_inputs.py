"""Hostile input: each case is a clear 4xx (or an empty answer) that changes nothing.

* the three server errors schemathesis found (reverse geocode far away, huge offsets);
* SQL-injection strings in every string query/path parameter the OpenAPI document lists;
* geometries with 10⁶ vertices, self-intersections, NaN coordinates (area import, locate);
* zip bombs and wrong-type uploads to the area import;
* forged, tampered, ``alg: none`` and expired tokens.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "address"))
from address_data import address_base  # noqa: E402,F401  (fixture: a small standard address base)

INJECTIONS = ["' OR '1'='1", "'; DROP TABLE admin_areas; --", "%' UNION SELECT username, password_hash FROM users --"]

FINGERPRINT = """SELECT (SELECT count(*) FROM admin_areas), (SELECT count(*) FROM incidents),
                        (SELECT count(*) FROM users), (SELECT count(*) FROM std_addresses),
                        (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),
                        (SELECT md5(string_agg(code || md5(ST_AsBinary(geom)), ',' ORDER BY code)) FROM admin_areas)"""


def fingerprint(engine):
    with engine.connect() as c:
        return tuple(c.execute(text(FINGERPRINT)).one())


@pytest.fixture(scope="module")
def admin(make_user):
    return make_user("admin")


# --- the three schemathesis finds -----------------------------------------------------------------

def test_reverse_geocode_far_outside_the_metric_zone_is_an_empty_answer(http, address_base):
    r = http.get("/api/v1/address/reverse", params={"lat": 0.0, "lon": 15.0, "level": "road"})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == []


@pytest.mark.parametrize("path", ["/api/v1/address/review", "/api/v1/areas", "/api/v1/incidents"])
@pytest.mark.parametrize("offset", ["89853089019546320896", "33488360169861823948377817088", "-1"])
def test_huge_or_negative_offsets_are_422_naming_the_parameter(http, auth, admin, path, offset):
    r = http.get(path, params={"offset": offset}, headers=auth(admin))
    assert r.status_code == 422, r.text
    assert "offset" in r.json()["detail"]


# --- SQL injection in every string parameter ------------------------------------------------------

def _string_params(spec: dict):
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if not op or any(t.startswith("text/event-stream")
                         for t in op.get("responses", {}).get("200", {}).get("content", {})):
            continue
        for p in op.get("parameters", []):
            schema = p.get("schema", {})
            types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
            if "string" in types and p["in"] in ("query", "path"):
                yield path, p["name"], p["in"], op.get("parameters", [])


def _fill(path: str, name: str | None = None, value: str | None = None) -> str:
    defaults = {"code": "440104001001001", "layer": "grids", "z": "14", "x": "13346", "y": "7109"}

    def sub(m):
        if m.group(1) == name:
            return quote(value, safe="")
        return defaults.get(m.group(1), "1")

    return re.sub(r"\{(\w+)(:path)?\}", sub, path)


def test_sql_injection_in_any_string_parameter_is_harmless(http, auth, admin, engine, small_city, address_base):
    spec = http.get("/openapi.json").json()
    before = fingerprint(engine)
    checked = 0
    for path, name, where, params in _string_params(spec):
        required = {p["name"]: {"lon": "113.255", "lat": "23.145", "q": "越秀"}.get(p["name"], "1")
                    for p in params if p["in"] == "query" and p.get("required")}
        for payload in INJECTIONS:
            if where == "path":
                r = http.get(_fill(path, name, payload), params=required, headers=auth(admin))
            else:
                r = http.get(_fill(path), params={**required, name: payload}, headers=auth(admin))
            checked += 1
            assert r.status_code < 500, (path, name, payload, r.status_code, r.text[:300])
            assert "$2b$" not in r.text, (path, name)  # no password hash leaked (the payload itself may be echoed)
    assert checked > 40
    assert fingerprint(engine) == before


@pytest.mark.parametrize("path, param", [("/api/v1/areas", "parent"), ("/api/v1/incidents", "reporter"),
                                         ("/api/v1/incidents", "grid"), ("/api/v1/address/review", "source")])
def test_an_injected_filter_matches_nothing_rather_than_everything(http, auth, admin, small_city, path, param):
    r = http.get(path, params={param: "' OR '1'='1"}, headers=auth(admin))
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json()["total"] == 0


def test_injection_in_a_report_is_stored_as_text(http, auth, admin, small_city, engine):
    cat = http.get("/api/v1/incidents/categories").json()
    cat = (cat["items"] if isinstance(cat, dict) else cat)[0]["code"]
    desc = "'); DELETE FROM incidents; --"
    before = fingerprint(engine)
    r = http.post("/api/v1/incidents", json={"lon": 113.255, "lat": 23.145, "category": cat, "description": desc},
                  headers=auth(admin))
    assert r.status_code == 201, r.text
    assert http.get(f"/api/v1/incidents/{r.json()['id']}", headers=auth(admin)).json()["description"] == desc
    after = fingerprint(engine)
    assert after[1] == before[1] + 1 and after[0] == before[0]


def test_injection_as_a_username_is_just_a_failed_login(http):
    r = http.post("/api/v1/auth/token", data={"username": "admin' --", "password": "x' OR '1'='1"})
    assert r.status_code in (401, 429), r.text


# --- geometries -----------------------------------------------------------------------------------

def _upload(http, auth, admin, name: str, content: bytes, level: str = "grid"):
    return http.post("/api/v1/areas/import", files={"file": (name, content)}, data={"level": level},
                     headers=auth(admin))


def _feature(coords, code="440104001001901"):
    return {"type": "Feature", "properties": {"code": code, "name": "恶意网格", "parent_code": "440104001001"},
            "geometry": {"type": "Polygon", "coordinates": [coords]}}


def _collection(*features) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


def test_an_area_with_a_million_vertices_is_refused(http, auth, admin, small_city, engine, tmp_path):
    import geopandas as gpd
    import numpy as np
    import shapely

    t = np.linspace(0, 2 * np.pi, 1_000_000, endpoint=False)
    ring = np.column_stack([113.255 + 0.002 * np.cos(t), 23.145 + 0.002 * np.sin(t)])
    gdf = gpd.GeoDataFrame({"code": ["440104001001901"], "name": ["恶意网格"], "parent_code": ["440104001001"]},
                           geometry=[shapely.Polygon(ring)], crs="EPSG:4326")
    gdf.to_file(tmp_path / "huge.shp", engine="pyogrio")  # binary: quick to write and to read
    archive = _zip({f.name: f.read_bytes() for f in tmp_path.glob("huge.*")})
    before = fingerprint(engine)
    r = _upload(http, auth, admin, "huge.zip", archive)
    assert r.status_code == 422, r.text[:500]
    assert "1,000,001 vertices" in r.json()["detail"] and "440104001001901" in r.json()["detail"]
    assert fingerprint(engine) == before


def test_a_self_intersecting_area_is_refused_naming_it(http, auth, admin, small_city, engine):
    bowtie = [[113.251, 23.141], [113.254, 23.144], [113.254, 23.141], [113.251, 23.144], [113.251, 23.141]]
    before = fingerprint(engine)
    r = _upload(http, auth, admin, "bowtie.geojson", _collection(_feature(bowtie)))
    assert r.status_code == 422, r.text
    assert "Self-intersection" in r.json()["detail"] and "440104001001901" in r.json()["detail"]
    assert fingerprint(engine) == before


def test_nan_coordinates_are_refused(http, auth, admin, small_city, engine):
    ring = [[113.251, 23.141], [float("nan"), 23.144], [113.254, 23.141], [113.251, 23.141]]
    before = fingerprint(engine)
    r = _upload(http, auth, admin, "nan.geojson", _collection(_feature(ring)))  # json writes a bare NaN
    assert r.status_code == 422, r.text
    assert fingerprint(engine) == before
    for params in ({"lon": "nan", "lat": "23.1"}, {"lon": "113.2", "lat": "inf"}):
        r = http.get("/api/v1/locate", params=params)
        assert r.status_code == 422, r.text
    r = http.post("/api/v1/locate", content=b'[{"id": 1, "lon": NaN, "lat": 23.1}]',
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text


# --- uploads --------------------------------------------------------------------------------------

def _zip(members: dict[str, bytes | int]) -> bytes:
    """A zip; an int member is that many zero bytes, streamed in (a bomb compresses ~1000:1)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            if isinstance(content, int):
                with zf.open(name, "w", force_zip64=True) as f:
                    chunk = bytes(1 << 20)
                    for _ in range(content >> 20):
                        f.write(chunk)
            else:
                zf.writestr(name, content)
    return buf.getvalue()


def test_a_zip_bomb_is_refused_before_it_is_unpacked(http, auth, admin, small_city, engine):
    bomb = _zip({"grids.shp": 64 << 20, "grids.shx": b"\0" * 100, "grids.dbf": b"\0" * 100})
    assert len(bomb) < 200_000
    before = fingerprint(engine)
    r = _upload(http, auth, admin, "grids.zip", bomb)
    assert r.status_code == 422, r.text
    assert "zip bomb" in r.json()["detail"]
    assert fingerprint(engine) == before


@pytest.mark.parametrize("name, content, says", [
    ("grids.zip", b"this is not a zip archive at all", "not a readable .zip"),
    ("grids.geojson", b"\x89PNG\r\n\x1a\n" + bytes(200), "cannot read"),
    ("grids.exe", b"MZ\x90\x00", "unsupported upload"),
    ("grids.gpkg", b"SQLite format 3\x00" + bytes(100), "cannot read"),
    ("grids.zip", _zip({"readme.txt": b"no shapefile in here"}), "cannot read"),
])
def test_wrong_type_uploads_are_422_saying_why(http, auth, admin, small_city, engine, name, content, says):
    before = fingerprint(engine)
    r = _upload(http, auth, admin, name, content)
    assert r.status_code == 422, r.text
    assert says in r.json()["detail"]
    assert fingerprint(engine) == before


# --- tokens ---------------------------------------------------------------------------------------

def _claims(admin) -> dict:
    return {"sub": admin["username"], "ver": 0, "iat": 1_700_000_000, "exp": 4_100_000_000}


def test_forged_tampered_unsigned_and_expired_tokens_are_401(http, admin):
    from gridserver.auth.security import create_access_token

    header, payload, sig = admin["token"].split(".")
    tampered_payload = jwt.utils.base64url_encode(json.dumps({**_claims(admin), "sub": "root"}).encode()).decode()
    tokens = {
        "forged": jwt.encode(_claims(admin), "not-the-server-secret-" + "x" * 40, algorithm="HS256"),
        "tampered": f"{header}.{tampered_payload}.{sig}",
        "alg none": jwt.encode(_claims(admin), None, algorithm="none"),
        "expired": create_access_token(admin["username"], expires_delta=timedelta(seconds=-30)),
        "garbage": "a.b.c",
    }
    for what, token in tokens.items():
        r = http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), what
        r = http.post("/api/v1/users", headers={"Authorization": f"Bearer {token}"},
                      json={"username": f"evil_{what.replace(' ', '_')}", "password": "Evil-pass-123456", "role": "admin"})
        assert r.status_code == 401, (what, r.text)
    assert http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {admin['token']}"}).status_code == 200
