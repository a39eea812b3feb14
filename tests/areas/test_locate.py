"""GET /api/v1/locate: point → grid, community, street, district, in every input CRS."""

import numpy as np
import pytest
import shapely

from gridserver.geo.crs import wgs84_to_bd09, wgs84_to_gcj02


def _truth(city, lon, lat):
    """Exact ground truth with the documented rule: covering grid with the smallest code."""
    pt = shapely.Point(lon, lat)
    hits = sorted(c for c, a in city.items() if a["level"] == "grid" and a["geom"].covers(pt))
    return hits[0] if hits else None


def test_interior_point_returns_whole_chain(http, small_city):
    r = http.get("/api/v1/locate", params={"lon": 113.255, "lat": 23.145})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grid"]["code"] == "440104001001001"
    assert body["community"] == {"code": "440104001001", "name": "洪桥北社区"}
    assert body["street"]["code"] == "440104001"
    assert body["district"] == {"code": "440104", "name": "越秀区"}
    assert body["input_crs"] == "wgs84"


@pytest.mark.parametrize("crs", ["wgs84", "cgcs2000", "gcj02", "bd09"])
def test_random_points_match_shapely_in_each_crs(http, small_city, crs):
    rng = np.random.default_rng(7)
    lon = rng.uniform(113.249, 113.291, 150)
    lat = rng.uniform(23.119, 23.151, 150)
    x, y = {"gcj02": wgs84_to_gcj02, "bd09": wgs84_to_bd09}.get(crs, lambda a, b: (a, b))(lon, lat)
    for xi, yi, lo, la in zip(np.atleast_1d(x), np.atleast_1d(y), lon, lat):
        expected = _truth(small_city, lo, la)
        r = http.get("/api/v1/locate", params={"lon": repr(float(xi)), "lat": repr(float(yi)), "crs": crs})
        if expected is None:
            assert r.status_code == 404, (lo, la, r.text)
        else:
            assert r.status_code == 200, r.text
            # GCJ/BD inverse is exact to ~1e-8°; only points within that of an edge could differ
            assert r.json()["grid"]["code"] == expected, (crs, lo, la)


def test_shared_edge_and_vertex_go_to_smallest_code(http, small_city):
    # vertical edge between grid 001 and 002 of the first community
    r = http.get("/api/v1/locate", params={"lon": 113.26, "lat": 23.145})
    assert r.json()["grid"]["code"] == "440104001001001"
    # the vertex shared by four grids of community 440104001001 and by the street boundary
    r = http.get("/api/v1/locate", params={"lon": 113.27, "lat": 23.135})
    assert r.json()["grid"]["code"] == _truth(small_city, 113.27, 23.135) == "440104001001004"


def test_outside_point_is_404_with_message(http, small_city):
    r = http.get("/api/v1/locate", params={"lon": 113.40, "lat": 23.13})
    assert r.status_code == 404
    body = r.json()
    assert body["code"] == "outside_area"
    assert "outside every grid" in body["detail"]


@pytest.mark.parametrize("params,needle", [
    ({"lon": "abc", "lat": 23.1}, "lon"),
    ({"lon": 200, "lat": 23.1}, "between -180 and 180"),
    ({"lon": 113.2, "lat": 95}, "between -90 and 90"),
    ({"lon": 113.2, "lat": 23.1, "crs": "mars-2"}, "unknown coordinate system"),
])
def test_bad_input_is_422_saying_what(http, small_city, params, needle):
    r = http.get("/api/v1/locate", params=params)
    assert r.status_code == 422
    assert needle in r.json()["detail"]


def test_projected_crs_input(http, small_city):
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 4547, always_xy=True).transform(113.285, 23.125)
    r = http.get("/api/v1/locate", params={"lon": x, "lat": y, "crs": "EPSG:4547"})
    assert r.status_code == 200, r.text
    assert r.json()["grid"]["code"] == _truth(small_city, 113.285, 23.125)
