"""GeoJSON out of PostGIS at a fixed number of decimals, without handing out invalid polygons.

``ST_AsGeoJSON(geom, 7)`` rounds every coordinate to 1e-7° (~1 cm). A valid polygon with a vertex closer
than that to another of its edges comes out self-intersecting (the Yuexiu demo has one such grid of
1,893; QGIS and shapely then call it invalid). Those few are snapped to the same grid with validity kept
(``ST_ReducePrecision``); the rest go out exactly as ``ST_AsGeoJSON`` writes them. Snapping the stored
geometry instead was tried and is worse: neighbours that share that grid's edges are not on the grid,
and overlaps of up to 0.4 m² appear between them.
"""

from __future__ import annotations


def geojson_sql(expr: str, decimals: int = 7, *, polygonal: bool = True) -> str:
    """SQL giving the GeoJSON text of geometry ``expr`` at ``decimals``; ``polygonal=False`` for points."""
    if not polygonal:
        return f"ST_AsGeoJSON({expr}, {decimals})"
    step = f"1e-{decimals}"
    return (f"(SELECT ST_AsGeoJSON(CASE WHEN ST_IsValid(ST_SnapToGrid(x, {step})) THEN x "
            f"ELSE ST_ReducePrecision(x, {step}) END, {decimals}) FROM (SELECT {expr} AS x) AS g)")
