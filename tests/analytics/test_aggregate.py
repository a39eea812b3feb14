"""GET /api/v1/aggregate against an independent geopandas computation on the same rows."""

from __future__ import annotations

import geopandas as gpd
import h3
import pandas as pd
import pytest
from shapely.geometry import shape
from sqlalchemy import text

FROM, TO = "2026-03-01T00:00:00Z", "2026-05-01T00:00:00Z"


@pytest.fixture(scope="module")
def analyst(make_user):
    return make_user("analyst")


@pytest.fixture(scope="module")
def points(engine, analytics_incidents):
    """The incidents of the window as a GeoDataFrame, read straight from PostGIS."""
    with engine.connect() as conn:
        return gpd.read_postgis(text(
            "SELECT id, category, status, created_at, geom FROM incidents "
            "WHERE created_at >= :a AND created_at < :b"), conn, geom_col="geom", params={"a": FROM, "b": TO})


@pytest.fixture(scope="module")
def areas(engine, small_city):
    with engine.connect() as conn:
        return gpd.read_postgis(text("SELECT code, level, geom FROM admin_areas WHERE valid_to IS NULL"), conn,
                                geom_col="geom")


def _covering(points, polys):
    """Each point's covering polygon; on shared edges the smallest code (the documented boundary rule)."""
    j = gpd.sjoin(points, polys[["code", "geom"]], predicate="covered_by", how="inner")
    return j.sort_values("code").groupby("id").first()


@pytest.mark.parametrize("level", ["grid", "community", "street", "district"])
def test_counts_by_area_match_geopandas(http, analyst, auth, points, areas, level):
    r = http.get("/api/v1/aggregate", headers=auth(analyst),
                 params={"layer": "incidents", "by": level, "from": FROM, "to": TO})
    assert r.status_code == 200, r.text
    got = {b["key"]: b["count"] for b in r.json()["buckets"]}
    if level == "grid":
        want = _covering(points, areas[areas.level == "grid"])["code"].value_counts().to_dict()
    else:
        grid_of = _covering(points, areas[areas.level == "grid"])["code"]
        n = {"community": 12, "street": 9, "district": 6}[level]
        want = grid_of.str[:n].value_counts().to_dict()
        # and the spatial join at that level agrees with the code prefix (grids tile their parents)
        direct = _covering(points, areas[areas.level == level])["code"].value_counts().to_dict()
        assert sum(direct.values()) == sum(want.values())
    assert got == want
    assert r.json()["total"] == len(points)
    names = {b["key"]: b["name"] for b in r.json()["buckets"]}
    assert all(names.values())


@pytest.mark.parametrize("res", [7, 9, 10])
def test_counts_by_h3_match_geopandas(http, analyst, auth, points, res):
    r = http.get("/api/v1/aggregate", headers=auth(analyst),
                 params={"by": f"h3:{res}", "from": FROM, "to": TO, "geometry": "true"})
    assert r.status_code == 200, r.text
    buckets = r.json()["buckets"]
    cells = gpd.GeoDataFrame({"code": [b["key"] for b in buckets], "count": [b["count"] for b in buckets]},
                             geometry=[shape(b["geometry"]) for b in buckets], crs="EPSG:4326")
    # independent check: every point falls in exactly one returned cell polygon, counts agree
    j = gpd.sjoin(points, cells, predicate="within", how="left")
    assert j["code"].notna().all() and j["id"].is_unique
    assert j["code"].value_counts().to_dict() == dict(zip(cells["code"], cells["count"]))
    want = pd.Series([h3.latlng_to_cell(p.y, p.x, res) for p in points.geometry]).value_counts().to_dict()
    assert dict(zip(cells["code"], cells["count"])) == want
    assert all(h3.get_resolution(c) == res for c in cells["code"])
    if res == 9:  # the same buckets as GeoJSON, readable by GIS tools
        g = http.get("/api/v1/aggregate", headers=auth(analyst),
                     params={"by": "h3:9", "from": FROM, "to": TO, "format": "geojson"})
        assert g.headers["content-type"].startswith("application/geo+json")
        fc = gpd.GeoDataFrame.from_features(g.json()["features"], crs="EPSG:4326")
        assert dict(zip(fc["key"], fc["count"])) == want and fc.geometry.geom_type.eq("Polygon").all()


@pytest.mark.parametrize("bucket,freq", [("day", "D"), ("week", "W-SUN"), ("month", "M")])
def test_time_buckets_and_category(http, analyst, auth, points, areas, bucket, freq):
    cat = sorted(points["category"].unique())[0]
    r = http.get("/api/v1/aggregate", headers=auth(analyst),
                 params={"by": "street", "from": FROM, "to": TO, "bucket": bucket, "category": cat})
    assert r.status_code == 200, r.text
    got = {(b["key"], b["period"]): b["count"] for b in r.json()["buckets"]}
    sel = points[points["category"] == cat].copy()
    sel["street"] = _covering(sel, areas[areas.level == "grid"])["code"].reindex(sel["id"]).str[:9].to_numpy()
    local = pd.to_datetime(sel["created_at"], utc=True).dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    sel["period"] = local.dt.to_period(freq).dt.start_time.dt.date.astype(str)
    want = sel.groupby(["street", "period"]).size().to_dict()
    assert got == want


def test_bad_parameters(http, analyst, auth, make_user):
    h = auth(analyst)
    for params, word in (({"by": "h3:12"}, "resolution"), ({"by": "parish"}, "by"), ({"bucket": "year"}, "bucket"),
                         ({"from": "last week"}, "from"), ({"layer": "grids"}, "point layer")):
        r = http.get("/api/v1/aggregate", headers=h, params=params)
        assert r.status_code == 422, params
        assert word in r.json()["detail"]
    assert http.get("/api/v1/aggregate").status_code == 401
    assert http.get("/api/v1/aggregate", headers=auth(make_user("citizen"))).status_code == 403


def test_staff_aggregates_only_their_scope(http, make_user, auth, analytics_incidents):
    street = make_user("street_operator", "440104003")
    r = http.get("/api/v1/aggregate", headers=auth(street), params={"by": "street", "from": FROM, "to": TO})
    assert [b["key"] for b in r.json()["buckets"]] == ["440104003"]
    assert r.json()["total"] == int((analytics_incidents["street_code"] == "440104003").sum())
