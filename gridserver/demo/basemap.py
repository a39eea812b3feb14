"""The demo city's basemap: roads by class and green areas (and water when a source has it).

Loaded into ``basemap_roads`` / ``basemap_areas`` once by the demo, so tiles never read files at
request time. Sources: the demo city's road table (real OSM roads of Yuexiu from ``../shared`` or the
generated city's roads) and ``yuexiu_green_osm_wgs84.geojson`` when ``../shared`` is present;
without it, green areas are generated (parks in blocks away from main roads). Re-running replaces
the rows of the same ``source``.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import text

#: OSM ``highway`` → the road classes the tiles and styles know.
ROAD_CLASS = {
    "motorway": "motorway", "motorway_link": "motorway", "trunk": "trunk", "trunk_link": "trunk",
    "primary": "primary", "primary_link": "primary", "secondary": "secondary", "secondary_link": "secondary",
    "tertiary": "tertiary", "tertiary_link": "tertiary", "residential": "residential",
    "living_street": "residential", "unclassified": "residential", "service": "service",
    "footway": "path", "pedestrian": "path", "path": "path", "cycleway": "path", "steps": "path",
}
#: OSM tags that make an area water rather than green.
WATER_TAGS = {"water", "river", "riverbank", "reservoir", "basin", "wetland"}
GREEN_FILE = "yuexiu_green_osm_wgs84.geojson"
WATER_FILE = "yuexiu_water_osm_wgs84.geojson"  # not shipped today; read when present


def road_class(highway) -> str:
    """The basemap class of an OSM highway value (unknown values count as service roads)."""
    return ROAD_CLASS.get(str(highway), "service")


def _multi(geoms) -> list[bytes]:
    arr = np.asarray(geoms, dtype=object)
    return list(shapely.to_wkb(arr))


def read_areas(shared_yuexiu: Path) -> gpd.GeoDataFrame:
    """Green (and water) polygons from the shared Yuexiu files as (kind, subtype, name, geometry)."""
    frames = []
    for name in (GREEN_FILE, WATER_FILE):
        path = shared_yuexiu / name
        if not path.is_file():
            continue
        g = gpd.read_file(path)
        g = g.to_crs(4326) if g.crs else g.set_crs(4326)
        g = g[g.geometry.notna() & g.geom_type.isin(["Polygon", "MultiPolygon"])]
        subtype = None
        for col in ("natural", "water", "landuse", "leisure"):
            if col in g.columns:
                subtype = g[col] if subtype is None else subtype.fillna(g[col])
        subtype = subtype if subtype is not None else gpd.pd.Series([None] * len(g), index=g.index)
        kind = np.where(subtype.isin(WATER_TAGS) | (name == WATER_FILE), "water", "green")
        names = g["name"] if "name" in g.columns else gpd.pd.Series([None] * len(g), index=g.index)
        frames.append(gpd.GeoDataFrame({"kind": kind, "subtype": subtype.values, "name": names.values},
                                       geometry=g.geometry.values, crs=4326))
    if not frames:
        return gpd.GeoDataFrame({"kind": [], "subtype": [], "name": []}, geometry=[], crs=4326)
    return gpd.GeoDataFrame(gpd.pd.concat(frames, ignore_index=True), crs=4326)


def synthetic_green(city: dict, seed: int = 0, share: float = 0.04) -> gpd.GeoDataFrame:
    """Parks for a generated city: rounded blobs inside some grids (about ``share`` of the area)."""
    rng = np.random.default_rng([seed, 11])
    grids = city["grid"].to_crs(4547)
    pick = rng.random(len(grids)) < share * 4
    rows = []
    for geom in grids.geometry.values[pick]:
        inner = geom.buffer(-25)
        if inner.is_empty:
            continue
        c = inner.representative_point()
        r = np.sqrt(inner.area) * rng.uniform(0.2, 0.4)
        blob = c.buffer(r, quad_segs=6).intersection(inner)
        if not blob.is_empty and blob.area > 500:
            rows.append(blob)
    g = gpd.GeoDataFrame({"kind": ["green"] * len(rows), "subtype": ["park"] * len(rows),
                          "name": [None] * len(rows)}, geometry=rows, crs=4547)
    return g.to_crs(4326)


def load_basemap(engine, city: dict, shared_yuexiu: Path | None, seed: int = 0, source: str = "demo") -> dict:
    """Replace the ``source`` rows of the basemap tables with the city's roads and green/water areas."""
    roads = city.get("roads")
    if roads is None or len(roads) == 0:
        roads = gpd.GeoDataFrame({"highway": [], "name": []}, geometry=[], crs=4326)
    roads = roads.to_crs(4326)
    roads = roads[roads.geometry.notna() & ~roads.geometry.is_empty]
    areas = read_areas(shared_yuexiu) if shared_yuexiu is not None else synthetic_green(city, seed)
    areas = areas[areas.geometry.notna() & ~areas.geometry.is_empty]
    areas = areas.set_geometry(shapely.make_valid(areas.geometry.values))
    areas = areas[areas.geom_type.isin(["Polygon", "MultiPolygon"])]
    road_rows = [(None if (n is None or n != n) else str(n), road_class(h), source, w)
                 for n, h, w in zip(roads["name"], roads["highway"], _multi(roads.geometry.values))]
    area_rows = [(k, None if s is None or s != s else str(s), None if n is None or n != n else str(n), source, w)
                 for k, s, n, w in zip(areas["kind"], areas["subtype"], areas["name"], _multi(areas.geometry.values))]
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection  # psycopg: COPY
        with pg.cursor() as cur:
            cur.execute("DELETE FROM basemap_roads WHERE source = %s", (source,))
            cur.execute("DELETE FROM basemap_areas WHERE source = %s", (source,))
            n_roads = n_areas = 0
            with cur.copy("COPY basemap_roads (name, class, source, geom) FROM STDIN") as cp:
                for name, cls, src, wkb in road_rows:
                    geom = _ewkb_multi(wkb, "line")
                    if geom is not None:
                        cp.write_row((name, cls, src, geom))
                        n_roads += 1
            with cur.copy("COPY basemap_areas (kind, subtype, name, source, geom) FROM STDIN") as cp:
                for row in area_rows:
                    geom = _ewkb_multi(row[4], "polygon")
                    if geom is not None:
                        cp.write_row((*row[:4], geom))
                        n_areas += 1
        pg.commit()
    finally:
        raw.close()
    return {"roads": n_roads, "areas": n_areas, "green": int((areas["kind"] == "green").sum()),
            "water": int((areas["kind"] == "water").sum())}


def _ewkb_multi(wkb: bytes, kind: str) -> str | None:
    """Hex EWKB (SRID 4326) of the lines (``kind='line'``) or polygons of a WKB geometry as one Multi*
    geometry, as COPY text for a geometry column; None when nothing of that kind is in it."""
    g = shapely.from_wkb(wkb)
    parts = [p for p in shapely.get_parts(g, return_index=False) if not p.is_empty]
    flat = []
    for p in parts:
        if p.geom_type.startswith("Multi") or p.geom_type == "GeometryCollection":
            flat += [q for q in shapely.get_parts(p) if not q.is_empty]
        else:
            flat.append(p)
    if kind == "line":
        keep = [p for p in flat if p.geom_type == "LineString"]
        out = shapely.MultiLineString(keep) if keep else None
    else:
        keep = [p for p in flat if p.geom_type == "Polygon"]
        out = shapely.MultiPolygon(keep) if keep else None
    if out is None:
        return None
    return shapely.to_wkb(shapely.set_srid(out, 4326), hex=True, include_srid=True)


def basemap_counts(engine) -> dict:
    """Rows per basemap table (for the demo summary)."""
    with engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT (SELECT count(*) FROM basemap_roads) AS roads, (SELECT count(*) FROM basemap_areas) AS areas"
        )).one()._mapping)
