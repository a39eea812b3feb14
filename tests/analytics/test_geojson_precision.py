"""Polygons stay valid in GeoJSON although coordinates go out rounded to 7 decimals (~1 cm)."""

from __future__ import annotations

import json

import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text

CODE = "440104099099001"  # far from the small city (113.25–113.29E): no test that counts grids sees it
# a notch whose tip is 4e-8° above the bottom edge: valid, but rounded to 7 decimals the tip lands on it
RING = [(113.40, 23.30), (113.41, 23.30), (113.41, 23.31), (113.405, 23.31), (113.405, 23.30000004),
        (113.404, 23.31), (113.40, 23.31), (113.40, 23.30)]


@pytest.fixture
def notched_grid(engine):
    wkt = "MULTIPOLYGON(((" + ", ".join(f"{x} {y}" for x, y in RING) + ")))"
    with engine.begin() as conn:
        conn.execute(text("""INSERT INTO admin_areas (level, code, name, parent_code, geom, area_m2, source)
                             VALUES ('grid', :c, '缺口网格', NULL, ST_GeomFromText(:w, 4326),
                                     ST_Area(ST_Transform(ST_GeomFromText(:w, 4326), 4547)), 'test')"""),
                     {"c": CODE, "w": wkt})
        stored_ok, rounded = conn.execute(text(
            "SELECT ST_IsValid(geom), ST_AsGeoJSON(geom, 7) FROM admin_areas WHERE code = :c"), {"c": CODE}).one()
    assert stored_ok and not shape(json.loads(rounded)).is_valid  # the case is real: plain rounding breaks it
    yield CODE
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM admin_areas WHERE code = :c"), {"c": CODE})


def test_served_polygons_are_valid_after_rounding(http, notched_grid):
    served = {
        "ogc item": http.get(f"/ogc/collections/grids/items/{notched_grid}").json()["geometry"],
        "ogc item lat/lon": http.get(f"/ogc/collections/grids/items/{notched_grid}",
                                     params={"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"}).json()["geometry"],
        "ogc items": next(f["geometry"] for f in http.get(
            "/ogc/collections/grids/items", params={"bbox": "113.399,23.299,113.411,23.311"}).json()["features"]
            if f["id"] == notched_grid),
        "area": http.get(f"/api/v1/areas/{notched_grid}", params={"geometry": "true"}).json()["geometry"],
    }
    for where, geom in served.items():
        g = shape(geom)
        assert g.is_valid, f"{where}: {shapely.is_valid_reason(g)}"
        assert abs(g.area - shape({"type": "Polygon", "coordinates": [RING]}).area) < 1e-9, where
        assert all(len(f"{c:.10f}".rstrip("0").split(".")[1]) <= 7 for c in shapely.get_coordinates(g).ravel())
