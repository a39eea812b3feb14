"""A real OGC API – Features client: GDAL's OAPIF driver (Debian gdal-bin) reads /ogc end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("ogr2ogr") is None, reason="gdal-bin (ogr2ogr) not installed")


def _gdal(args, headers: dict | None = None):
    env = {**os.environ, "GDAL_HTTP_TIMEOUT": "60", "CPL_DEBUG": "OFF"}
    if headers:
        env["GDAL_HTTP_HEADERS"] = "\r\n".join(f"{k}: {v}" for k, v in headers.items())
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 0, p.stderr + p.stdout
    return p


def test_ogrinfo_lists_collections_and_reads_every_grid(live_url, small_city, tmp_path):
    p = _gdal(["ogrinfo", "-ro", f"OAPIF:{live_url}/ogc"])
    for layer in ("grids", "communities", "streets", "districts"):
        assert f": {layer}" in p.stdout
    out = tmp_path / "grids.geojson"
    # page size 3 forces GDAL to follow our next links through 6 pages
    _gdal(["ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{live_url}/ogc", "grids", "-oo", "PAGE_SIZE=3"])
    feats = json.loads(out.read_text())["features"]
    codes = [f["properties"]["code"] for f in feats]
    ours = {c for c, a in small_city.items() if a["level"] == "grid"}
    assert len(codes) == len(set(codes)) and set(codes) >= ours  # other tests may add grids elsewhere
    # a spatial filter sent as bbox
    out2 = tmp_path / "nw.geojson"
    _gdal(["ogr2ogr", "-f", "GeoJSON", str(out2), f"OAPIF:{live_url}/ogc", "grids",
           "-spat", "113.251", "23.143", "113.259", "23.149"])
    got = {f["properties"]["code"] for f in json.loads(out2.read_text())["features"]}
    assert got & set(small_city) == {"440104001001001"}


def test_gdal_reads_incidents_with_a_token(live_url, analytics_incidents, make_user, tmp_path):
    analyst = make_user("analyst")
    out = tmp_path / "inc.geojson"
    _gdal(["ogr2ogr", "-f", "GeoJSON", "-preserve_fid", str(out), f"OAPIF:{live_url}/ogc", "incidents",
           "-oo", "PAGE_SIZE=1000", "-where", "status = 'closed'"], headers={"Authorization": f"Bearer {analyst['token']}"})
    feats = json.loads(out.read_text())["features"]
    assert feats and all(f["properties"]["status"] == "closed" for f in feats)
    got = {int(f["id"]) for f in feats}
    want = set(analytics_incidents[analytics_incidents["status"] == "closed"]["id"])
    assert want <= got
