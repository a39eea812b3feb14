"""POST /api/v1/locate over real HTTP against the small test city in a real PostGIS.

Expected answers come from the fixture's own shapely geometries (covers, smallest code wins),
never from the code under test.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import shapely
from shapely.geometry import box

from gridserver.geo.crs import wgs84_to_bd09, wgs84_to_gcj02

FIELDS = ("grid_code", "community_code", "street_code", "district_code")


@pytest.fixture(scope="module")
def stored(engine, small_city):
    """The small city's grid geometries exactly as stored (the loader writes WKT at 6 decimals)."""
    from sqlalchemy import text as sql

    with engine.connect() as conn:
        rows = conn.execute(sql("SELECT code, ST_AsBinary(geom) FROM admin_areas "
                                "WHERE level = 'grid' AND valid_to IS NULL AND code LIKE '440104%'")).all()
    return {code: shapely.from_wkb(bytes(wkb)) for code, wkb in rows if code in small_city}


def expected(small_city, lon, lat, stored) -> list[dict]:
    """Brute-force answer from the stored geometries: covers, smallest code first."""
    out = []
    pts = shapely.points(np.asarray(lon, float), np.asarray(lat, float))
    hit = np.full(len(pts), None, dtype=object)
    for code in sorted(stored):  # ascending code: the first covering grid is the smallest code
        m = np.array([h is None for h in hit]) & shapely.covers(stored[code], pts)
        hit[m] = code
    for code in hit:
        if code is None:
            out.append(dict.fromkeys(FIELDS))
        else:
            community = small_city[code]["parent_code"]
            street = small_city[community]["parent_code"]
            out.append({"grid_code": code, "community_code": community, "street_code": street,
                        "district_code": small_city[street]["parent_code"]})
    return out


def ndjson(resp) -> list[dict]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in resp.text.splitlines()]


def sample_points(stored):
    """Each grid's centre and its (stored) vertices, a point on a shared edge, and points outside."""
    lon, lat = [], []
    for code in sorted(stored):
        c = stored[code].centroid
        lon.append(c.x)
        lat.append(c.y)
        for x, y in shapely.get_coordinates(stored[code])[:-1]:
            lon.append(x)
            lat.append(y)
    lon += [113.27, 113.26, 113.0, 113.3]  # 113.27 is the street boundary; the last two are outside
    lat += [23.13, 23.135, 23.13, 23.16]
    return lon, lat


def test_json_list_matches_brute_force(http, small_city, stored):
    lon, lat = sample_points(stored)
    body = [{"id": f"p{i}", "lon": x, "lat": y} for i, (x, y) in enumerate(zip(lon, lat))]
    rows = ndjson(http.post("/api/v1/locate", json=body))
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(len(lon))]
    assert [{f: r[f] for f in FIELDS} for r in rows] == expected(small_city, lon, lat, stored)
    assert rows[-1]["grid_code"] is None and rows[-2]["grid_code"] is None
    # A shared edge between 440104001 (west) and 440104003 (east) goes to the smaller code.
    assert rows[-4]["street_code"] == "440104001"


def test_points_object_with_crs_and_default_ids(http, small_city, stored):
    rng = np.random.default_rng(1)
    lon = rng.uniform(113.245, 113.295, 500)
    lat = rng.uniform(23.115, 23.155, 500)
    glon, glat = wgs84_to_gcj02(lon, lat)
    body = {"crs": "gcj02", "points": [{"lon": x, "lat": y} for x, y in zip(glon.tolist(), glat.tolist())]}
    rows = ndjson(http.post("/api/v1/locate", json=body))
    assert [r["id"] for r in rows] == list(range(1, 501))  # no ids given: 1-based row numbers
    want = expected(small_city, lon, lat, stored)
    # GCJ-02 → WGS84 is iterative (~1e-7°): allow disagreement only for points right at an edge.
    edges = shapely.boundary(shapely.union_all([a["geom"] for a in small_city.values() if a["level"] == "grid"]))
    near = shapely.distance(edges, shapely.points(lon, lat)) < 1e-6
    got = [{f: r[f] for f in FIELDS} for r in rows]
    assert all(g == w for g, w, n in zip(got, want, near) if not n)
    assert sum(1 for g in got if g["grid_code"]) > 100


def test_csv_body_with_query_crs_and_csv_output(http, small_city, stored):
    lon, lat = sample_points(stored)
    blon, blat = wgs84_to_bd09(np.array(lon), np.array(lat))
    text = "id,lon,lat\n" + "".join(f"r{i},{x!r},{y!r}\n" for i, (x, y) in enumerate(zip(blon.tolist(), blat.tolist())))
    resp = http.post("/api/v1/locate?crs=bd09&format=csv", content=text, headers={"content-type": "text/csv"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(len(lon))]
    got = [{f: (r[f] or None) for f in FIELDS} for r in rows]
    want = expected(small_city, lon, lat, stored)
    # Centres (every 5th point starting at 0) are far from edges: exact agreement after BD-09 round trip.
    centres = [i for i in range(0, 16 * 5, 5)]
    assert [got[i] for i in centres] == [want[i] for i in centres]
    assert got[-1] == dict.fromkeys(FIELDS)


def test_accept_header_selects_csv(http, small_city, stored):
    resp = http.post("/api/v1/locate", json=[{"id": 7, "lon": 113.255, "lat": 23.145},
                                             {"id": 'x,"y"', "lon": 113.0, "lat": 23.0}],
                     headers={"accept": "text/csv"})
    assert resp.status_code == 200
    assert resp.text.splitlines() == ["id,grid_code,community_code,street_code,district_code",
                                      "7,440104001001001,440104001001,440104001,440104",
                                      '"x,""y""",,,,']
    assert list(csv.reader(io.StringIO(resp.text)))[2] == ['x,"y"', "", "", "", ""]


def test_csv_upload_with_per_row_crs(http, small_city, stored):
    lon = [113.255, 113.285, 113.265, 113.275]
    lat = [23.145, 23.145, 23.125, 23.125]
    glon, glat = (v.tolist() for v in wgs84_to_gcj02(np.array(lon), np.array(lat)))
    lines = ["id,lon,lat,crs",
             f"a,{lon[0]},{lat[0]},wgs84",
             f"b,{glon[1]!r},{glat[1]!r},gcj02",
             f"c,{lon[2]},{lat[2]},",
             f"d,{glon[3]!r},{glat[3]!r},GCJ-02"]
    files = {"file": ("points.csv", "\n".join(lines).encode(), "text/csv")}
    rows = ndjson(http.post("/api/v1/locate", files=files))
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert [{f: r[f] for f in FIELDS} for r in rows] == expected(small_city, lon, lat, stored)


def test_geojson_body_and_upload(http, small_city, stored):
    lon, lat = sample_points(stored)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": i, "properties": {"name": f"点{i}"},
         "geometry": {"type": "Point", "coordinates": [x, y]}} for i, (x, y) in enumerate(zip(lon, lat))]}
    want = expected(small_city, lon, lat, stored)
    rows = ndjson(http.post("/api/v1/locate", content=json.dumps(fc),
                            headers={"content-type": "application/geo+json"}))
    assert [r["id"] for r in rows] == list(range(len(lon)))
    assert [{f: r[f] for f in FIELDS} for r in rows] == want
    files = {"file": ("pts.geojson", json.dumps(fc).encode(), "application/octet-stream")}
    rows = ndjson(http.post("/api/v1/locate", files=files, data={"crs": "wgs84"}))
    assert [{f: r[f] for f in FIELDS} for r in rows] == want


def test_many_points_in_order(http, small_city, stored, admin_token, auth):
    rng = np.random.default_rng(5)
    n = 200_000
    lon = rng.uniform(113.24, 113.30, n)
    lat = rng.uniform(23.11, 23.16, n)
    # Snap a third of them onto the 0.005° lattice the grid edges lie on (shared edges and corners).
    snap = rng.random(n) < 0.33
    lon[snap] = 113.25 + np.round((lon[snap] - 113.25) / 0.005) * 0.005
    lat[snap] = 23.12 + np.round((lat[snap] - 23.12) / 0.0075) * 0.0075
    buf = io.StringIO()
    np.savetxt(buf, np.column_stack([np.arange(n), lon, lat]), fmt=["%d", "%.17g", "%.17g"], delimiter=",",
               header="id,lon,lat", comments="")
    resp = http.post("/api/v1/locate", content=buf.getvalue(),  # > 10,000 points need a token
                     headers={"content-type": "text/csv", **auth(admin_token)})
    rows = ndjson(resp)
    assert len(rows) == n
    assert [r["id"] for r in rows[:3]] == ["0", "1", "2"] and rows[-1]["id"] == str(n - 1)
    got = [r["grid_code"] for r in rows]
    want = [w["grid_code"] for w in expected(small_city, lon, lat, stored)]
    assert got == want
    assert 0.2 < sum(g is not None for g in got) / n < 0.9


@pytest.mark.parametrize(
    "content, ctype, fragment",
    [
        ("id,lon,lat\na,113.26,23.13\nb,113.27,23.13\nc,abc,23.13\n", "text/csv", "row 3: 'lon'"),
        ("id,lon,lat\na,113.26,23.13\nb,113.27,\n", "text/csv", "row 2: missing 'lat'"),
        ("id,lon,y_coord\na,113.26,23.13\n", "text/csv", "no 'lat' column"),
        (json.dumps([{"lon": 113.26, "lat": 23.13}, {"lon": 113.27}]), "application/json", "row 2: missing 'lat'"),
        (json.dumps([{"lon": 113.26, "lat": 23.13}, {"lon": "東", "lat": 23.1}]), "application/json",
         "row 2: 'lon' is not a finite number"),
        (json.dumps([{"lon": 113.26, "lat": 23.13}, [113.2, 23.1]]), "application/json", "row 2: expected an object"),
        (json.dumps([{"lon": 213.26, "lat": 23.13}]), "application/json", "row 1: 'lon' must be between"),
        (json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}]}),
         "application/geo+json", "feature 1: geometry must be a Point"),
        ("{not json", "application/json", "not valid JSON"),
        ("", "text/csv", "empty"),
    ],
)
def test_invalid_input_names_row_and_column(http, small_city, stored, content, ctype, fragment):
    resp = http.post("/api/v1/locate", content=content, headers={"content-type": ctype})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["code"] == "invalid_input"
    assert fragment in body["detail"], body["detail"]


def test_unknown_crs(http, small_city, stored):
    resp = http.post("/api/v1/locate?crs=mars-local", json=[{"lon": 113.26, "lat": 23.13}])
    assert resp.status_code == 422 and resp.json()["code"] == "unknown_crs"
    text = "id,lon,lat,crs\na,113.26,23.13,wgs84\nb,113.26,23.13,bogus84\n"
    resp = http.post("/api/v1/locate", content=text, headers={"content-type": "text/csv"})
    assert resp.status_code == 422 and resp.json()["code"] == "unknown_crs"
    assert "row 2" in resp.json()["detail"]


def test_projected_crs(http, small_city, stored):
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True)
    x, y = t.transform([113.255, 113.285], [23.145, 23.125])
    rows = ndjson(http.post("/api/v1/locate?crs=EPSG:4547", json=[{"lon": x[0], "lat": y[0]}, {"lon": x[1], "lat": y[1]}]))
    assert [r["grid_code"] for r in rows] == ["440104001001001", "440104003002004"]


def test_too_many_points(http, small_city, stored, admin_token, auth):
    text = "lon,lat\n" + "113.26,23.13\n" * 1_000_001
    resp = http.post("/api/v1/locate", content=text, headers={"content-type": "text/csv", **auth(admin_token)})
    assert resp.status_code == 413
    assert "1,000,000" in resp.json()["detail"]


def test_untyped_bodies_are_sniffed(http, small_city, stored):
    """curl --data-binary @file sends application/x-www-form-urlencoded: CSV or JSON is recognised."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    rows = ndjson(http.post("/api/v1/locate", content="id,lon,lat\nq,113.285,23.125\n", headers=form))
    assert rows == [{"id": "q", "grid_code": "440104003002004", "community_code": "440104003002",
                     "street_code": "440104003", "district_code": "440104"}]
    rows = ndjson(http.post("/api/v1/locate", content='[{"lon": 113.285, "lat": 23.125}]', headers=form))
    assert rows[0]["grid_code"] == "440104003002004" and rows[0]["id"] == 1


def test_unsupported_media_type(http, small_city, stored):
    resp = http.post("/api/v1/locate", content=b"<points/>", headers={"content-type": "application/xml"})
    assert resp.status_code == 415


def test_index_reloads_when_areas_change(http, small_city, stored, engine):
    """A grid added after a first request is seen by the next one (areas_revision changed)."""
    from sqlalchemy import text as sql

    from conftest import load_areas

    probe = [{"id": "new", "lon": 113.305, "lat": 23.135}]
    assert ndjson(http.post("/api/v1/locate", json=probe))[0]["grid_code"] is None
    extra = dict(level="grid", code="440104009001001", name="测试新网格", parent_code="440104009001",
                 geom=box(113.30, 23.13, 113.31, 23.14))
    load_areas(engine, [extra])
    try:
        row = ndjson(http.post("/api/v1/locate", json=probe))[0]
        # No community/street rows exist for it: parents come from the code prefixes.
        assert row == {"id": "new", "grid_code": "440104009001001", "community_code": "440104009001",
                       "street_code": "440104009", "district_code": "440104"}
    finally:
        with engine.begin() as conn:
            conn.execute(sql("DELETE FROM admin_areas WHERE code = '440104009001001'"))
    assert ndjson(http.post("/api/v1/locate", json=probe))[0]["grid_code"] is None
