"""Incident tiles: a token is required, each caller sees only what they may read, and crowded tiles
arrive as clusters whose counts add up exactly to the incidents underneath (issue 8 + issue 11)."""

from __future__ import annotations

from collections import Counter

import mapbox_vector_tile
import morecantile
import pytest
from sqlalchemy import text

from gridserver.maps import tiles

TMS = morecantile.tms.get("WebMercatorQuad")
BBOX = (113.2501, 23.1201, 113.2899, 23.1499)  # the small city
DENSE_N = 12_000  # over the west street (113.25–113.27): > POINT_LIMIT per z15 tile
SOURCE = "dense_tile_test"


@pytest.fixture(scope="module")
def dense(engine, small_city, make_user):
    """DENSE_N incidents spread over the small city (deterministic), each located to its grid in SQL.

    A citizen reported the first 10; returns that citizen and the per-grid counts."""
    citizen = make_user("citizen")
    with engine.begin() as conn:
        conn.execute(text("SELECT setseed(0.42)"))
        conn.execute(text(
            """INSERT INTO incidents (category, description, status, geom, source, reporter_id)
               SELECT (CAST(:cats AS text[]))[1 + floor(random() * :ncat)::int],
                      'dense', (ARRAY['reported','dispatched','closed'])[1 + floor(random() * 3)::int],
                      ST_SetSRID(ST_MakePoint(113.2501 + random() * 0.0198, 23.1201 + random() * 0.0298), 4326),
                      :src, CASE WHEN g <= 10 THEN :cid END
               FROM generate_series(1, :n) g"""),
            {"cats": list(tiles.CATEGORY_COLORS), "ncat": len(tiles.CATEGORY_COLORS), "src": SOURCE, "n": DENSE_N, "cid": citizen["id"]})
        conn.execute(text(
            """UPDATE incidents i SET grid_code = a.code
               FROM admin_areas a
               WHERE i.source = :src AND a.level = 'grid' AND a.valid_to IS NULL AND ST_Covers(a.geom, i.geom)"""),
            {"src": SOURCE})
        conn.execute(text("ANALYZE incidents"))
        per_grid = dict(conn.execute(text(
            "SELECT grid_code, count(*) FROM incidents WHERE source = :src GROUP BY 1"), {"src": SOURCE}).all())
        per_cat = dict(conn.execute(text(
            "SELECT category, count(*) FROM incidents WHERE source = :src GROUP BY 1"), {"src": SOURCE}).all())
    yield {"citizen": citizen, "per_grid": per_grid, "per_category": per_cat}
    _delete_dense(engine)


def _delete_dense(engine):
    """Remove the dense set quickly: rows referencing it first, then the incidents without per-row FK checks
    (``incidents.merged_into`` has no index, so the self-reference check would scan the table per row)."""
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM incidents WHERE source = :src"), {"src": SOURCE})]
        children = conn.execute(text(
            """SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
               WHERE c.contype = 'f' AND c.confrelid = 'incidents'::regclass AND c.conrelid <> 'incidents'::regclass""")).all()
        for table, column in children:
            conn.execute(text(f'DELETE FROM {table} WHERE "{column}" = ANY(:ids)'), {"ids": ids})
        conn.execute(text("UPDATE incidents SET merged_into = NULL WHERE merged_into = ANY(:ids)"), {"ids": ids})
        if conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("DELETE FROM incidents WHERE id = ANY(:ids)"), {"ids": ids})


def _count_in(engine, prefix: str) -> int:
    """Incidents whose grid lies under ``prefix``, whoever made them (other modules share the database)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM incidents WHERE grid_code LIKE :p || '%'"), {"p": prefix}).scalar()


def _tiles(z):
    return list(TMS.tiles(*BBOX, [z]))


def _fetch(http, t, headers, **params):
    return http.get(f"/tiles/incidents/{t.z}/{t.x}/{t.y}.mvt", headers=headers, params=params)


def _decode(r):
    return mapbox_vector_tile.decode(r.content) if r.status_code == 200 else {}


def test_incident_tile_needs_a_token(http, small_city):
    t = _tiles(14)[0]
    r = http.get(f"/tiles/incidents/{t.z}/{t.x}/{t.y}.mvt")
    assert r.status_code == 401
    assert "token" in r.json()["detail"]
    bad = http.get(f"/tiles/incidents/{t.z}/{t.x}/{t.y}.mvt", headers={"Authorization": "Bearer forged.token.x"})
    assert bad.status_code == 401


def test_area_tiles_stay_public(http, small_city):
    t = _tiles(14)[0]
    r = http.get(f"/tiles/grids/{t.z}/{t.x}/{t.y}.mvt")
    assert r.status_code == 200
    assert r.headers["cache-control"].startswith("public")


def test_layers_json_tells_strangers_nothing_about_incidents(http, engine, dense, auth, admin_token, make_user):
    anon = {l["id"]: l for l in http.get("/tiles/layers.json").json()["layers"]}
    assert anon["incidents"]["count"] is None and anon["incidents"]["bounds"] is None
    assert anon["incidents"]["requires_token"] is True and anon["incidents"]["public"] is False
    assert anon["grids"]["count"] >= 16 and anon["grids"]["public"] is True
    admin = {l["id"]: l for l in http.get("/tiles/layers.json", headers=auth(admin_token)).json()["layers"]}
    assert admin["incidents"]["count"] >= DENSE_N
    worker = make_user("grid_worker", "440104001001001")
    mine = {l["id"]: l for l in http.get("/tiles/layers.json", headers=auth(worker)).json()["layers"]}
    # other test modules may have left incidents in this grid: count what the database holds now
    assert mine["incidents"]["count"] == _count_in(engine, "440104001001001") >= dense["per_grid"]["440104001001001"]
    x0, y0, x1, y1 = mine["incidents"]["bounds"]
    gx0, gy0, gx1, gy1 = (113.25, 23.1425, 113.26, 23.15)  # grid 001 of community 440104001001
    assert gx0 - 1e-9 <= x0 and x1 <= gx1 + 1e-9 and gy0 - 1e-9 <= y0 and y1 <= gy1 + 1e-9


def test_private_caching_only(http, dense, auth, admin_token):
    t = _tiles(16)[len(_tiles(16)) // 2]
    r = _fetch(http, t, auth(admin_token))
    assert r.status_code == 200
    assert r.headers["cache-control"].startswith("private")
    assert "authorization" in r.headers["vary"].lower()


def _visible_ids(http, headers, z=16):
    """Ids of every point in every z16 tile over the city, for one caller."""
    ids = []
    for t in _tiles(z):
        d = _decode(_fetch(http, t, headers))
        assert "incidents_cluster" not in d, "z16 tiles of the small city hold points"
        ids += [(f["properties"]["id"], f["properties"]["grid_code"]) for f in d.get("incidents", {}).get("features", [])]
    return ids


def test_scoped_staff_sees_only_their_scope(http, engine, dense, make_user, auth):
    worker = make_user("community_operator", "440104001002")
    seen = _visible_ids(http, auth(worker))
    assert seen, "the community operator sees the incidents of its community"
    assert all(g.startswith("440104001002") for _, g in seen)
    expected = _count_in(engine, "440104001002")
    assert expected >= sum(n for g, n in dense["per_grid"].items() if g and g.startswith("440104001002"))
    # points within the tile buffer show in two tiles: count distinct ids
    assert len({i for i, _ in seen}) == expected


def test_citizen_sees_only_their_own(http, dense, auth):
    seen = {i for i, _ in _visible_ids(http, auth(dense["citizen"]))}
    assert len(seen) == 10


@pytest.mark.parametrize("z", [10, 12, 13, 14])
def test_city_zoom_tiles_are_clusters_that_add_up(http, dense, auth, admin_token, z):
    total, by_cat, biggest = 0, Counter(), 0
    for t in _tiles(z):
        r = _fetch(http, t, auth(admin_token), status=None)
        d = _decode(r)
        biggest = max(biggest, len(r.content))
        assert "incidents" not in d, f"no single points at z{z}"
        for f in d.get("incidents_cluster", {}).get("features", []):
            p = f["properties"]
            assert p["count"] >= 1 and 0 <= p["open"] <= p["count"]
            cats = {k[2:]: v for k, v in p.items() if k.startswith("c_")}
            stats = {k[2:]: v for k, v in p.items() if k.startswith("s_")}
            assert sum(cats.values()) == p["count"] == sum(stats.values())
            assert p["open"] == p["count"] - sum(stats.get(s, 0) for s in tiles.CLOSED_STATUSES)
            assert p["top_category"] in cats and cats[p["top_category"]] == max(cats.values())
            total += p["count"]
            by_cat.update(cats)
    # every incident counts exactly once; others in the database (other tests) may add to it
    assert total >= DENSE_N
    for cat, n in dense["per_category"].items():
        assert by_cat[cat] >= n
    assert biggest < 50_000, f"largest z{z} tile is {biggest} bytes"


def test_crowded_deep_tile_is_clustered_not_truncated(http, dense, auth, admin_token):
    # a full z15 tile over the west street holds ~2,000 > POINT_LIMIT incidents
    counts, clustered = [], 0
    for t in _tiles(15):
        r = _fetch(http, t, auth(admin_token))
        d = _decode(r)
        assert len(r.content) < 50_000
        if "incidents_cluster" in d:
            clustered += 1
            counts.append(sum(f["properties"]["count"] for f in d["incidents_cluster"]["features"]))
        else:
            counts.append(len(d.get("incidents", {}).get("features", [])))
            assert counts[-1] <= tiles.POINT_LIMIT * 1.2  # + points in the tile buffer
    assert clustered >= 1, "crowded z15 tiles arrive as clusters"
    assert sum(counts) >= DENSE_N
