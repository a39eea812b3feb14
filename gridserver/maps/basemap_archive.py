"""The pre-built basemap: every public layer (roads, green/water, admin areas) of the city rendered once
into a single-file PMTiles archive under ``tiles/`` (``gridserver tiles build``), readable by any
PMTiles tool and served by gridserver at ``/tiles/basemap/{z}/{x}/{y}.mvt`` and ``/tiles/basemap.pmtiles``.
Live layers (incidents) stay dynamic.

Each archived tile holds several MVT layers (``roads``, ``landuse``, ``districts``…, plus the
``*_label`` layers), made by concatenating the per-layer tiles PostGIS returns (an MVT is a list of
layers, so concatenation is a valid tile).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import morecantile

from gridserver.maps import tiles

TMS = morecantile.tms.get("WebMercatorQuad")
ARCHIVE_NAME = "basemap.pmtiles"
DEFAULT_LAYERS = ("landuse", "roads", "districts", "streets", "communities", "grids")


def tiles_dir() -> Path:
    """Where archives live: ``$GRIDSERVER_TILES_DIR`` or ``./tiles``."""
    return Path(os.environ.get("GRIDSERVER_TILES_DIR") or "tiles")


def archive_path() -> Path:
    return tiles_dir() / ARCHIVE_NAME


@dataclass
class BuildReport:
    path: str
    tiles: int
    empty: int
    bytes: int
    minzoom: int
    maxzoom: int
    bounds: list[float]
    layers: list[str]


def build_archive(conn, out: Path, minzoom: int = 10, maxzoom: int = 16, layers=DEFAULT_LAYERS,
                  progress=None) -> BuildReport:
    """Render the public layers over the data's bounds into the PMTiles file ``out`` (replaced atomically)."""
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    for name in layers:
        spec = tiles.get_layer(name)
        if spec.name in tiles.PRIVATE_LAYERS:
            raise ValueError(f"layer {name!r} is private and never goes into a shared archive")
    ext = tiles.data_extents(conn)
    boxes = [e["bounds"] for k, e in ext.items() if k != "incident" and e["bounds"]]
    if not boxes:
        from gridserver.errors import InvalidInput

        raise InvalidInput("no admin areas in the database: nothing to build (run `gridserver demo` or import areas)")
    bounds = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    specs = [tiles.get_layer(n) for n in layers]
    todo = sorted((zxy_to_tileid(t.z, t.x, t.y), t) for z in range(minzoom, maxzoom + 1) for t in TMS.tiles(*bounds, [z]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    written = empty = size = 0
    with open(tmp, "wb") as f:
        writer = Writer(f)
        for i, (tid, t) in enumerate(todo):
            data = b"".join(tiles.render_tile(conn, s, t.z, t.x, t.y) for s in specs
                            if s.minzoom <= t.z <= s.maxzoom)
            if data:
                writer.write_tile(tid, data)
                written += 1
                size += len(data)
            else:
                empty += 1
            if progress:
                progress(i + 1, len(todo))
        e7 = lambda v: int(round(v * 10_000_000))  # noqa: E731
        header = {
            "tile_type": TileType.MVT, "tile_compression": Compression.NONE,
            "min_zoom": minzoom, "max_zoom": maxzoom,
            "min_lon_e7": e7(bounds[0]), "min_lat_e7": e7(bounds[1]), "max_lon_e7": e7(bounds[2]), "max_lat_e7": e7(bounds[3]),
            "center_zoom": min(maxzoom, max(minzoom, 13)),
            "center_lon_e7": e7((bounds[0] + bounds[2]) / 2), "center_lat_e7": e7((bounds[1] + bounds[3]) / 2),
        }
        vector_layers = []
        for s in specs:
            vector_layers.append({"id": s.name, "minzoom": s.minzoom, "maxzoom": s.maxzoom,
                                  "fields": {k: "String" for k in tiles._FIELDS[s.kind]}})
            if s.kind == "area":
                vector_layers.append({"id": f"{s.name}_label", "minzoom": tiles.label_minzoom(s), "maxzoom": s.maxzoom,
                                      "fields": {k: "String" for k in tiles._FIELDS[s.kind]}})
        writer.finalize(header, {"name": "gridserver basemap", "format": "pbf", "attribution": "gridserver; © OpenStreetMap contributors",
                                 "vector_layers": vector_layers, "description": "网格化管理底图 roads, green areas and admin areas"})
    os.replace(tmp, out)
    return BuildReport(str(out), written, empty, out.stat().st_size, minzoom, maxzoom, bounds, list(layers))


class Archive:
    """A read handle on a PMTiles file (memory-mapped), reopened when the file changes."""

    def __init__(self, path: Path):
        from pmtiles.reader import MmapSource, Reader

        self.path = path
        self.mtime = path.stat().st_mtime
        self._f = open(path, "rb")
        self.reader = Reader(MmapSource(self._f))
        self.header = self.reader.header()
        self.metadata = self.reader.metadata()

    def get(self, z: int, x: int, y: int) -> bytes:
        return self.reader.get(z, x, y) or b""


_open: dict[str, Archive] = {}


def open_archive() -> Archive | None:
    """The current archive, or None when none has been built."""
    path = archive_path()
    if not path.is_file():
        return None
    a = _open.get(str(path))
    if a is None or a.mtime != path.stat().st_mtime:
        a = _open[str(path)] = Archive(path)
    return a


def metadata_json(a: Archive) -> str:
    return json.dumps(a.metadata, ensure_ascii=False)
