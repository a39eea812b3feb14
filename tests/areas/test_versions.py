"""Grid versions over real HTTP and PostGIS: a division draft, its review, activation in one
transaction (old grids closed, new opened, incidents re-linked, change report), and "as at" queries."""

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, box
from sqlalchemy import text
from typer.testing import CliRunner

from gridserver.areas.division.synthetic import synthetic_buildings

# Own codes (prefix 440188) so the shared small_city is untouched. One community of ~1.2 × 1.0 km
# with 4 old grids (quadrants) valid since 2025-01-01.
PREFIX = "440188"
STREET, COMM = "440188001", "440188001001"
AREA = box(113.300, 23.120, 113.3118, 23.129)
ROADS = [LineString([(113.3055, 23.1195), (113.3062, 23.1295)])]
OLD_FROM = "2025-01-01T00:00:00+08:00"


def _quadrants(g):
    x0, y0, x1, y1 = g.bounds
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    return [box(x0, ym, xm, y1), box(xm, ym, x1, y1), box(x0, y0, xm, ym), box(xm, y0, x1, ym)]


@pytest.fixture(scope="module")
def versioned_city(engine):
    rows = [("district", PREFIX, "测试区", None, AREA), ("street", STREET, "测试街道", PREFIX, AREA),
            ("community", COMM, "测试社区", STREET, AREA)]
    rows += [("grid", f"{COMM}{i + 1:03d}", f"测试社区第{i + 1:03d}网格", COMM, g) for i, g in enumerate(_quadrants(AREA))]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM admin_areas WHERE code LIKE :p || '%'"), {"p": PREFIX})
        for level, code, name, parent, g in rows:
            conn.execute(text(
                """INSERT INTO admin_areas (level, code, name, parent_code, geom, area_m2, source, valid_from)
                   VALUES (:l, :c, :n, :p, ST_Multi(ST_GeomFromText(:w, 4326)), 0, 'test', :f)"""),
                {"l": level, "c": code, "n": name, "p": parent, "w": g.wkt, "f": OLD_FROM})
    b = synthetic_buildings(AREA, ROADS, 300, seed=11)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(g), "properties": {"building_code": c, "households": int(h)}}
        for c, g, h in zip(b.codes, b.geoms, b.households)]}
    yield {"buildings": b, "fc": fc}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE source = 'test-versions'"))
        conn.execute(text("DELETE FROM admin_areas WHERE code LIKE :p || '%'"), {"p": PREFIX})


@pytest.fixture(scope="module")
def draft(http, auth, admin_token, versioned_city):
    r = http.post("/api/v1/grids/drafts", headers=auth(admin_token),
                  json={"area": STREET, "target_households": 250, "min": 150, "max": 400, "seed": 3,
                        "buildings": versioned_city["fc"]})
    assert r.status_code == 201, r.text
    return r.json()


def test_draft_report_compares_with_existing_grids(draft, versioned_city):
    rep = draft["report"]
    total = int(versioned_city["buildings"].households.sum())
    assert rep["proposed"]["households_total"] == rep["existing"]["households_total"] == total
    assert rep["existing"]["grids"] == 4
    assert rep["proposed"]["households_cv"] < rep["existing"]["households_cv"]
    assert rep["proposed"]["within_bounds"] == rep["proposed"]["grids"]
    for key in ("pp_mean", "boundary_on_roads", "buildings_per_grid_mean", "households_min", "households_max"):
        assert key in rep["proposed"] and key in rep["existing"]
    assert rep["communities"][0]["community"] == COMM


def test_draft_geojson_side_by_side(http, auth, admin_token, draft):
    r = http.get(f"/api/v1/grids/drafts/{draft['id']}", headers=auth(admin_token))
    assert r.status_code == 200, r.text
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["draft"]["status"] == "draft"
    codes = [f["properties"]["code"] for f in fc["features"]]
    assert codes == [f"{COMM}{i:03d}" for i in range(1, len(codes) + 1)]
    geoms = [shapely.geometry.shape(f["geometry"]) for f in fc["features"]]
    union = shapely.union_all(geoms)
    assert union.symmetric_difference(AREA).area < 1e-12
    cur = http.get(f"/api/v1/grids/drafts/{draft['id']}", params={"side": "current"}, headers=auth(admin_token)).json()
    assert [f["properties"]["code"] for f in cur["features"]] == [f"{COMM}{i:03d}" for i in range(1, 5)]
    assert sum(f["properties"]["households"] for f in cur["features"]) == \
        sum(f["properties"]["households"] for f in fc["features"])


def test_draft_needs_a_token_and_scope(http, auth, make_user, versioned_city, small_city):
    body = {"area": STREET, "buildings": versioned_city["fc"]}
    assert http.post("/api/v1/grids/drafts", json=body).status_code == 401
    other = make_user("street_operator", "440104001")
    r = http.post("/api/v1/grids/drafts", headers=auth(other), json=body)
    assert r.status_code == 403 and "outside your scope" in r.json()["detail"]
    worker = make_user("grid_worker", f"{COMM}001")
    assert http.post("/api/v1/grids/drafts", headers=auth(worker), json=body).status_code == 403


@pytest.mark.parametrize("change, status, fragment", [
    ({"min": 400}, 422, "min <= target <= max"),
    ({"area": "440188999"}, 404, "no current admin area"),
    ({"area": "12ab"}, 422, "district (6), street (9) or community (12)"),
    ({"respect": ["roads", "canals"]}, 422, "respect: unknown 'canals'"),
    ({"method": "magic"}, 422, "unknown division method"),
])
def test_bad_draft_requests_say_what_is_wrong(http, auth, admin_token, versioned_city, change, status, fragment):
    body = {"area": STREET, "buildings": versioned_city["fc"], **change}
    r = http.post("/api/v1/grids/drafts", headers=auth(admin_token), json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["detail"]


def test_bad_building_feature_is_named(http, auth, admin_token, versioned_city):
    fc = json.loads(json.dumps(versioned_city["fc"]))
    fc["features"][7]["properties"]["households"] = -3
    r = http.post("/api/v1/grids/drafts", headers=auth(admin_token), json={"area": STREET, "buildings": fc})
    assert r.status_code == 422 and "feature 7" in r.json()["detail"]


def test_activation_history_and_locate_at(http, auth, admin_token, engine, draft, versioned_city):
    # an open incident in old grid 001 (north-west quadrant) and a closed one
    pt = (113.3010, 23.1280)
    with engine.begin() as conn:
        ids = [conn.execute(text(
            """INSERT INTO incidents (category, description, status, geom, grid_code, community_code, street_code,
                                      district_code, source)
               VALUES ('other', 'test', :s, ST_SetSRID(ST_MakePoint(:x, :y), 4326), :g, :c, :st, :d, 'test-versions')
               RETURNING id"""),
            {"s": s, "x": pt[0], "y": pt[1], "g": f"{COMM}001", "c": COMM, "st": STREET, "d": PREFIX}).scalar_one()
            for s in ("reported", "closed")]
    before = http.get("/api/v1/locate", params={"lon": pt[0], "lat": pt[1]}).json()["grid"]["code"]
    assert before == f"{COMM}001"

    r = http.post(f"/api/v1/grids/drafts/{draft['id']}/activate", headers=auth(admin_token),
                  json={"effective_from": "2025-07-01"})
    assert r.status_code == 200, r.text
    rep = r.json()
    n_new = draft["report"]["proposed"]["grids"]
    assert rep["grids_closed"] == 4 and rep["grids_opened"] == n_new
    assert rep["effective_from"].startswith("2025-07-01")
    b = versioned_city["buildings"]
    assert 0 < rep["buildings"]["moved"] <= len(b)
    assert sum(p["count"] for p in rep["buildings"]["by_pair"]) == rep["buildings"]["moved"]
    assert rep["incidents"]["open"] == 1

    # current layout: the new grids; the incident's grid follows the point
    now = http.get("/api/v1/locate", params={"lon": pt[0], "lat": pt[1]}).json()
    with engine.connect() as conn:
        inc = conn.execute(text("SELECT id, grid_code FROM incidents WHERE id = ANY(:i) ORDER BY id"), {"i": ids}).all()
    assert inc[0].grid_code == now["grid"]["code"]
    assert inc[1].grid_code == f"{COMM}001"  # closed incidents keep their historic grid
    moved = now["grid"]["code"] != f"{COMM}001"
    assert rep["incidents"]["moved"] == int(moved)

    # as at 2025-06-30 the old quadrant answers, with its community chain
    old = http.get("/api/v1/locate", params={"lon": pt[0], "lat": pt[1], "at": "2025-06-30"})
    assert old.status_code == 200, old.text
    assert old.json()["grid"]["code"] == f"{COMM}001" and old.json()["community"]["code"] == COMM
    assert http.get("/api/v1/locate", params={"lon": pt[0], "lat": pt[1], "at": "2024-12-31"}).status_code == 404
    assert http.get("/api/v1/locate", params={"lon": pt[0], "lat": pt[1], "at": "30/06/2025"}).status_code == 422

    listing_old = http.get("/api/v1/areas", params={"parent": COMM, "at": "2025-06-30"}).json()
    assert [a["code"] for a in listing_old["items"]] == [f"{COMM}{i:03d}" for i in range(1, 5)]
    listing_now = http.get("/api/v1/areas", params={"parent": COMM}).json()
    assert listing_now["total"] == n_new
    assert http.get(f"/api/v1/areas/{COMM}004", params={"at": "2025-06-30", "geometry": True}).json()["geometry"]["type"] \
        == "MultiPolygon"

    # every building's draft grid is the grid covering its interior point now
    with engine.connect() as conn:
        assign = dict(conn.execute(text("SELECT building_code, grid_code FROM grid_draft_buildings WHERE draft_id = :d"),
                                   {"d": draft["id"]}).all())
    for code, p in list(zip(b.codes, b.points))[::25]:
        got = http.get("/api/v1/locate", params={"lon": repr(p.x), "lat": repr(p.y)}).json()["grid"]["code"]
        assert got == assign[code]

    topo = http.get("/api/v1/topology", params={"area": COMM}, headers=auth(admin_token)).json()
    assert topo["count"] == 0, topo

    hist = http.get("/api/v1/grids/history", params={"area": COMM}).json()["versions"]
    assert [h["grids"] for h in hist] == [n_new, 4]

    again = http.post(f"/api/v1/grids/drafts/{draft['id']}/activate", headers=auth(admin_token))
    assert again.status_code == 409 and "only a draft can be activated" in again.json()["detail"]
    assert http.get(f"/api/v1/grids/drafts/{draft['id']}", headers=auth(admin_token)).json()["draft"]["status"] == "active"


def test_stale_draft_is_refused_and_nothing_changes(http, auth, admin_token, engine, versioned_city):
    r = http.post("/api/v1/grids/drafts", headers=auth(admin_token),
                  json={"area": COMM, "buildings": versioned_city["fc"], "seed": 9})
    assert r.status_code == 201, r.text
    first, second = r.json()["id"], None
    r = http.post("/api/v1/grids/drafts", headers=auth(admin_token),
                  json={"area": COMM, "buildings": versioned_city["fc"], "seed": 10})
    second = r.json()["id"]
    assert http.post(f"/api/v1/grids/drafts/{first}/activate", headers=auth(admin_token)).status_code == 200
    with engine.connect() as conn:
        n_before = conn.execute(text("SELECT count(*) FROM admin_areas WHERE code LIKE :c || '%'"), {"c": COMM}).scalar_one()
    r = http.post(f"/api/v1/grids/drafts/{second}/activate", headers=auth(admin_token))
    assert r.status_code == 409 and "stale" in r.json()["detail"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM admin_areas WHERE code LIKE :c || '%'"), {"c": COMM}).scalar_one() \
            == n_before
    r = http.post(f"/api/v1/grids/drafts/{second}/activate", headers=auth(admin_token),
                  json={"effective_from": "2020-01-01"})
    assert r.status_code == 409  # stale comes first


def test_cli_divide_dry_run_and_bad_input(db_url, versioned_city, tmp_path):
    from gridserver.cli import app

    path = tmp_path / "buildings.geojson"
    path.write_text(json.dumps(versioned_city["fc"]))
    res = CliRunner().invoke(app, ["grids", "divide", "--area", COMM, "--buildings", str(path), "--dry-run", "--json",
                                   "--target-households", "250", "--min", "150", "--max", "400"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["draft_id"] is None
    assert out["report"]["proposed"]["households_total"] == int(np.sum(versioned_city["buildings"].households))
    bad = CliRunner().invoke(app, ["grids", "divide", "--area", COMM, "--buildings", str(path), "--min", "900"])
    assert bad.exit_code == 2
    assert "min <= target <= max" in bad.stderr


def test_proposal_reads_the_block_data_tables(http, auth, admin_token, engine, versioned_city):
    b = synthetic_buildings(AREA, ROADS, 60, seed=12)
    hh = np.minimum(b.households, 12)
    try:
        with engine.begin() as conn:
            for code, g, n in zip(b.codes, b.geoms, hh):
                conn.execute(text("INSERT INTO buildings (building_code, geom, source) "
                                  "VALUES (:c, ST_Multi(ST_GeomFromText(:w, 4326)), 'test-versions')"),
                             {"c": f"T{code}", "w": g.wkt})
                conn.execute(text("INSERT INTO households (household_code, building_code, source) "
                                  "SELECT :c || '-' || i, :c, 'test-versions' FROM generate_series(1, :n) i"),
                             {"c": f"T{code}", "n": int(n)})
        r = http.post("/api/v1/grids/drafts", headers=auth(admin_token),
                      json={"area": COMM, "target_households": 100, "min": 60, "max": 200})
        assert r.status_code == 201, r.text
        body = r.json()
        assert any("block-data tables" in n for n in body["notes"])
        assert body["report"]["proposed"]["households_total"] == int(hh.sum())
        assert body["report"]["proposed"]["buildings_total"] == len(b)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM households WHERE source = 'test-versions'"))
            conn.execute(text("DELETE FROM buildings WHERE source = 'test-versions'"))


@pytest.mark.parametrize("size_m, accepted", [(0.5, True), (20.0, False)])
def test_activation_absorbs_dust_but_refuses_a_real_gap(http, auth, admin_token, engine, versioned_city, size_m, accepted):
    """A draft whose grids leave a corner of the community uncovered: a sub-square-metre sliver (noding
    dust) goes to the neighbouring grid and the grids tile the community; a 400 m² hole is refused."""
    r = http.post("/api/v1/grids/drafts", headers=auth(admin_token),
                  json={"area": COMM, "buildings": versioned_city["fc"], "seed": 21})
    assert r.status_code == 201, r.text
    draft_id = r.json()["id"]
    x0, y0 = AREA.bounds[0], AREA.bounds[1]
    d = size_m / 102_000  # metres → degrees of longitude at 23°N (close enough for a corner notch)
    notch = box(x0, y0, x0 + d, y0 + size_m / 110_800)
    with engine.begin() as conn:
        conn.execute(text(
            """UPDATE grid_draft_grids SET geom = ST_Multi(ST_CollectionExtract(
                   ST_Difference(geom, ST_GeomFromText(:w, 4326)), 3))
               WHERE draft_id = :id AND ST_Intersects(geom, ST_GeomFromText(:w, 4326))"""),
            {"w": notch.wkt, "id": draft_id})
    r = http.post(f"/api/v1/grids/drafts/{draft_id}/activate", headers=auth(admin_token))
    if accepted:
        assert r.status_code == 200, r.text
        with engine.connect() as conn:
            uncovered = conn.execute(text(
                """SELECT ST_Area(ST_Transform(ST_Difference(c.geom, ST_Union(g.geom)), 4547))
                   FROM admin_areas c JOIN admin_areas g ON g.parent_code = c.code AND g.valid_to IS NULL
                   WHERE c.code = :c AND c.valid_to IS NULL GROUP BY c.geom"""), {"c": COMM}).scalar_one()
        assert uncovered < 0.01
    else:
        assert r.status_code == 422 and "topology" in r.json()["detail"], r.text
