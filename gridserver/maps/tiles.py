"""Vector tiles (Mapbox Vector Tile) straight out of PostGIS.

Each tile is one SQL statement: a GiST index probe ``geom_3857 && ST_TileEnvelope(z, x, y)``,
``ST_AsMVTGeom`` to clip and quantise, ``ST_AsMVT`` to encode. The bytes go to the client as
PostGIS made them; nothing is decoded or re-encoded in Python.

Area layers (districts, streets, communities, grids) carry two MVT layers in one tile: the polygons
(``grids``) and one label point per area (``grids_label``, ``ST_PointOnSurface``) that appears in
exactly one tile, so a label is not repeated on every tile a large polygon crosses. Below z14 the
outlines are simplified by half a pixel and grids carry no label points (``label_minzoom``): the
full-scale city's z13 grid tile was 204 KB (87 KB gzip), a third of it 1,061 label points no view shows.

Access: area and basemap layers are public (boundaries and roads are published anyway). The
``incidents`` layer needs a token and holds only the incidents the caller may read (the rule of
``incidents.service``: admin/analyst all, staff their scope prefix on ``grid_code``, citizens
their own reports).

Crowding: up to ``CLUSTER_MAXZOOM`` (and deeper when a tile still holds more than
``POINT_LIMIT`` points) incidents arrive as clusters — one point per occupied cell of a
``CLUSTER_CELLS``² snapping grid (``ST_SnapToGrid`` in EPSG:3857), placed at the members' mean
position, with ``count``, ``open`` and per-category / per-status counts (``c_<category>``,
``s_<status>`` keys, from a jsonb column that ``ST_AsMVT`` spreads into properties). A tile thus
holds at most CLUSTER_CELLS² features whatever the density.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import morecantile

from gridserver.errors import InvalidInput, NotFound
from gridserver.incidents.categories import CATEGORIES

TMS = morecantile.tms.get("WebMercatorQuad")

EXTENT = 4096
#: Geometry kept beyond the tile edge (in tile units) so strokes do not show seams between tiles.
BUFFER = 64


@dataclass(frozen=True)
class Layer:
    name: str
    title: str  # zh-CN name shown in the layer list
    level: str | None  # admin_areas.level; None for the other kinds
    minzoom: int
    maxzoom: int
    max_age: int  # Cache-Control max-age, seconds
    kind: str = "area"  # area | incidents | roads | landuse | buildings


#: The tile layers. Areas change rarely (an admin redraw); incidents change all day.
LAYERS: dict[str, Layer] = {
    "districts": Layer("districts", "区", "district", 5, 16, 600),
    "streets": Layer("streets", "街道", "street", 9, 16, 600),
    "communities": Layer("communities", "社区", "community", 11, 16, 600),
    "grids": Layer("grids", "网格", "grid", 12, 16, 600),
    "incidents": Layer("incidents", "事件", None, 8, 16, 15, "incidents"),
    "roads": Layer("roads", "道路", None, 10, 16, 3600, "roads"),
    "landuse": Layer("landuse", "绿地水系", None, 10, 16, 3600, "landuse"),
    # the block-data table; listed and served only once it exists
    "buildings": Layer("buildings", "建筑", None, 15, 16, 3600, "buildings"),
}

#: Label points of an area level only from this zoom (no view labels grids below it; at z13 a full-scale
#: tile held 1,061 of them, 74 KB of 204).
LABEL_MINZOOM = {"grid": 14}
#: Below this zoom area outlines are simplified (ST_Simplify, topology kept) by SIMPLIFY_UNITS tile units:
#: half a pixel of a 512 px tile, invisible, and ~20 % fewer bytes on the many-vertex derived grids.
SIMPLIFY_BELOW_ZOOM = 14
SIMPLIFY_UNITS = 4
WORLD_M = 2 * 20037508.342789244  # width of the EPSG:3857 world, metres


def label_minzoom(layer: Layer) -> int:
    """First zoom whose tiles of an area layer carry the ``<layer>_label`` points."""
    return max(layer.minzoom, LABEL_MINZOOM.get(layer.level, 0))


#: Layers that need a token (served with Cache-Control: private).
PRIVATE_LAYERS = {"incidents"}
#: Incidents are clustered at this zoom and below.
CLUSTER_MAXZOOM = 14
#: Deeper tiles holding more points than this are clustered too (finer cells), never truncated.
POINT_LIMIT = 1000
#: Cells per tile side of the cluster grid (at most CLUSTER_CELLS² features per tile).
CLUSTER_CELLS = 16
DEEP_CLUSTER_CELLS = 32
#: Statuses that count as closed (not open) in the clusters.
CLOSED_STATUSES = ["closed", "rated", "merged"]

#: Marker colour per incident category (the map legend and the folium export use the same ones).
CATEGORY_COLORS: dict[str, str] = {
    "city_appearance": "#e6194b",
    "street_facility": "#f58231",
    "public_facility": "#4363d8",
    "road_traffic": "#911eb4",
    "landscaping": "#3cb44b",
    "water_drainage": "#42d4f4",
    "construction": "#9a6324",
    "fire_safety": "#d00000",
    "public_security": "#000075",
    "environment": "#469990",
    "market": "#f032e6",
    "neighbourhood": "#bfa300",
    "social_service": "#808000",
    "other": "#7f7f7f",
}
DEFAULT_COLOR = "#7f7f7f"

# --- SQL ------------------------------------------------------------------------------------------
# %(z)s %(x)s %(y)s: the tile; %(margin)s: BUFFER / EXTENT, so the index probe also finds the
# features that only reach into the buffer.

AREA_TILE_SQL = """
WITH env AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS tile,
           ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => %(margin)s) AS search
),
hits AS (
    SELECT a.code, a.name, a.level, a.parent_code, a.geom_3857
    FROM admin_areas a, env
    WHERE a.geom_3857 && env.search
      AND a.level = %(level)s
      AND a.valid_to IS NULL
),
shapes AS (
    SELECT ST_AsMVTGeom(CASE WHEN %(tolerance)s > 0 THEN ST_Simplify(h.geom_3857, %(tolerance)s, true)
                             ELSE h.geom_3857 END, env.tile, %(extent)s, %(buffer)s, true) AS geom,
           h.code, h.name, h.level, h.parent_code
    FROM hits h, env
),
labels AS (
    SELECT ST_AsMVTGeom(ST_PointOnSurface(h.geom_3857), env.tile, %(extent)s, 0, true) AS geom,
           h.code, h.name, h.level, h.parent_code
    FROM hits h, env
    WHERE %(labels)s
)
SELECT coalesce((SELECT ST_AsMVT(shapes, %(layer)s, %(extent)s, 'geom') FROM shapes WHERE geom IS NOT NULL), ''::bytea)
    || coalesce((SELECT ST_AsMVT(labels, %(label_layer)s, %(extent)s, 'geom') FROM labels WHERE geom IS NOT NULL), ''::bytea)
"""

# {visibility}: the SQL condition (on alias ``i``) of the incidents the caller may read.
INCIDENT_TILE_SQL = """
WITH env AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS tile,
           ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => %(margin)s) AS search
),
category_labels (code, label) AS (
    SELECT * FROM unnest(%(category_codes)s::text[], %(category_labels)s::text[])
),
points AS (
    SELECT ST_AsMVTGeom(i.geom_3857, env.tile, %(extent)s, %(buffer)s, true) AS geom,
           i.id AS fid, i.id, i.category, coalesce(c.label, i.category) AS category_label,
           i.status, i.grid_code,
           to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at
    FROM incidents i
    CROSS JOIN env
    LEFT JOIN category_labels c ON c.code = i.category
    WHERE i.geom_3857 && env.search
      AND ({visibility})
      AND (%(statuses)s::text[] IS NULL OR i.status = ANY (%(statuses)s::text[]))
)
SELECT coalesce((SELECT ST_AsMVT(points, %(layer)s, %(extent)s, 'geom', 'fid') FROM points WHERE geom IS NOT NULL), ''::bytea)
"""

#: How many readable incidents a tile holds (capped at %(cap)s): decides points or clusters.
INCIDENT_COUNT_SQL = """
SELECT count(*) FROM (
    SELECT 1 FROM incidents i
    WHERE i.geom_3857 && ST_TileEnvelope(%(z)s, %(x)s, %(y)s)
      AND ({visibility})
      AND (%(statuses)s::text[] IS NULL OR i.status = ANY (%(statuses)s::text[]))
    LIMIT %(cap)s
) t
"""

# Clusters: each incident counts in exactly one tile (the tile itself is the search box, no
# margin) and one cell of a %(cells)s × %(cells)s grid over it.
INCIDENT_CLUSTER_SQL = """
WITH env AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS tile
),
box AS (
    SELECT tile, ST_XMin(tile) AS x0, ST_YMin(tile) AS y0,
           (ST_XMax(tile) - ST_XMin(tile)) / %(cells)s AS cell
    FROM env
),
pts AS (
    SELECT floor((ST_X(i.geom_3857) - box.x0) / box.cell)::int AS cx,
           floor((ST_Y(i.geom_3857) - box.y0) / box.cell)::int AS cy,
           ST_X(i.geom_3857) AS px, ST_Y(i.geom_3857) AS py, i.category, i.status
    FROM incidents i, box
    WHERE i.geom_3857 && box.tile
      AND ({visibility})
      AND (%(statuses)s::text[] IS NULL OR i.status = ANY (%(statuses)s::text[]))
),
by_category AS (
    SELECT cx, cy, jsonb_object_agg('c_' || category, n) AS j
    FROM (SELECT cx, cy, category, count(*) AS n FROM pts GROUP BY 1, 2, 3) t GROUP BY 1, 2
),
by_status AS (
    SELECT cx, cy, jsonb_object_agg('s_' || status, n) AS j
    FROM (SELECT cx, cy, status, count(*) AS n FROM pts GROUP BY 1, 2, 3) t GROUP BY 1, 2
),
clusters AS (
    SELECT cx, cy, count(*) AS count,
           count(*) FILTER (WHERE NOT (status = ANY (%(closed)s::text[]))) AS open,
           avg(px) AS px, avg(py) AS py,
           mode() WITHIN GROUP (ORDER BY category) AS top_category
    FROM pts GROUP BY 1, 2
),
features AS (
    SELECT ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(c.px, c.py), 3857), box.tile, %(extent)s, 0, true) AS geom,
           c.count, c.open, c.top_category, (cat.j || st.j) AS counts
    FROM clusters c
    JOIN by_category cat USING (cx, cy)
    JOIN by_status st USING (cx, cy)
    CROSS JOIN box
)
SELECT coalesce((SELECT ST_AsMVT(features, %(layer)s, %(extent)s, 'geom') FROM features WHERE geom IS NOT NULL), ''::bytea)
"""

#: Road classes drawn from each zoom (OSM highway values are normalised to these at load time).
ROAD_CLASSES_BY_ZOOM = [
    (0, ["motorway", "trunk", "primary"]),
    (12, ["motorway", "trunk", "primary", "secondary", "tertiary"]),
    (14, ["motorway", "trunk", "primary", "secondary", "tertiary", "residential"]),
    (15, ["motorway", "trunk", "primary", "secondary", "tertiary", "residential", "service", "path"]),
]

ROAD_TILE_SQL = """
WITH env AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS tile,
           ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => %(margin)s) AS search
),
shapes AS (
    SELECT ST_AsMVTGeom(r.geom_3857, env.tile, %(extent)s, %(buffer)s, true) AS geom, r.name, r.class
    FROM basemap_roads r, env
    WHERE r.geom_3857 && env.search AND r.class = ANY (%(classes)s::text[])
)
SELECT coalesce((SELECT ST_AsMVT(shapes, %(layer)s, %(extent)s, 'geom') FROM shapes WHERE geom IS NOT NULL), ''::bytea)
"""

LANDUSE_TILE_SQL = """
WITH env AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS tile,
           ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => %(margin)s) AS search
),
shapes AS (
    SELECT ST_AsMVTGeom(a.geom_3857, env.tile, %(extent)s, %(buffer)s, true) AS geom, a.kind, a.subtype, a.name
    FROM basemap_areas a, env
    WHERE a.geom_3857 && env.search
)
SELECT coalesce((SELECT ST_AsMVT(shapes, %(layer)s, %(extent)s, 'geom') FROM shapes WHERE geom IS NOT NULL), ''::bytea)
"""

# The block-data engineer's table (building_code, geom_3857, grid_code, floors, use).
BUILDING_TILE_SQL = """
WITH env AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS tile,
           ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => %(margin)s) AS search
),
shapes AS (
    SELECT ST_AsMVTGeom(b.geom_3857, env.tile, %(extent)s, %(buffer)s, true) AS geom,
           b.building_code, b.grid_code, b.floors, b.use
    FROM buildings b, env
    WHERE b.geom_3857 && env.search
)
SELECT coalesce((SELECT ST_AsMVT(shapes, %(layer)s, %(extent)s, 'geom') FROM shapes WHERE geom IS NOT NULL), ''::bytea)
"""

EXTENTS_SQL = """
SELECT level AS kind, count(*) AS n,
       ST_XMin(ST_Extent(geom)) AS xmin, ST_YMin(ST_Extent(geom)) AS ymin,
       ST_XMax(ST_Extent(geom)) AS xmax, ST_YMax(ST_Extent(geom)) AS ymax
FROM admin_areas WHERE valid_to IS NULL GROUP BY level
"""

INCIDENT_EXTENT_SQL = """
SELECT count(*), ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom))
FROM incidents i WHERE ({visibility})
"""

BASEMAP_COUNTS_SQL = """
SELECT (SELECT count(*) FROM basemap_roads), (SELECT count(*) FROM basemap_areas),
       to_regclass('buildings') IS NOT NULL
       AND (SELECT count(*) FROM information_schema.columns WHERE table_name = 'buildings'
            AND column_name IN ('building_code', 'geom_3857', 'grid_code', 'floors', 'use')) = 5
"""

BUILDING_COUNT_SQL = "SELECT count(*) FROM buildings"

_CATEGORY_CODES = list(CATEGORIES)
_CATEGORY_LABELS = [CATEGORIES[c]["label"] for c in _CATEGORY_CODES]


@dataclass(frozen=True)
class Viewer:
    """Which incidents a caller may read, as an SQL condition on alias ``i`` (psycopg %(name)s style)."""

    condition: str
    params: dict

    @classmethod
    def of(cls, user) -> "Viewer":
        """The reading rule of ``incidents.service`` for ``user`` (the one home of that rule)."""
        from gridserver.incidents.service import _visibility

        cond, params = _visibility(user)
        return cls(re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", cond), params)


#: Nobody: used for the extent of an anonymous caller.
NOBODY = Viewer("FALSE", {})


def get_layer(name: str) -> Layer:
    """The tile layer called ``name``; NotFound (404) naming the known layers otherwise."""
    try:
        return LAYERS[name]
    except KeyError:
        raise NotFound(f"unknown tile layer {name!r}; layers are: {', '.join(LAYERS)}", code="unknown_layer") from None


def check_tile(z: int, x: int, y: int) -> None:
    """Raise InvalidInput (422) unless z/x/y is a tile of the WebMercatorQuad matrix set."""
    if not TMS.minzoom <= z <= TMS.maxzoom:
        raise InvalidInput(f"tile zoom z must be between {TMS.minzoom} and {TMS.maxzoom}, got {z}", code="invalid_tile")
    n = 2**z
    if not (0 <= x < n and 0 <= y < n) or not TMS.is_valid(morecantile.Tile(x, y, z)):
        raise InvalidInput(f"tile {z}/{x}/{y} does not exist: at zoom {z}, x and y must be between 0 and {n - 1}",
                           code="invalid_tile")


def parse_statuses(status: str | None) -> list[str] | None:
    """``?status=reported,assigned`` as a list; None (no filter) when absent or blank."""
    if status is None:
        return None
    values = [s.strip() for s in status.split(",") if s.strip()]
    return values or None


def road_classes(z: int) -> list[str]:
    """The road classes drawn at zoom ``z``."""
    classes: list[str] = []
    for minzoom, names in ROAD_CLASSES_BY_ZOOM:
        if z >= minzoom:
            classes = names
    return classes


def _base_params(layer: Layer, z: int, x: int, y: int) -> dict:
    return {"z": z, "x": x, "y": y, "margin": BUFFER / EXTENT, "extent": EXTENT, "buffer": BUFFER,
            "layer": layer.name}


def tile_query(layer: Layer, z: int, x: int, y: int, statuses: list[str] | None = None,
               viewer: Viewer | None = None, clustered: bool | None = None) -> tuple[str, dict]:
    """The SQL and parameters that make one tile of ``layer`` (validated tile, known layer).

    Incidents: ``viewer`` (required) restricts them to what the caller may read; ``clustered``
    chooses clusters (default: at z ≤ CLUSTER_MAXZOOM) or points.
    """
    params = _base_params(layer, z, x, y)
    if layer.kind == "incidents":
        if viewer is None:
            raise ValueError("incident tiles need a viewer")
        params.update(viewer.params, statuses=statuses)
        if clustered is None:
            clustered = z <= CLUSTER_MAXZOOM
        if clustered:
            params.update(layer=f"{layer.name}_cluster", closed=CLOSED_STATUSES,
                          cells=CLUSTER_CELLS if z <= CLUSTER_MAXZOOM else DEEP_CLUSTER_CELLS)
            return INCIDENT_CLUSTER_SQL.replace("{visibility}", viewer.condition), params
        params.update(category_codes=_CATEGORY_CODES, category_labels=_CATEGORY_LABELS)
        return INCIDENT_TILE_SQL.replace("{visibility}", viewer.condition), params
    if layer.kind == "roads":
        params["classes"] = road_classes(z)
        return ROAD_TILE_SQL, params
    if layer.kind == "landuse":
        return LANDUSE_TILE_SQL, params
    if layer.kind == "buildings":
        return BUILDING_TILE_SQL, params
    tolerance = SIMPLIFY_UNITS * WORLD_M / 2**z / EXTENT if z < SIMPLIFY_BELOW_ZOOM else 0.0
    params.update(level=layer.level, label_layer=f"{layer.name}_label", labels=z >= label_minzoom(layer),
                  tolerance=tolerance)
    return AREA_TILE_SQL, params


def _incidents_clustered(conn, z, x, y, statuses, viewer) -> bool:
    if z <= CLUSTER_MAXZOOM:
        return True
    params = {"z": z, "x": x, "y": y, "statuses": statuses, "cap": POINT_LIMIT + 1, **viewer.params}
    n = conn.execute(INCIDENT_COUNT_SQL.replace("{visibility}", viewer.condition), params).fetchone()[0]
    return n > POINT_LIMIT


def render_tile(conn, layer: Layer, z: int, x: int, y: int, statuses: list[str] | None = None,
                viewer: Viewer | None = None) -> bytes:
    """The MVT bytes of one tile, read with a psycopg connection; b"" when the tile is empty."""
    if layer.kind == "buildings" and not basemap_counts(conn)["buildings"]:
        raise NotFound("the buildings layer needs the block-data table 'buildings', which does not exist yet",
                       code="unknown_layer")
    clustered = _incidents_clustered(conn, z, x, y, statuses, viewer) if layer.kind == "incidents" else None
    sql, params = tile_query(layer, z, x, y, statuses, viewer, clustered)
    # binary=True: PostGIS's bytea arrives as raw bytes, no hex text to decode.
    row = conn.execute(sql, params, binary=True).fetchone()
    return bytes(row[0]) if row and row[0] else b""


async def render_tile_async(aconn, layer: Layer, z: int, x: int, y: int, statuses: list[str] | None = None,
                            viewer: Viewer | None = None) -> bytes:
    """As render_tile for area and basemap layers (and incidents at cluster zooms), on a psycopg AsyncConnection."""
    sql, params = tile_query(layer, z, x, y, statuses, viewer)
    cur = await aconn.execute(sql, params, binary=True)
    row = await cur.fetchone()
    return bytes(row[0]) if row and row[0] else b""


def etag(data: bytes) -> str:
    """A strong ETag for the tile bytes."""
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


def basemap_counts(conn) -> dict:
    """Rows in the basemap tables, and whether the block-data ``buildings`` table can be served."""
    roads, areas, buildings = conn.execute(BASEMAP_COUNTS_SQL).fetchone()
    return {"roads": roads, "landuse": areas, "buildings": bool(buildings)}


def data_extents(conn, viewer: Viewer = NOBODY) -> dict[str, dict]:
    """Feature count and WGS84 bounds per kind (district, street, community, grid, incident).

    Incidents count only those ``viewer`` may read (none for an anonymous caller).
    """
    out = {}
    for kind, n, xmin, ymin, xmax, ymax in conn.execute(EXTENTS_SQL).fetchall():
        out[kind] = {"count": n, "bounds": None if xmin is None else [xmin, ymin, xmax, ymax]}
    n, xmin, ymin, xmax, ymax = conn.execute(INCIDENT_EXTENT_SQL.replace("{visibility}", viewer.condition),
                                             viewer.params).fetchone()
    out["incident"] = {"count": n, "bounds": None if xmin is None else [xmin, ymin, xmax, ymax]}
    return out


_FIELDS = {
    "area": {"code": "编码", "name": "名称", "level": "层级", "parent_code": "上级编码"},
    "incidents": {"id": "事件编号", "category": "类别编码", "category_label": "类别", "status": "状态",
                  "grid_code": "网格编码", "created_at": "上报时间 (UTC)",
                  "count": "聚合数量 (incidents_cluster)", "open": "未办结数量 (incidents_cluster)",
                  "top_category": "最多的类别 (incidents_cluster)"},
    "roads": {"name": "道路名称", "class": "道路等级"},
    "landuse": {"kind": "类型 green|water", "subtype": "子类", "name": "名称"},
    "buildings": {"building_code": "建筑编码", "grid_code": "网格编码", "floors": "层数", "use": "用途"},
}


def layers_document(conn, base_url: str, viewer: Viewer | None = None) -> dict:
    """A TileJSON-like description of every layer: tile URL, zoom range, bounds and fields.

    ``bounds`` of the whole document is the union of the area data; null when the database is
    empty. The incidents layer carries a count and bounds only for an authenticated ``viewer``
    (restricted to what it may read): an anonymous caller learns nothing about incidents.
    """
    extents = data_extents(conn, viewer or NOBODY)
    counts = basemap_counts(conn)
    base = base_url.rstrip("/")
    layers = []
    union = None
    for layer in LAYERS.values():
        if layer.kind == "buildings" and not counts["buildings"]:
            continue
        if layer.kind in ("area", "incidents"):
            ext = extents.get(layer.level or "incident", {"count": 0, "bounds": None})
        elif layer.kind == "buildings":
            ext = {"count": conn.execute(BUILDING_COUNT_SQL).fetchone()[0], "bounds": None}
        else:
            ext = {"count": counts[layer.kind], "bounds": None}
        b = ext["bounds"]
        if b is not None and layer.kind == "area":
            union = b if union is None else [min(union[0], b[0]), min(union[1], b[1]),
                                             max(union[2], b[2]), max(union[3], b[3])]
        if layer.kind == "area":
            vector_layers = [layer.name, f"{layer.name}_label"]
        elif layer.kind == "incidents":
            vector_layers = [layer.name, f"{layer.name}_cluster"]
        else:
            vector_layers = [layer.name]
        entry = {
            "id": layer.name, "title": layer.title, "kind": layer.kind,
            "tiles": [f"{base}/tiles/{layer.name}/{{z}}/{{x}}/{{y}}.mvt"],
            "minzoom": layer.minzoom, "maxzoom": layer.maxzoom, "bounds": b, "count": ext["count"],
            "vector_layers": vector_layers, "fields": _FIELDS[layer.kind], "max_age": layer.max_age,
            "public": layer.name not in PRIVATE_LAYERS,
        }
        if layer.kind == "incidents":
            entry["cluster_maxzoom"] = CLUSTER_MAXZOOM
            if viewer is None:
                entry.update(count=None, bounds=None, requires_token=True)
        layers.append(entry)
    center = None
    if union is not None:
        center = [(union[0] + union[2]) / 2, (union[1] + union[3]) / 2, 13]
    categories = [{"code": c, "label": v["label"], "color": CATEGORY_COLORS.get(c, DEFAULT_COLOR)}
                  for c, v in CATEGORIES.items()]
    doc = {"tilejson": "3.0.0", "name": "gridserver", "scheme": "xyz", "format": "pbf",
           "bounds": union, "center": center, "minzoom": min(l.minzoom for l in LAYERS.values()),
           "maxzoom": max(l.maxzoom for l in LAYERS.values()), "layers": layers, "categories": categories,
           "authenticated": viewer is not None}
    tianditu = tianditu_sources()
    if tianditu:
        doc["tianditu"] = tianditu
    return doc


#: Tianditu WMTS (Web Mercator matrix set "w"): vector map and its Chinese annotation.
TIANDITU_URL = ("https://t{n}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
                "&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={{z}}&TILEROW={{y}}"
                "&TILECOL={{x}}&tk={key}")


def tianditu_sources() -> dict | None:
    """Raster tile URLs of the Tianditu basemap when a key is configured (GRIDSERVER_TIANDITU_KEY); else None.

    Off by default: it is the only thing that would make the map leave this server."""
    from gridserver.settings import get_settings

    key = get_settings().tianditu_key
    if not key:
        return None
    return {"title": "天地图", "attribution": "© 天地图 Tianditu", "default_visible": False,
            "layers": {layer: [TIANDITU_URL.format(n=n, layer=layer, key=key) for n in range(8)]
                       for layer in ("vec", "cva")}}
