"""The demo city: district → 街道 → 社区 → 网格 polygons for Yuexiu (越秀区, 440104).

Streets (街道) are the real OSM polygons; communities (社区) get the real NBS 2023 names and
codes; neither communities nor grids have public polygons, so they are derived (see
``gridserver.demo.partition``): each street is cut along its major roads (trunk, primary,
secondary, tertiary) into its real number of communities, then each community along those plus
residential roads into grids. Grids are allotted to communities in proportion to area, at least
3 each, 1893 in all (the district's published count). When the shared data is absent the same
code path runs on ``synthetic.synthetic_city``.

Codes: a street's real communities, sorted by code, are given to its regions in reading order;
a grid's 15-digit code is its community code plus a 3-digit sequence (001, 002, …) in reading
order within the community. Reading order (``partition.reading_order``), computed on centroids in
EPSG:4547 metres with ``s = sqrt(parent area / number of children)``: take the northernmost
centroid not yet placed; it and every remaining centroid whose northing is at most ``s / 2``
below it form a row; the row is numbered west→east (by easting); repeat for the next row to the
south. Names: "三眼井社区", "三眼井社区第001网格".

Output is deterministic: the same ``seed`` and inputs give byte-identical geometries (and, via
``write_city``, byte-identical GeoPackage files).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridserver.demo import partition as part
from gridserver.errors import InvalidInput
from gridserver.settings import STORAGE_SRID, get_settings

LEVELS = ("district", "street", "community", "grid")
#: Roads communities follow.
MAJOR_ROADS = ("motorway", "trunk", "primary", "secondary", "tertiary")
#: Roads grids follow.
GRID_ROADS = MAJOR_ROADS + ("residential", "living_street")
DISTRICT_CODE, DISTRICT_NAME, CITY_CODE = "440104", "越秀区", "440100"
GRID_TOTAL = 1893
MIN_GRIDS = 3
#: Faces per child wanted before grouping: more pieces balance areas better, fewer follow roads.
PIECES_COMMUNITY, PIECES_GRID = 3.0, 3.0
#: Bump when the generated output changes for the same inputs (it is part of the cache key).
GENERATOR_VERSION = "2"

YUEXIU_FILES = {
    "streets": "yuexiu_subdistricts_osm_wgs84.geojson",
    "communities": "yuexiu_communities_nbs2023.csv",
    "roads": "yuexiu_roads_osm_wgs84.geojson",
    "district": "yuexiu_district_boundary_osm_wgs84.geojson",
}
_COMMITTEE_SUFFIXES = ("社区居民委员会", "社区居委会", "居民委员会", "居委会")


def community_name(committee: str) -> str:
    """Community name from its committee's name: "三眼井社区居委会" → "三眼井社区".

    The suffix 社区居民委员会 / 社区居委会 / 居民委员会 / 居委会 is removed and 社区 appended.
    """
    bare = committee.strip()
    for suffix in _COMMITTEE_SUFFIXES:
        if bare.endswith(suffix) and len(bare) > len(suffix):
            bare = bare[: -len(suffix)]
            break
    if bare.endswith("社区") and len(bare) > 2:
        bare = bare[:-2]
    return bare + "社区"


def grid_name(community: str, seq: int) -> str:
    return f"{community}第{seq:03d}网格"


# ----------------------------------------------------------------------------------------------
# inputs


def yuexiu_inputs(shared_dir: Path | None = None) -> dict[str, Path] | None:
    """Paths of the real Yuexiu input files, or None when any is missing."""
    shared = Path(shared_dir) if shared_dir is not None else get_settings().shared_dir
    base = shared / "data" / "yuexiu"
    paths = {k: base / v for k, v in YUEXIU_FILES.items()}
    return paths if all(p.is_file() for p in paths.values()) else None


def load_yuexiu(paths: dict[str, Path]):
    """Read the real streets, communities (per street, sorted by code) and roads."""
    streets = gpd.read_file(paths["streets"])
    for col in ("ref:admin:CN:nbs", "name"):
        if col not in streets.columns:
            raise InvalidInput(f"{paths['streets']}: property {col!r} missing")
    streets = streets.to_crs(STORAGE_SRID) if streets.crs else streets.set_crs(STORAGE_SRID)
    street_rows = []
    for code, name, geom in zip(streets["ref:admin:CN:nbs"], streets["name"], streets.geometry):
        code = str(code)
        if len(code) != 9 or not code.startswith(DISTRICT_CODE) or not code.isdigit():
            raise InvalidInput(f"{paths['streets']}: street {name!r} has code {code!r}, want 9 digits 440104nnn")
        if geom is None or not geom.is_valid:
            raise InvalidInput(f"{paths['streets']}: street {code} {name} has no valid geometry")
        street_rows.append((code, str(name), part.as_multipolygon(geom)))
    street_rows.sort()

    communities: dict[str, list[tuple[str, str]]] = {code: [] for code, _, _ in street_rows}
    with open(paths["communities"], newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), start=2):
            code, street = row.get("code", ""), row.get("streetCode", "")
            if street not in communities:
                raise InvalidInput(f"{paths['communities']} line {lineno}: street {street!r} is not a Yuexiu street")
            if len(code) != 12 or not code.startswith(street):
                raise InvalidInput(f"{paths['communities']} line {lineno}: code {code!r} is not street code + 3 digits")
            communities[street].append((code, community_name(row["name"])))
    for street in communities:
        communities[street].sort()
        if not communities[street]:
            raise InvalidInput(f"{paths['communities']}: street {street} has no community")

    roads = gpd.read_file(paths["roads"])
    roads = roads.to_crs(STORAGE_SRID) if roads.crs else roads.set_crs(STORAGE_SRID)
    roads = roads[["highway", "name", "geometry"]].reset_index(drop=True)
    return street_rows, communities, roads


# ----------------------------------------------------------------------------------------------
# the shared build path


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def _road_lines(roads: gpd.GeoDataFrame, kinds) -> np.ndarray:
    sel = roads[roads["highway"].isin(kinds)].geometry.values
    return shapely.get_parts(np.asarray(sel, dtype=object))


def _ordered(geoms, parent_area_m2: float) -> np.ndarray:
    """Reading order of child polygons (centroids in metres, rows ~ one child high)."""
    xy = shapely.get_coordinates(shapely.centroid(part.to_metric(np.asarray(geoms, dtype=object))))
    return part.reading_order(xy, float(np.sqrt(parent_area_m2 / max(len(geoms), 1))))


def build_hierarchy(
    streets: list[tuple[str, str, object]],
    communities: dict[str, list[tuple[str, str]]],
    roads: gpd.GeoDataFrame,
    seed: int,
    *,
    district_code: str = DISTRICT_CODE,
    district_name: str = DISTRICT_NAME,
    district_parent: str = CITY_CODE,
    grid_total: int = GRID_TOTAL,
) -> dict[str, gpd.GeoDataFrame]:
    """Communities and grids for given street polygons; returns the four level tables + roads.

    ``streets`` are ``(code, name, MultiPolygon WGS84)`` tiling the district; ``communities`` maps
    each street code to its ``(code, name)`` list sorted by code. Every returned level is the
    union of the one below (streets and district equal the inputs up to the 1e-9° noding grid),
    so every level tiles its parent exactly.
    """
    seed = _check_seed(seed)
    district = shapely.union_all([g for _, _, g in streets], grid_size=part.GRID)
    street_geoms = [g for _, _, g in streets]
    street_area = part.metric_area(street_geoms)

    # One noding of the whole district per level, so that neighbours in different streets share
    # their edges exactly too.
    _, kids = part.partition(
        district, street_geoms, [len(communities[c]) for c, _, _ in streets],
        _road_lines(roads, MAJOR_ROADS), _rng(seed, 1), pieces=PIECES_COMMUNITY,
    )
    comm_rows: list[list] = []  # code, name, street code, geometry
    for (scode, _, _), s_area, children in zip(streets, street_area, kids):
        for (ccode, cname), k in zip(communities[scode], _ordered(children, s_area)):
            comm_rows.append([ccode, cname, scode, children[k]])

    grid_counts = part.allocate(part.metric_area([r[3] for r in comm_rows]), grid_total, MIN_GRIDS)
    new_comms, kids = part.partition(
        district, [r[3] for r in comm_rows], grid_counts,
        _road_lines(roads, GRID_ROADS), _rng(seed, 2), pieces=PIECES_GRID,
    )
    grid_rows: list[list] = []
    for row, comm_geom, grids in zip(comm_rows, new_comms, kids):
        # Each level is rebuilt as the union of the faces below it (equal to the input polygons
        # up to the 1e-9° noding grid), so every level tiles its parent exactly.
        row[3] = comm_geom
        order = _ordered(grids, float(part.metric_area([comm_geom])[0]))
        for seq, k in enumerate(order, start=1):
            grid_rows.append([f"{row[0]}{seq:03d}", grid_name(row[1], seq), row[0], grids[k]])
    street_rows = []
    for scode, sname, _ in streets:
        mine = [r[3] for r in comm_rows if r[2] == scode]
        street_rows.append([scode, sname, district_code, shapely.union_all(mine, grid_size=part.GRID)])
    district_geom = part.as_multipolygon(shapely.union_all([r[3] for r in street_rows], grid_size=part.GRID))

    def frame(rows) -> gpd.GeoDataFrame:
        df = pd.DataFrame(rows, columns=["code", "name", "parent_code", "geometry"])
        df["geometry"] = [part.as_multipolygon(g) for g in df["geometry"]]
        return gpd.GeoDataFrame(df, geometry="geometry", crs=STORAGE_SRID)

    city = {
        "district": frame([[district_code, district_name, district_parent, district_geom]]),
        "street": frame(street_rows),
        "community": frame(comm_rows),
        "grid": frame(grid_rows),
        "roads": _clip_roads(roads, district_geom),
    }
    check_codes(city)
    return city


def _clip_roads(roads: gpd.GeoDataFrame, district) -> gpd.GeoDataFrame:
    out = roads[["highway", "name", "geometry"]].copy()
    out = out[out.intersects(district)]
    out["geometry"] = shapely.intersection(np.asarray(out.geometry.values, dtype=object), district)
    out = out[~out.geometry.is_empty].reset_index(drop=True)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=STORAGE_SRID)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_codes(city: dict[str, gpd.GeoDataFrame]) -> None:
    """Raise InvalidInput unless codes are unique, of the right length and prefix their children."""
    width = {"district": 6, "street": 9, "community": 12, "grid": 15}
    parent = {"street": "district", "community": "street", "grid": "community"}
    for level in LEVELS:
        df = city[level]
        codes = df["code"].tolist()
        if len(set(codes)) != len(codes):
            raise InvalidInput(f"{level}: duplicate codes")
        bad = [c for c in codes if len(c) != width[level] or not c.isdigit()]
        if bad:
            raise InvalidInput(f"{level}: codes not {width[level]} digits: {bad[:3]}")
        if level in parent:
            known = set(city[parent[level]]["code"])
            for c, p in zip(df["code"], df["parent_code"]):
                if p not in known or not c.startswith(p):
                    raise InvalidInput(f"{level} {c}: parent {p} unknown or not its prefix")


# ----------------------------------------------------------------------------------------------
# entry points


def build_city(shared_dir: Path | None = None, seed: int = 0) -> dict[str, gpd.GeoDataFrame]:
    """The demo city for ``seed``: real Yuexiu if the shared data is there, else synthetic.

    Returns ``{"district", "street", "community", "grid": GeoDataFrame(code, name, parent_code,
    geometry MultiPolygon EPSG:4326), "roads": GeoDataFrame(highway, name, geometry)}``; each
    level tiles its parent exactly and codes follow the prefix rules.
    """
    seed = _check_seed(seed)
    paths = yuexiu_inputs(shared_dir)
    if paths is None:
        from gridserver.demo.synthetic import synthetic_city

        return synthetic_city(seed)
    streets, communities, roads = load_yuexiu(paths)
    return build_hierarchy(streets, communities, roads, seed)


def cache_key(shared_dir: Path | None, seed: int) -> str:
    """Key of a build: generator version, seed and the size/mtime of every input file."""
    paths = yuexiu_inputs(shared_dir)
    inputs = "synthetic"
    if paths is not None:
        inputs = [[k, p.name, p.stat().st_size, p.stat().st_mtime_ns] for k, p in sorted(paths.items())]
    text = json.dumps({"version": GENERATOR_VERSION, "seed": int(seed), "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_out_dir() -> Path:
    return get_settings().gis_data_dir / "demo"


_LAYERS = LEVELS + ("roads",)


def write_city(city: dict[str, gpd.GeoDataFrame], out_dir: Path | None = None, *, key: str | None = None) -> Path:
    """Write one GeoPackage per level (``district.gpkg`` … ``grid.gpkg``, ``roads.gpkg``).

    Files are byte-identical for identical input (the GeoPackage timestamp is pinned). A
    ``manifest.json`` records ``key`` (see ``cache_key``) and the row counts; it is written last,
    so a half-written directory is never taken for a finished one.
    """
    from pyogrio import set_gdal_config_options

    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.json"
    if manifest.exists():
        manifest.unlink()
    set_gdal_config_options({"OGR_CURRENT_DATE": "2000-01-01T00:00:00.000Z"})
    try:
        for layer in _LAYERS:
            path = out / f"{layer}.gpkg"
            if path.exists():
                path.unlink()
            city[layer].to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
    finally:
        set_gdal_config_options({"OGR_CURRENT_DATE": None})
    counts = {layer: int(len(city[layer])) for layer in _LAYERS}
    manifest.write_text(json.dumps({"key": key, "counts": counts}, ensure_ascii=False, sort_keys=True, indent=1))
    return out


def read_city(out_dir: Path) -> dict[str, gpd.GeoDataFrame]:
    """Read back what ``write_city`` wrote."""
    out = Path(out_dir)
    city = {}
    for layer in _LAYERS:
        df = gpd.read_file(out / f"{layer}.gpkg", layer=layer, engine="pyogrio")
        if layer in LEVELS:
            df = df[["code", "name", "parent_code", "geometry"]]
            for col in ("code", "name", "parent_code"):
                df[col] = df[col].astype(str)
        city[layer] = df
    return city


def load_city(
    shared_dir: Path | None = None, seed: int = 0, out_dir: Path | None = None
) -> dict[str, gpd.GeoDataFrame]:
    """The demo city, reused from ``out_dir`` when it was written for the same seed and inputs.

    Otherwise it is built (``build_city``) and written there (``write_city``).
    """
    seed = _check_seed(seed)
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    key = cache_key(shared_dir, seed)
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text()).get("key") == key:
                return read_city(out)
        except (ValueError, OSError):
            pass  # unreadable cache: rebuild
    city = build_city(shared_dir, seed)
    write_city(city, out, key=key)
    return city
