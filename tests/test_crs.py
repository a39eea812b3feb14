"""GCJ-02 / BD-09 conversions against published reference pairs, plus pyproj-backed CRS names."""

import numpy as np
import pytest

from gridserver.errors import UnknownCRS
from gridserver.geo import crs

# Reference pairs published with the widely used eviltransform / coordtransform implementations
# (Tiananmen, Beijing) and Baidu's own conversion API examples.
WGS_GCJ = [((116.397428, 39.90923), (116.40367163, 39.91063351))]
GCJ_BD = [((116.404, 39.915), (116.41036949, 39.92133699))]


@pytest.mark.parametrize("wgs,gcj", WGS_GCJ)
def test_wgs84_to_gcj02_reference(wgs, gcj):
    assert np.allclose(crs.wgs84_to_gcj02(*wgs), gcj, atol=1e-6)


@pytest.mark.parametrize("gcj,bd", GCJ_BD)
def test_gcj02_to_bd09_reference(gcj, bd):
    assert np.allclose(crs.gcj02_to_bd09(*gcj), bd, atol=1e-6)
    assert np.allclose(crs.bd09_to_gcj02(*bd), gcj, atol=1e-5)


def test_round_trips_are_centimetre_exact():
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(73, 135, 10000), rng.uniform(18, 53, 10000)
    back = crs.gcj02_to_wgs84(*crs.wgs84_to_gcj02(lon, lat))
    assert np.abs(back[0] - lon).max() < 1e-7 and np.abs(back[1] - lat).max() < 1e-7
    back = crs.bd09_to_wgs84(*crs.wgs84_to_bd09(lon, lat))
    assert np.abs(back[0] - lon).max() < 1e-7 and np.abs(back[1] - lat).max() < 1e-7


def test_gcj_offset_in_guangzhou_is_hundreds_of_metres():
    glon, glat = crs.wgs84_to_gcj02(113.27, 23.13)
    assert 0.004 < glon - 113.27 < 0.007 and -0.004 < glat - 23.13 < -0.001


def test_outside_china_unchanged():
    assert crs.wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)


@pytest.mark.parametrize("name,canon", [(None, "wgs84"), ("WGS84", "wgs84"), ("EPSG:4326", "wgs84"),
                                         ("EPSG:4490", "cgcs2000"), ("GCJ-02", "gcj02"), ("bd09", "bd09"),
                                         ("EPSG:4547", "EPSG:4547")])
def test_normalize_crs(name, canon):
    assert crs.normalize_crs(name) == canon


def test_unknown_crs_message_lists_choices():
    with pytest.raises(UnknownCRS, match="gcj02"):
        crs.normalize_crs("EPSG:999999")


def test_projected_to_wgs84_via_pyproj():
    x, y = crs.to_wgs84(np.array([425500.0]), np.array([2559000.0]), "EPSG:4547")
    assert 113 < x[0] < 114 and 23 < y[0] < 23.2
