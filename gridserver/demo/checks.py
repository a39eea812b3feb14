"""Checks on the demo city: exact tiling of each level, and the GCJ-02 outline offset.

Areas are measured in EPSG:4547 after splitting edges into ≤ ~5 m pieces (``metric_area``):
a WGS84 straight edge is curved in the metric plane, so only densified polygons are compared
fairly there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely

from gridserver.demo.partition import metric_area
from gridserver.errors import InvalidInput
from gridserver.geo.crs import gcj02_to_wgs84
from gridserver.settings import get_settings

PARENT_LEVEL = {"street": "district", "community": "street", "grid": "community"}


def tiling_errors(parent, children) -> dict[str, float]:
    """How far ``children`` are from tiling ``parent`` exactly.

    ``gap``: (area(parent) − area(∪children)) / area(parent), signed; ``overlap``:
    (Σ area(child) − area(∪children)) / area(parent); ``outside``: area of ∪children outside the
    parent, relative. All areas in m² (EPSG:4547). An exact tiling has all three at ~1e-15.
    """
    kids = np.asarray(list(children), dtype=object)
    union = shapely.union_all(kids)
    pa, ua = metric_area([parent, union])
    ka = metric_area(kids).sum()
    outside = shapely.difference(union, parent)
    oa = metric_area([outside])[0] if not outside.is_empty else 0.0
    return {"gap": float((pa - ua) / pa), "overlap": float((ka - ua) / pa), "outside": float(oa / pa)}


def city_tiling_report(city) -> dict[str, dict[str, float]]:
    """Worst tiling errors of each level against its parents (absolute values, relative areas)."""
    report = {}
    for level, up in PARENT_LEVEL.items():
        kids, parents = city[level], city[up]
        worst = {"gap": 0.0, "overlap": 0.0, "outside": 0.0}
        for code, geom in zip(parents["code"], parents.geometry):
            errs = tiling_errors(geom, kids.geometry[kids["parent_code"] == code].values)
            for k, v in errs.items():
                worst[k] = max(worst[k], abs(v))
        report[level] = worst
    return report


def _outline(path: Path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: cannot read GeoJSON ({exc})") from None
    feats = data.get("features") or [data]
    geoms = [shapely.geometry.shape(f.get("geometry", f)) for f in feats]
    return shapely.union_all(geoms)


def iou(a, b) -> float:
    """Intersection over union of two WGS84 polygons, measured in m² (EPSG:4547)."""
    inter, union = metric_area([shapely.intersection(a, b), shapely.union(a, b)])
    return float(inter / union)


def gcj02_outline_iou(shared_dir: Path | None = None) -> tuple[float, float]:
    """IoU of the DataV district outline (GCJ-02) with the OSM outline (WGS84): raw, corrected.

    ``district-440104.geojson`` is in GCJ-02 (Amap's shifted coordinates). Taken as WGS84 it is
    off by ~600 m; converted with ``gcj02_to_wgs84`` it should coincide with the OSM outline.
    """
    shared = Path(shared_dir) if shared_dir is not None else get_settings().shared_dir
    base = shared / "data" / "yuexiu"
    gcj = _outline(base / "district-440104.geojson")
    osm = _outline(base / "yuexiu_district_boundary_osm_wgs84.geojson")
    fixed = shapely.transform(gcj, lambda xy: np.column_stack(gcj02_to_wgs84(xy[:, 0], xy[:, 1])))
    return iou(gcj, osm), iou(fixed, osm)
