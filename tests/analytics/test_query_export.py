"""POST /api/v1/query (regions in any CRS, counts, streamed features) and exports opened with geopandas."""

from __future__ import annotations

import io
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import Point, box, mapping

from gridserver.geo.crs import wgs84_to_bd09, wgs84_to_gcj02

FROM, TO = "2026-03-01T00:00:00Z", "2026-05-01T00:00:00Z"


@pytest.fixture(scope="module")
def analyst(make_user):
    return make_user("analyst")


def _ids(r):
    assert r.status_code == 200, r.text
    return {f["id"] for f in r.json()["features"]}


def _pts(df):
    return gpd.GeoDataFrame(df, geometry=[Point(x, y) for x, y in zip(df["lon"], df["lat"])], crs="EPSG:4326")


def test_region_polygon_in_any_crs(http, analyst, auth, analytics_incidents):
    df = _pts(analytics_incidents)
    poly = shapely.Polygon([(113.255, 23.125), (113.28, 23.128), (113.275, 23.145), (113.258, 23.14)])
    want = set(df[df.intersects(poly)]["id"])
    assert 20 < len(want) < len(df)
    base = {"layer": "incidents", "from": FROM, "to": TO}
    r = http.post("/api/v1/query", headers=auth(analyst), json={**base, "region": {"geometry": mapping(poly)}})
    assert _ids(r) == want and r.json()["input_crs"] == "wgs84"
    for name, fwd in (("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09)):
        moved = shapely.transform(poly, lambda c: np.column_stack(fwd(c[:, 0], c[:, 1])))
        feature = {"type": "Feature", "properties": {}, "geometry": mapping(moved)}
        r = http.post("/api/v1/query", headers=auth(analyst), json={**base, "crs": name, "region": {"geometry": feature}})
        got = _ids(r)
        # the round trip moves vertices by < 1e-7°: only points within a hair of the edge could differ
        near = set(df[df.to_crs(4547).distance(gpd.GeoSeries([poly.boundary], crs=4326).to_crs(4547)[0]) < 0.2]["id"])
        assert got ^ want <= near and r.json()["input_crs"] == name
    r = http.post("/api/v1/query", headers=auth(analyst), json={**base, "output": "count", "region": {"geometry": mapping(poly)}})
    assert r.json() == {"layer": "incidents", "count": len(want), "input_crs": "wgs84"}


def test_region_bbox_area_grids_radius(http, analyst, auth, analytics_incidents, small_city):
    df = _pts(analytics_incidents)
    h = auth(analyst)
    base = {"layer": "incidents", "from": FROM, "to": TO, "output": "count"}
    b = [113.26, 23.13, 113.285, 23.148]
    r = http.post("/api/v1/query", headers=h, json={**base, "region": {"bbox": b}})
    assert r.json()["count"] == int(df.intersects(box(*b)).sum())
    r = http.post("/api/v1/query", headers=h, json={**base, "region": {"area": "440104003"}})
    assert r.json()["count"] == int(df.intersects(small_city["440104003"]["geom"]).sum())
    grids = ["440104001001001", "440104003002004"]
    r = http.post("/api/v1/query", headers=h, json={**base, "region": {"grids": grids}})
    u = shapely.union_all([small_city[g]["geom"] for g in grids])
    assert r.json()["count"] == int(df.intersects(u).sum())
    centre, radius = (113.27, 23.135), 900.0
    dist = Geod(ellps="WGS84").inv(np.full(len(df), centre[0]), np.full(len(df), centre[1]), df["lon"], df["lat"])[2]
    r = http.post("/api/v1/query", headers=h, json={**base, "region": {"point": list(centre), "radius": radius}})
    want = int((dist <= radius).sum())
    assert 0 < want < len(df)
    assert abs(r.json()["count"] - want) <= int((np.abs(dist - radius) < 1).sum())
    # grids layer by region: the grids touching the box
    r = http.post("/api/v1/query", headers=h, json={"layer": "grids", "region": {"bbox": [113.251, 23.121, 113.259, 23.126]}})
    assert _ids(r) & set(small_city) == {"440104001002003"}


def test_bad_regions_say_what(http, analyst, auth):
    h = auth(analyst)
    cases = [
        ({"layer": "incidents", "region": {}}, 422, "exactly one"),
        ({"layer": "incidents", "region": {"bbox": [1, 2, 3]}}, 422, "bbox"),
        ({"layer": "incidents", "region": {"area": "999999"}}, 404, "999999"),
        ({"layer": "incidents", "region": {"grids": ["440104001001001", "440104009009009"]}}, 404, "440104009009009"),
        ({"layer": "incidents", "region": {"point": [113.27, 23.13]}}, 422, "radius"),
        ({"layer": "incidents", "region": {"geometry": {"type": "Point", "coordinates": [1, 2]}}}, 422, "Polygon"),
        ({"layer": "incidents", "region": {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}}, 422, "valid"),
        ({"layer": "incidents", "crs": "EPSG:99999", "region": {"bbox": [1, 2, 3, 4]}}, 422, "EPSG:99999"),
        ({"layer": "people"}, 404, "people"),
        ({"layer": "incidents", "format": "shp"}, 422, "format"),
    ]
    for body, status, word in cases:
        r = http.post("/api/v1/query", headers=h, json=body)
        assert r.status_code == status, (body, r.text)
        assert word in r.json()["detail"], (body, r.json())
    assert http.post("/api/v1/query", json={"layer": "grids"}).status_code == 401


def test_ndjson_stream_and_scope(http, make_user, auth, analytics_incidents):
    street = make_user("street_operator", "440104001")
    with http.stream("POST", "/api/v1/query?format=ndjson", headers=auth(street),
                     json={"layer": "incidents", "from": FROM, "to": TO}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        assert r.headers["x-input-crs"] == "wgs84"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    want = set(analytics_incidents[analytics_incidents["street_code"] == "440104001"]["id"])
    assert {f["id"] for f in lines} == want
    assert all("description" not in f["properties"] for f in lines)


@pytest.mark.parametrize("fmt", ["geojson", "csv", "parquet", "gpkg"])
def test_exports_open_in_geopandas(http, analyst, auth, analytics_incidents, tmp_path, fmt):
    r = http.post(f"/api/v1/query?format={fmt}", headers=auth(analyst),
                  json={"layer": "incidents", "from": FROM, "to": TO, "region": {"area": "440104001"}})
    assert r.status_code == 200, r.text
    path = tmp_path / f"out.{fmt}"
    path.write_bytes(r.content)
    if fmt == "csv":
        raw = pd.read_csv(io.BytesIO(r.content))
        got = gpd.GeoDataFrame(raw, geometry=gpd.GeoSeries.from_wkt(raw["wkt"]), crs="EPSG:4326")
    elif fmt == "parquet":
        got = gpd.read_parquet(path)
    else:
        got = gpd.read_file(path, fid_as_index=fmt == "geojson")
        if fmt == "geojson":  # GeoJSON's feature id becomes GDAL's FID
            got["id"] = got.index
    want = analytics_incidents[analytics_incidents["street_code"] == "440104001"].set_index("id")
    assert sorted(got["id"].astype(int)) == sorted(want.index)
    assert got.crs.to_epsg() == 4326
    got = got.set_index(got["id"].astype(int))
    assert np.allclose(got.geometry.x.sort_index(), want["lon"].sort_index(), atol=1e-7)
    assert (got["category"].sort_index() == want["category"].sort_index()).all()


def test_cli_export(db_url, analytics_incidents, tmp_path):
    from typer.testing import CliRunner

    from gridserver.cli import app

    want = analytics_incidents[analytics_incidents["grid_code"] == "440104003001002"]
    assert len(want) > 0
    for fmt in ("parquet", "gpkg"):
        out = tmp_path / f"grid.{fmt}"
        args = ["export", "--layer", "incidents", "--region", '{"grids": ["440104003001002"]}',
                "--from", "2026-03-01", "--to", "2026-05-01", "--out", str(out)]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        got = gpd.read_parquet(out) if fmt == "parquet" else gpd.read_file(out)
        assert sorted(got["id"].astype(int)) == sorted(want["id"])
        assert f"{len(want)} features" in r.output
    bad = CliRunner().invoke(app, args[:-2] + ["--out", str(tmp_path / "x.shp")])
    assert bad.exit_code == 2 and "format" in bad.output
