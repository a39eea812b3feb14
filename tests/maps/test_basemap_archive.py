"""``gridserver tiles build`` → one PMTiles file, readable by the pmtiles library and served by gridserver."""

from __future__ import annotations

import mapbox_vector_tile
import morecantile
import pytest
from typer.testing import CliRunner

from gridserver.cli import app

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
def archive_dir(tmp_path, monkeypatch, small_city, db_url):
    monkeypatch.setenv("GRIDSERVER_TILES_DIR", str(tmp_path))
    return tmp_path


def test_build_writes_an_archive_that_gridserver_serves(archive_dir, http):
    assert http.get("/tiles/basemap/14/13346/7109.mvt").status_code == 404  # not built yet
    r = CliRunner().invoke(app, ["tiles", "build", "--minzoom", "12", "--maxzoom", "14"])
    assert r.exit_code == 0, r.output
    path = archive_dir / "basemap.pmtiles"
    assert path.is_file() and "tiles" in r.output

    from pmtiles.reader import MmapSource, Reader

    with open(path, "rb") as f:
        reader = Reader(MmapSource(f))
        header, meta = reader.header(), reader.metadata()
        assert (header["min_zoom"], header["max_zoom"]) == (12, 14)
        assert {"grids", "grids_label", "roads", "landuse"} <= {l["id"] for l in meta["vector_layers"]}
        t = TMS.tile(113.255, 23.146, 14)
        data = reader.get(14, t.x, t.y)
    tile = mapbox_vector_tile.decode(data)
    assert "440104001001001" in {f["properties"]["code"] for f in tile["grids"]["features"]}
    assert "districts" in tile and "streets" in tile

    served = http.get(f"/tiles/basemap/14/{t.x}/{t.y}.mvt")
    assert served.status_code == 200 and served.content == data
    assert served.headers["cache-control"].startswith("public")
    raw = http.get("/tiles/basemap.pmtiles")
    assert raw.status_code == 200 and raw.content[:7] == b"PMTiles"
    assert http.get("/tiles/basemap/14/0/0.mvt").status_code == 204


def test_incidents_never_go_into_the_archive(archive_dir):
    r = CliRunner().invoke(app, ["tiles", "build", "--layers", "grids,incidents", "--minzoom", "12", "--maxzoom", "12"])
    assert r.exit_code == 2 and "private" in r.output
    r = CliRunner().invoke(app, ["tiles", "build", "--minzoom", "14", "--maxzoom", "12"])
    assert r.exit_code == 2
