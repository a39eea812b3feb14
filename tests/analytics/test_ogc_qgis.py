"""A real OGC API – Features client: QGIS's OAPIF provider (Debian python3-qgis, headless) reads /ogc."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

SYSTEM_PY = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("qgis_oapif.py")


def _has_qgis() -> bool:
    try:
        return subprocess.run([SYSTEM_PY, "-c", "import qgis.core"], capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_qgis(), reason="python3-qgis (Debian) not installed")


def qgis_read(url: str, collection: str, *args) -> dict:
    p = subprocess.run([SYSTEM_PY, str(SCRIPT), url, collection, *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_qgis_loads_grids_pages_through_them_and_filters_by_box(live_url, small_city):
    """Page size 3 makes QGIS follow our next links; a rectangle filter is sent as bbox; fields keep their types."""
    got = qgis_read(f"{live_url}/ogc", "grids", 3, 113.251, 23.143, 113.259, 23.149)
    assert got["valid"], got["error"]
    assert got["crs"] == "EPSG:4326" and got["geometry_type"] == 2  # polygons
    ours = {c for c, a in small_city.items() if a["level"] == "grid"}
    codes = got["codes"]
    assert len(codes) == len(set(codes)) == got["count"] and set(codes) >= ours  # other tests may add grids
    assert got["valid_geometries"] == got["count"]
    assert got["in_box"] == ["440104001001001"]
    x0, y0, x1, y1 = got["extent"]
    assert x0 <= 113.25 + 1e-9 and y0 <= 23.12 + 1e-9 and x1 >= 113.29 - 1e-9 and y1 >= 23.15 - 1e-9
    assert got["fields"]["code"].lower() == "string" and got["fields"]["area_m2"].lower() in {"double", "real"}


@pytest.mark.parametrize("collection,level", [("streets", "street"), ("communities", "community")])
def test_qgis_reads_the_admin_levels(live_url, small_city, collection, level):
    got = qgis_read(f"{live_url}/ogc", collection)
    assert got["valid"], got["error"]
    assert {c for c, a in small_city.items() if a["level"] == level} <= set(got["codes"])


def test_qgis_reports_an_unknown_collection_as_invalid(live_url):
    got = qgis_read(f"{live_url}/ogc", "no_such_layer")
    assert not got["valid"]
