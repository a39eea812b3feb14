"""Aggregates of point layers by admin level, grid or H3 cell, with time buckets; hot-spot reports.

Admin levels use the codes stored on each record at intake (the covering grid found by
``areas/locate.py``/``areas/lookup.py``), cut to the level's length: codes are prefix-hierarchical
(district 6, street 9, community 12, grid 15 digits). H3 cells come from the h3 library on the
stored WGS84 point. Time buckets (day/week/month, weeks start on Monday) are in China Standard
Time, the clock of the users; ``from`` is inclusive and ``to`` exclusive; naive times are UTC+8.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import h3
import numpy as np
import pandas as pd
from sqlalchemy import text

from gridserver.analytics import hotspots
from gridserver.analytics.features import FeatureQuery, where_sql
from gridserver.analytics.jobs import LEVEL_LEN
from gridserver.analytics.layers import Layer
from gridserver.auth.users import User
from gridserver.errors import InvalidInput
from gridserver.geo.geojson import geojson_sql

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
BUCKETS = ("day", "week", "month")
H3_RANGE = (7, 10)


@dataclass
class AggregateSpec:
    by: str  # district | street | community | grid | h3
    h3_res: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    categories: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    bucket: str | None = None
    geometry: bool = False


def parse_by(value: str) -> tuple[str, int | None]:
    """'grid' | 'community' | 'street' | 'district' | 'h3:7'..'h3:10' → (kind, resolution)."""
    v = (value or "").strip().lower()
    if v in LEVEL_LEN:
        return v, None
    m = re.fullmatch(r"h3:(\d+)", v)
    if m:
        res = int(m.group(1))
        if not H3_RANGE[0] <= res <= H3_RANGE[1]:
            raise InvalidInput(f"by: H3 resolution must be {H3_RANGE[0]}–{H3_RANGE[1]}, got {res}")
        return "h3", res
    raise InvalidInput(f"by must be one of grid, community, street, district or h3:7..h3:10; got {value!r}")


def parse_time(value: str | None, name: str) -> datetime | None:
    """ISO 8601 date or date-time; naive = China Standard Time."""
    if value is None or value == "":
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO 8601 date or date-time such as 2026-03-01 or "
                           f"2026-03-01T08:00:00+08:00, got {value!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=LOCAL_TZ)


def parse_duration(value: str, name: str) -> timedelta:
    """'7d', '24h', '2w' → timedelta."""
    m = re.fullmatch(r"\s*(\d+)\s*([dhw])\s*", value or "")
    if not m or int(m.group(1)) == 0:
        raise InvalidInput(f"{name} must be a duration such as 7d, 48h or 4w, got {value!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "w": timedelta(weeks=n)}[unit]


def _where(layer: Layer, spec: AggregateSpec, user: User | None) -> tuple[str, dict]:
    q = FeatureQuery(limit=None)
    if spec.categories:
        q.props["category"] = spec.categories
    if spec.statuses:
        q.props["status"] = spec.statuses
    where, params = where_sql(layer, q, user)
    if spec.start is not None or spec.end is not None:
        if not layer.time_start:
            raise InvalidInput(f"layer {layer.id!r} has no time: from/to/bucket do not apply")
    if spec.start is not None:
        where += f" AND {layer.time_start} >= :agg_from"
        params["agg_from"] = spec.start
    if spec.end is not None:
        where += f" AND {layer.time_start} < :agg_to"
        params["agg_to"] = spec.end
    return where, params


def _period_sql(layer: Layer, bucket: str | None) -> str | None:
    if bucket is None:
        return None
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}, got {bucket!r}")
    if not layer.time_start:
        raise InvalidInput(f"layer {layer.id!r} has no time: bucket does not apply")
    return f"date_trunc('{bucket}', {layer.time_start} AT TIME ZONE 'Asia/Shanghai')::date"


def h3_cells(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """H3 cell ids (strings) of WGS84 points."""
    return np.array([h3.latlng_to_cell(float(y), float(x), res) for x, y in zip(lon, lat)], dtype=object)


def h3_polygon(cell: str) -> dict:
    """The cell's boundary as a GeoJSON Polygon (lon, lat; closed ring)."""
    ring = [[round(lng, 7), round(lat, 7)] for lat, lng in h3.cell_to_boundary(cell)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def count_table(conn, layer: Layer, spec: AggregateSpec, user: User | None) -> tuple[pd.DataFrame, int]:
    """(DataFrame key[, period], count — sorted), number of records with no key (outside every grid)."""
    where, params = _where(layer, spec, user)
    period = _period_sql(layer, spec.bucket)
    if spec.by == "h3":
        cols = "ST_X(t.geom) AS lon, ST_Y(t.geom) AS lat" + (f", {period} AS period" if period else "")
        df = pd.read_sql(text(f"SELECT {cols} FROM {layer.table} WHERE {where} AND t.geom IS NOT NULL"), conn,
                         params=params)
        df["key"] = h3_cells(df["lon"].to_numpy(), df["lat"].to_numpy(), spec.h3_res) if len(df) else []
        keys = ["key"] + (["period"] if period else [])
        out = df.groupby(keys).size().reset_index(name="count") if len(df) else pd.DataFrame(columns=keys + ["count"])
        return out.sort_values(keys).reset_index(drop=True), 0
    n = LEVEL_LEN[spec.by]
    key = f"left(t.grid_code, {n})"
    sel = f"{key} AS key" + (f", {period} AS period" if period else "")
    group = "1" + (", 2" if period else "")
    df = pd.read_sql(text(f"SELECT {sel}, count(*) AS count FROM {layer.table} WHERE {where} "
                          f"GROUP BY {group} ORDER BY {group}"), conn, params=params)
    missing = int(df.loc[df["key"].isna(), "count"].sum())
    return df[df["key"].notna()].reset_index(drop=True), missing


def _area_info(conn, codes: list[str], geometry: bool) -> dict[str, dict]:
    geom = geojson_sql("geom") if geometry else "NULL"
    rows = conn.execute(text(f"SELECT code, name, {geom} FROM admin_areas WHERE code = ANY(:c) AND valid_to IS NULL"),
                        {"c": codes})
    return {r[0]: {"name": r[1], "geometry": json.loads(r[2]) if r[2] else None} for r in rows}


def aggregate(conn, layer: Layer, spec: AggregateSpec, user: User | None) -> dict:
    """Counts per key (and period), with names for admin keys and geometry on request."""
    df, missing = count_table(conn, layer, spec, user)
    keys = sorted(df["key"].unique()) if len(df) else []
    info = _area_info(conn, keys, spec.geometry) if spec.by != "h3" else {}
    buckets = []
    for r in df.itertuples(index=False):
        item = {"key": r.key, "count": int(r.count)}
        if spec.bucket:
            item["period"] = r.period.isoformat() if hasattr(r.period, "isoformat") else str(r.period)
        if spec.by != "h3":
            item["name"] = info.get(r.key, {}).get("name")
        if spec.geometry:
            item["geometry"] = h3_polygon(r.key) if spec.by == "h3" else info.get(r.key, {}).get("geometry")
        buckets.append(item)
    return {"layer": layer.id, "by": spec.by if spec.by != "h3" else f"h3:{spec.h3_res}", "bucket": spec.bucket,
            "from": spec.start.isoformat() if spec.start else None, "to": spec.end.isoformat() if spec.end else None,
            "category": spec.categories or None, "total": int(df["count"].sum()) if len(df) else 0,
            "unlocated": missing, "buckets": buckets}


# --- hot spots -------------------------------------------------------------------------------------
def _grid_neighbours(conn, level: str, codes: list[str]) -> list[list[int]]:
    pos = {c: i for i, c in enumerate(codes)}
    rows = conn.execute(text(
        "SELECT a.code, b.code FROM admin_areas a JOIN admin_areas b ON a.geom && b.geom AND a.code < b.code "
        "AND ST_Intersects(a.geom, b.geom) WHERE a.level = :l AND b.level = :l AND a.valid_to IS NULL "
        "AND b.valid_to IS NULL"), {"l": level})
    out: list[list[int]] = [[] for _ in codes]
    for a, b in rows:
        if a in pos and b in pos:
            out[pos[a]].append(pos[b])
            out[pos[b]].append(pos[a])
    return out


def hotspot_report(conn, layer: Layer, *, by: str, window: timedelta, baseline: timedelta, end: datetime | None,
                   categories: list[str], user: User | None, alpha: float = 0.01, min_count: int = 3,
                   min_ratio: float = 1.5, geometry: bool = False) -> dict:
    """Cells whose counts in [end − window, end) rise significantly over [end − window − baseline, end − window)."""
    kind, res = parse_by(by)
    if not layer.time_start:
        raise InvalidInput(f"layer {layer.id!r} has no time; hot spots need incidents")
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha must be between 0 and 1, got {alpha}")
    end = end or datetime.now(timezone.utc)
    w0, b0 = end - window, end - window - baseline
    spec_w = AggregateSpec(by=kind, h3_res=res, start=w0, end=end, categories=categories)
    spec_b = AggregateSpec(by=kind, h3_res=res, start=b0, end=w0, categories=categories)
    win, _ = count_table(conn, layer, spec_w, user)
    base, _ = count_table(conn, layer, spec_b, user)
    if kind == "h3":
        cells = sorted(set(win["key"]) | set(base["key"]))
        neighbours_of = {c: set(h3.grid_disk(c, 1)) - {c} for c in cells}
        # the cells around active ones take part with zero counts, so a cluster is judged against calm ground
        cells = sorted(set(cells).union(*neighbours_of.values()) if cells else set())
        pos = {c: i for i, c in enumerate(cells)}
        neighbours = [[pos[n] for n in h3.grid_disk(c, 1) if n != c and n in pos] for c in cells]
    else:
        where, params = "level = :l AND valid_to IS NULL", {"l": kind}
        cells = list(conn.execute(text(f"SELECT code FROM admin_areas WHERE {where} ORDER BY code"), params).scalars())
        if user is not None and user.scope_code and user.role not in ("admin", "analyst"):
            cells = [c for c in cells if c.startswith(user.scope_code) or user.scope_code.startswith(c)]
        neighbours = _grid_neighbours(conn, kind, cells)
    x = pd.Series(0, index=cells, dtype="i8").add(win.set_index("key")["count"], fill_value=0).reindex(cells).fillna(0)
    b = pd.Series(0, index=cells, dtype="i8").add(base.set_index("key")["count"], fill_value=0).reindex(cells).fillna(0)
    wd, bd = window / timedelta(days=1), baseline / timedelta(days=1)
    st = hotspots.surge_test(x.to_numpy().astype("i8"), b.to_numpy().astype("i8"), wd, bd,
                             alpha=alpha, min_count=min_count, min_ratio=min_ratio)
    gz, gp = hotspots.gi_star(x.to_numpy(), neighbours)
    info = _area_info(conn, cells, geometry) if kind != "h3" else {}
    out = []
    for i, cell in enumerate(cells):
        if st["count"][i] == 0 and st["baseline"][i] == 0:
            continue
        item = {"key": cell, "count": int(st["count"][i]), "baseline_count": int(st["baseline"][i]),
                "expected": round(float(st["expected"][i]), 3), "rate_ratio": round(float(st["ratio"][i]), 3),
                "z": round(float(st["z"][i]), 3), "p_value": float(st["p"][i]), "q_value": float(st["q"][i]),
                "gi_star_z": round(float(gz[i]), 3), "gi_star_p": float(gp[i]), "flagged": bool(st["flagged"][i])}
        if kind != "h3":
            item["name"] = info.get(cell, {}).get("name")
        if geometry:
            item["geometry"] = h3_polygon(cell) if kind == "h3" else info.get(cell, {}).get("geometry")
        out.append(item)
    out.sort(key=lambda d: (not d["flagged"], d["p_value"], d["key"]))
    return {"layer": layer.id, "by": kind if kind != "h3" else f"h3:{res}", "method":
            "conditional Poisson rate test (binomial), Benjamini–Hochberg FDR; Getis-Ord Gi* reported",
            "window": {"from": w0.isoformat(), "to": end.isoformat(), "days": wd},
            "baseline": {"from": b0.isoformat(), "to": w0.isoformat(), "days": bd},
            "alpha": alpha, "min_count": min_count, "min_ratio": min_ratio, "cells_tested": len(cells),
            "flagged": sum(1 for d in out if d["flagged"]), "cells": out}
