"""Vector tiles (Mapbox Vector Tile) straight out of PostGIS.

Each tile is one SQL statement: a GiST index probe ``geom_3857 && ST_TileEnvelope(z, x, y)``,
``ST_AsMVTGeom`` to clip and quantise, ``ST_AsMVT`` to encode. The bytes go to the client as
PostGIS made them; nothing is decoded or re-encoded in Python.

Area layers (districts, streets, communities, grids) carry two MVT layers in one tile: the polygons
(``grids``) and one label point per area (``grids_label``, ``ST_PointOnSurface``) that appears in
exactly one tile, so a label is not repeated on every tile a large polygon crosses.
"""

from __future__ import annotations

import hashlib
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
    level: str | None  # admin_areas.level; None for incidents
    minzoom: int
    maxzoom: int
    max_age: int  # Cache-Control max-age, seconds


#: The tile layers. Areas change rarely (an admin redraw); incidents change all day.
LAYERS: dict[str, Layer] = {
    "districts": Layer("districts", "区", "district", 5, 16, 600),
    "streets": Layer("streets", "街道", "street", 9, 16, 600),
    "communities": Layer("communities", "社区", "community", 11, 16, 600),
    "grids": Layer("grids", "网格", "grid", 12, 16, 600),
    "incidents": Layer("incidents", "事件", None, 11, 16, 15),
}

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
    SELECT ST_AsMVTGeom(h.geom_3857, env.tile, %(extent)s, %(buffer)s, true) AS geom,
           h.code, h.name, h.level, h.parent_code
    FROM hits h, env
),
labels AS (
    SELECT ST_AsMVTGeom(ST_PointOnSurface(h.geom_3857), env.tile, %(extent)s, 0, true) AS geom,
           h.code, h.name, h.level, h.parent_code
    FROM hits h, env
)
SELECT coalesce((SELECT ST_AsMVT(shapes, %(layer)s, %(extent)s, 'geom') FROM shapes WHERE geom IS NOT NULL), ''::bytea)
    || coalesce((SELECT ST_AsMVT(labels, %(label_layer)s, %(extent)s, 'geom') FROM labels WHERE geom IS NOT NULL), ''::bytea)
"""

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
      AND (%(statuses)s::text[] IS NULL OR i.status = ANY (%(statuses)s::text[]))
)
SELECT coalesce((SELECT ST_AsMVT(points, %(layer)s, %(extent)s, 'geom', 'fid') FROM points WHERE geom IS NOT NULL), ''::bytea)
"""

EXTENTS_SQL = """
SELECT level AS kind, count(*) AS n,
       ST_XMin(ST_Extent(geom)) AS xmin, ST_YMin(ST_Extent(geom)) AS ymin,
       ST_XMax(ST_Extent(geom)) AS xmax, ST_YMax(ST_Extent(geom)) AS ymax
FROM admin_areas WHERE valid_to IS NULL GROUP BY level
UNION ALL
SELECT 'incident', count(*),
       ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom))
FROM incidents
"""

_CATEGORY_CODES = list(CATEGORIES)
_CATEGORY_LABELS = [CATEGORIES[c]["label"] for c in _CATEGORY_CODES]


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


def tile_query(layer: Layer, z: int, x: int, y: int, statuses: list[str] | None = None) -> tuple[str, dict]:
    """The SQL and parameters that make one tile of ``layer`` (validated tile, known layer)."""
    params = {"z": z, "x": x, "y": y, "margin": BUFFER / EXTENT, "extent": EXTENT, "buffer": BUFFER,
              "layer": layer.name}
    if layer.level is None:
        params.update(category_codes=_CATEGORY_CODES, category_labels=_CATEGORY_LABELS, statuses=statuses)
        return INCIDENT_TILE_SQL, params
    params.update(level=layer.level, label_layer=f"{layer.name}_label")
    return AREA_TILE_SQL, params


def render_tile(conn, layer: Layer, z: int, x: int, y: int, statuses: list[str] | None = None) -> bytes:
    """The MVT bytes of one tile, read with a psycopg connection; b"" when the tile is empty."""
    sql, params = tile_query(layer, z, x, y, statuses)
    # binary=True: PostGIS's bytea arrives as raw bytes, no hex text to decode.
    row = conn.execute(sql, params, binary=True).fetchone()
    return bytes(row[0]) if row and row[0] else b""


async def render_tile_async(aconn, layer: Layer, z: int, x: int, y: int, statuses: list[str] | None = None) -> bytes:
    """As render_tile, on a psycopg AsyncConnection."""
    sql, params = tile_query(layer, z, x, y, statuses)
    cur = await aconn.execute(sql, params, binary=True)
    row = await cur.fetchone()
    return bytes(row[0]) if row and row[0] else b""


def etag(data: bytes) -> str:
    """A strong ETag for the tile bytes."""
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


def data_extents(conn) -> dict[str, dict]:
    """Feature count and WGS84 bounds per kind (district, street, community, grid, incident)."""
    out = {}
    for kind, n, xmin, ymin, xmax, ymax in conn.execute(EXTENTS_SQL).fetchall():
        out[kind] = {"count": n, "bounds": None if xmin is None else [xmin, ymin, xmax, ymax]}
    return out


def layers_document(conn, base_url: str) -> dict:
    """A TileJSON-like description of every layer: tile URL, zoom range, bounds and fields.

    ``bounds`` of the whole document is the union of the data; null when the database is empty.
    """
    extents = data_extents(conn)
    base = base_url.rstrip("/")
    layers = []
    union = None
    for layer in LAYERS.values():
        kind = layer.level or "incident"
        ext = extents.get(kind, {"count": 0, "bounds": None})
        b = ext["bounds"]
        if b is not None:
            union = b if union is None else [min(union[0], b[0]), min(union[1], b[1]),
                                             max(union[2], b[2]), max(union[3], b[3])]
        if layer.level is None:
            fields = {"id": "事件编号", "category": "类别编码", "category_label": "类别", "status": "状态",
                      "grid_code": "网格编码", "created_at": "上报时间 (UTC)"}
            vector_layers = [layer.name]
        else:
            fields = {"code": "编码", "name": "名称", "level": "层级", "parent_code": "上级编码"}
            vector_layers = [layer.name, f"{layer.name}_label"]
        layers.append({
            "id": layer.name, "title": layer.title, "tiles": [f"{base}/tiles/{layer.name}/{{z}}/{{x}}/{{y}}.mvt"],
            "minzoom": layer.minzoom, "maxzoom": layer.maxzoom, "bounds": b, "count": ext["count"],
            "vector_layers": vector_layers, "fields": fields, "max_age": layer.max_age,
        })
    center = None
    if union is not None:
        center = [(union[0] + union[2]) / 2, (union[1] + union[3]) / 2, 13]
    categories = [{"code": c, "label": v["label"], "color": CATEGORY_COLORS.get(c, DEFAULT_COLOR)}
                  for c, v in CATEGORIES.items()]
    return {"tilejson": "3.0.0", "name": "gridserver", "scheme": "xyz", "format": "pbf",
            "bounds": union, "center": center, "minzoom": min(l.minzoom for l in LAYERS.values()),
            "maxzoom": max(l.maxzoom for l in LAYERS.values()), "layers": layers, "categories": categories}
