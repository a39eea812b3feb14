"""Feature queries over the analyst layers: one SQL builder for OGC items, /query and exports.

``FeatureQuery`` holds the already-validated filters; ``where_sql`` turns them (plus the caller's
visibility rule) into one WHERE clause with bound parameters. Spatial filters use the GiST index
(``&&``) and then the exact predicate (``ST_Intersects``; edges count, as OGC bbox asks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

from sqlalchemy import text

from gridserver.analytics.layers import Layer, mask_properties, visibility
from gridserver.analytics.params import CRS_LIST, CRS84, OutputCRS
from gridserver.auth.users import User


@dataclass
class FeatureQuery:
    boxes: list[tuple[float, float, float, float, int]] = field(default_factory=list)  # OR-ed boxes
    region_wkt: str | None = None  # EPSG:4326 (multi)polygon
    radius: tuple[float, float, float] | None = None  # lon, lat, metres
    time: tuple[datetime | None, datetime | None, bool] | None = None
    time_end_exclusive: bool = False  # OGC intervals are closed; /query and exports use [from, to)
    props: dict[str, list[str]] = field(default_factory=dict)  # property → accepted values (OR)
    cql: tuple[str, dict] | None = None  # compiled CQL2 condition
    limit: int | None = 10
    offset: int = 0
    after: str | None = None  # keyset paging: only ids greater than this (then offset is not applied)
    crs: OutputCRS = field(default_factory=lambda: CRS_LIST[CRS84])


def where_sql(layer: Layer, q: FeatureQuery, user: User | None) -> tuple[str, dict]:
    """The WHERE clause (alias ``t``) selecting what ``q`` asks for and ``user`` may see."""
    vis, params = visibility(layer, user)
    conds = [layer.base_where, vis]
    if q.boxes:
        ors = []
        for i, (x0, y0, x1, y1, srid) in enumerate(q.boxes):
            # ST_Envelope of the diagonal: a point or a line when the box is degenerate (still intersects edges)
            env = (f"ST_Envelope(ST_SetSRID(ST_MakeLine(ST_MakePoint(:bx0_{i}, :by0_{i}), "
                   f"ST_MakePoint(:bx1_{i}, :by1_{i})), {srid}))")
            if srid != 4326:
                env = f"ST_Transform({env}, 4326)"
            ors.append(f"(t.geom && {env} AND ST_Intersects(t.geom, {env}))")
            params.update({f"bx0_{i}": x0, f"by0_{i}": y0, f"bx1_{i}": x1, f"by1_{i}": y1})
        conds.append("(" + " OR ".join(ors) + ")")
    if q.region_wkt:
        conds.append("(t.geom && ST_GeomFromText(:region_wkt, 4326) AND ST_Intersects(t.geom, ST_GeomFromText(:region_wkt, 4326)))")
        params["region_wkt"] = q.region_wkt
    if q.radius:
        lon, lat, metres = q.radius
        conds.append("ST_DWithin(t.geom::geography, ST_SetSRID(ST_MakePoint(:r_lon, :r_lat), 4326)::geography, :r_m)")
        params.update(r_lon=lon, r_lat=lat, r_m=metres)
    if q.time and layer.time_start:
        start, end, _instant = q.time
        t0 = layer.time_start
        t1 = layer.time_end or layer.time_start
        # intersection of [t0, t1] with [start, end]; an open-ended feature (t1 NULL) is still valid
        if end is not None:
            conds.append(f"{t0} {'<' if q.time_end_exclusive else '<='} :dt_end")
            params["dt_end"] = end
        if start is not None:
            conds.append(f"({t1} IS NULL OR {t1} >= :dt_start)" if layer.time_end else f"{t1} >= :dt_start")
            params["dt_start"] = start
    for i, (prop, values) in enumerate(sorted(q.props.items())):
        expr = "t.id" if prop == "id" else layer.props.get(prop, f"t.{prop}")
        if layer.queryables.get(prop) == "integer":
            conds.append(f"{expr} = ANY(:pv_{i}::bigint[])")
            params[f"pv_{i}"] = [int(v) for v in values]
        elif layer.queryables.get(prop) == "number":
            conds.append(f"{expr} = ANY(:pv_{i}::float8[])")
            params[f"pv_{i}"] = [float(v) for v in values]
        else:
            conds.append(f"{expr}::text = ANY(:pv_{i})")
            params[f"pv_{i}"] = list(values)
    if q.after is not None:
        conds.append(f"{layer.id_sql} > :after_id")
        params["after_id"] = int(q.after) if layer.id_type == "integer" else q.after
    if q.cql:
        sql, p = q.cql
        conds.append(f"({sql})")
        params.update(p)
    return " AND ".join(conds), params


def count_features(conn, layer: Layer, q: FeatureQuery, user: User | None) -> int:
    where, params = where_sql(layer, q, user)
    return conn.execute(text(f"SELECT count(*) FROM {layer.table} WHERE {where}"), params).scalar_one()


def _select(layer: Layer, q: FeatureQuery, user: User | None, *, geometry: bool = True) -> tuple[str, dict]:
    where, params = where_sql(layer, q, user)
    props = ", ".join(f"{expr} AS \"{name}\"" for name, expr in layer.props.items())
    geom = q.crs.geojson_sql(layer.geom_sql, polygonal=not layer.point) if geometry else "NULL"
    sql = (f"SELECT {layer.id_sql} AS fid, {geom} AS geometry, {props} FROM {layer.table} "
           f"WHERE {where} ORDER BY {layer.id_sql}")
    if q.limit is not None:
        sql += " LIMIT :lim"
        params["lim"] = q.limit
    if q.offset and q.after is None:
        sql += " OFFSET :off"
        params["off"] = q.offset
    return sql, params


def _feature(layer: Layer, row, user: User | None) -> dict:
    m = dict(row._mapping)
    fid = m.pop("fid")
    geometry = m.pop("geometry")
    return {"type": "Feature", "id": fid, "geometry": json.loads(geometry) if geometry else None,
            "properties": mask_properties(layer, user, m)}


def fetch_features(conn, layer: Layer, q: FeatureQuery, user: User | None) -> list[dict]:
    """One page of GeoJSON features (dicts), ordered by id."""
    sql, params = _select(layer, q, user)
    return [_feature(layer, r, user) for r in conn.execute(text(sql), params)]


def stream_features(conn, layer: Layer, q: FeatureQuery, user: User | None, *, batch: int = 2000,
                    geometry: bool = True) -> Iterator[dict]:
    """All matching features, fetched ``batch`` rows at a time through a server-side cursor."""
    sql, params = _select(layer, q, user, geometry=geometry)
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(text(sql), params)
    for row in result:
        yield _feature(layer, row, user)


def stream_frames(conn, layer: Layer, q: FeatureQuery, user: User | None, *, batch: int = 50_000):
    """All matching features as GeoDataFrames of ``batch`` rows (WKB decoded vectorised; for file exports)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    where, params = where_sql(layer, q, user)
    props = ", ".join(f"{expr} AS \"{name}\"" for name, expr in layer.props.items())
    sql = (f"SELECT {layer.id_sql} AS id, ST_AsBinary({layer.geom_sql}) AS wkb, {props} FROM {layer.table} "
           f"WHERE {where} ORDER BY {layer.id_sql}")
    if q.limit is not None:
        sql += " LIMIT :lim"
        params["lim"] = q.limit
    if q.offset:
        sql += " OFFSET :off"
        params["off"] = q.offset
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(text(sql), params)
    cols = list(result.keys())
    for rows in result.partitions(batch):
        df = pd.DataFrame(rows, columns=cols)
        geom = shapely.from_wkb([bytes(b) if b is not None else None for b in df.pop("wkb")])
        if layer.required_table is not None:  # block data: every row through the masking layer
            masked = [mask_properties(layer, user, r) for r in df.drop(columns=["id"]).to_dict("records")]
            df = pd.concat([df[["id"]], pd.DataFrame(masked, index=df.index)], axis=1)
        yield gpd.GeoDataFrame(df, geometry=geom, crs="EPSG:4326")


def fetch_one(conn, layer: Layer, fid: str, crs: OutputCRS, user: User | None) -> dict | None:
    q = FeatureQuery(limit=1, crs=crs)
    where, params = where_sql(layer, q, user)
    props = ", ".join(f"{expr} AS \"{name}\"" for name, expr in layer.props.items())
    if layer.id_type == "integer":
        try:
            params["fid"] = int(fid)
        except ValueError:
            return None
    else:
        params["fid"] = fid
    row = conn.execute(text(
        f"SELECT {layer.id_sql} AS fid, {crs.geojson_sql(layer.geom_sql, polygonal=not layer.point)} AS geometry, "
        f"{props} FROM {layer.table} WHERE {where} AND {layer.id_sql} = :fid"), params).first()
    return None if row is None else _feature(layer, row, user)


def extent(conn, layer: Layer, user: User | None) -> dict:
    """Spatial bbox (CRS84) and temporal interval of what ``user`` may see in ``layer``."""
    where, params = where_sql(layer, FeatureQuery(), user)
    t0 = f"min({layer.time_start})" if layer.time_start else "NULL::timestamptz"
    t1 = (f"CASE WHEN bool_or({layer.time_end} IS NULL) THEN NULL ELSE max({layer.time_end}) END"
          if layer.time_end else (f"max({layer.time_start})" if layer.time_start else "NULL::timestamptz"))
    row = conn.execute(text(
        f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), a, b FROM ("
        f"SELECT ST_Extent(t.geom) AS e, {t0} AS a, {t1} AS b FROM {layer.table} WHERE {where}) s"), params).first()
    out = {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]], "crs": CRS84}}
    if row[0] is not None:
        out["spatial"]["bbox"] = [[round(float(v), 7) for v in row[:4]]]
    if layer.time_start:
        def iso(ts):
            return None if ts is None else ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out["temporal"] = {"interval": [[iso(row[4]), iso(row[5])]],
                           "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    return out
