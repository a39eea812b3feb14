"""Demo incidents (事件): points inside the grids, with a category, a Chinese description and a time.

Grids are drawn to be of similar household size, so small grids mark dense areas: every grid gets
a random activity level (gamma-distributed, plus a few district hot spots) scaled by
``(median grid area / its area) ** 0.3`` per grid, and incidents fall uniformly inside their grid;
the point density is therefore highest where grids are small. Times are spread over the last
``days`` days before ``now``, mostly in the daytime. Everything but ``now`` comes from ``seed``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import STRtree

from gridserver.demo.partition import metric_area, metric_xy
from gridserver.errors import InvalidInput
from gridserver.settings import STORAGE_SRID

CHINA_TZ = timezone(timedelta(hours=8))

try:  # the taxonomy lives with the incidents domain
    from gridserver.incidents.categories import CATEGORIES as _CATS
except ImportError:  # pragma: no cover - only before the incidents package exists
    _CATS = {"other": {"label": "其他"}}

#: Relative frequency of each category in the demo (unlisted: 1).
CATEGORY_WEIGHTS = {
    "city_appearance": 9, "street_facility": 7, "public_facility": 5, "road_traffic": 4,
    "landscaping": 3, "water_drainage": 3, "construction": 2, "fire_safety": 2,
    "public_security": 2, "environment": 2, "market": 2, "neighbourhood": 3,
    "social_service": 2, "other": 1,
}

#: What is reported, per category; "{place}" becomes a road ("中山四路附近") or the grid.
TEMPLATES = {
    "city_appearance": ["{place}生活垃圾堆放未及时清运", "{place}墙面乱张贴小广告", "{place}路面有油污需清洗", "{place}垃圾桶满溢"],
    "street_facility": ["{place}商铺占道经营", "{place}流动摊贩聚集", "{place}共享单车乱停放堵塞人行道", "{place}店外乱摆卖"],
    "public_facility": ["{place}路灯不亮", "{place}井盖缺失存在安全隐患", "{place}公共座椅损坏", "{place}护栏松动"],
    "road_traffic": ["{place}机动车违章停放", "{place}人行道地砖破损", "{place}交通标志被遮挡", "{place}路面坑洼"],
    "landscaping": ["{place}行道树倾斜需扶正", "{place}绿化带杂草丛生", "{place}树枝遮挡路灯", "{place}绿地被踩踏损毁"],
    "water_drainage": ["{place}雨后积水", "{place}下水道堵塞反味", "{place}排水口被垃圾堵住", "{place}供水管漏水"],
    "construction": ["{place}楼顶疑似违法搭建", "{place}施工围挡破损", "{place}未经审批私自开挖路面", "{place}阳台违规外扩"],
    "fire_safety": ["{place}消防通道被占用", "{place}电动车楼道内充电", "{place}灭火器过期", "{place}私拉电线存在隐患"],
    "public_security": ["{place}夜间有可疑人员徘徊", "{place}监控摄像头损坏", "{place}出租屋人员登记不全", "{place}门禁损坏"],
    "environment": ["{place}餐馆油烟扰民", "{place}夜间施工噪音扰民", "{place}露天焚烧垃圾", "{place}污水直排"],
    "market": ["{place}无证经营", "{place}商品明码标价不规范", "{place}过期食品销售", "{place}占道卸货"],
    "neighbourhood": ["{place}邻里噪音纠纷", "{place}楼上漏水引发纠纷", "{place}公共走廊杂物堆放纠纷", "{place}宠物扰民"],
    "social_service": ["{place}独居老人需上门探访", "{place}居民咨询医保办理", "{place}残疾人补贴申请咨询", "{place}困难家庭求助"],
    "other": ["{place}居民反映其他问题", "{place}需现场核实的情况"],
}
_GENERIC = ["{place}{label}问题需处理", "{place}群众反映{label}相关事项"]


def _label(code: str) -> str:
    value = _CATS.get(code, code)
    return value.get("label", code) if isinstance(value, dict) else str(value)


def _sample_in(geom, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` uniform random lon/lat points inside a (small) WGS84 polygon."""
    xmin, ymin, xmax, ymax = geom.bounds
    shapely.prepare(geom)
    out = np.empty((0, 2))
    for _ in range(1000):
        cand = rng.uniform((xmin, ymin), (xmax, ymax), size=(max(4 * k, 16), 2))
        out = np.vstack([out, cand[shapely.contains_xy(geom, cand[:, 0], cand[:, 1])]])
        if len(out) >= k:
            return out[:k]
    raise InvalidInput("demo_incidents: could not place points in a grid (degenerate polygon?)")


def demo_incidents(
    grids: gpd.GeoDataFrame,
    n: int = 3000,
    seed: int = 0,
    *,
    now: datetime | None = None,
    days: int = 60,
    roads: gpd.GeoDataFrame | None = None,
) -> gpd.GeoDataFrame:
    """``n`` demo incidents inside ``grids`` (columns code, name, geometry; EPSG:4326).

    Returns a GeoDataFrame (EPSG:4326) with ``grid_code, category, category_label, description,
    created_at`` (timezone +08:00), ``lon, lat`` and the point ``geometry``, sorted by time. The
    same ``grids``, ``seed``, ``now`` (and ``roads``) give identical rows. ``now`` defaults to the
    start of the current hour in China; pass it for output that does not move with the clock.
    ``roads`` (highway, name, geometry) lets descriptions name the nearest road within ~150 m.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InvalidInput(f"demo_incidents: n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInput(f"demo_incidents: seed must be a non-negative integer, got {seed!r}")
    if days <= 0:
        raise InvalidInput(f"demo_incidents: days must be positive, got {days!r}")
    if grids is None or len(grids) == 0:
        raise InvalidInput("demo_incidents: no grids to place incidents in")
    if now is None:
        now = datetime.now(CHINA_TZ).replace(minute=0, second=0, microsecond=0)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=CHINA_TZ)
    rng = np.random.default_rng([int(seed), 31])

    geoms = np.asarray(grids.geometry.values, dtype=object)
    area = metric_area(geoms)
    cxy = metric_xy(*shapely.get_coordinates(shapely.centroid(geoms)).T)
    weight = rng.gamma(1.5, 1.0, size=len(geoms)) * (np.median(area) / area) ** 0.3
    for _ in range(3):  # a few hot spots (markets, stations) draw more reports
        centre = cxy[rng.integers(len(cxy))]
        d2 = ((cxy - centre) ** 2).sum(1)
        weight *= 1.0 + 2.0 * np.exp(-d2 / (2 * 500.0**2))
    per_grid = rng.multinomial(n, weight / weight.sum())

    pts = np.empty((0, 2))
    owner = np.empty(0, dtype=int)
    for i in np.flatnonzero(per_grid):
        pts = np.vstack([pts, _sample_in(geoms[i], int(per_grid[i]), rng)])
        owner = np.concatenate([owner, np.full(per_grid[i], i)])

    codes = sorted(_CATS)
    w = np.array([CATEGORY_WEIGHTS.get(c, 1) for c in codes], dtype="f8")
    cat = [codes[k] for k in rng.choice(len(codes), size=n, p=w / w.sum())]

    places = [f"{grids['name'].iloc[i]}内" for i in owner] if "name" in grids else ["网格内"] * n
    if roads is not None and len(roads) and n:
        named = roads[roads["name"].notna() & (roads["name"].astype(str) != "")]
        if len(named):
            lines = np.asarray(named.geometry.values, dtype=object)
            tree = STRtree(lines)
            p = shapely.points(pts)
            (qi, ti), _ = tree.query_nearest(p, max_distance=0.0015, return_distance=True, all_matches=False)
            names = named["name"].astype(str).values
            for a, b in zip(qi, ti):
                places[a] = f"{names[b]}附近"
    desc = []
    for c, place in zip(cat, places):
        options = TEMPLATES.get(c, _GENERIC)
        desc.append(options[int(rng.integers(len(options)))].format(place=place, label=_label(c)))

    # day offset uniform over the window, hour of day mostly 7-22h
    hour_w = np.array([1, 1, 1, 1, 1, 1, 2, 5, 8, 9, 9, 9, 8, 8, 9, 9, 9, 8, 7, 6, 5, 4, 2, 1], dtype="f8")
    day = rng.integers(0, days, size=n)
    hour = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    second = rng.integers(0, 3600, size=n)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    offs = [timedelta(days=-int(d), hours=int(h), seconds=int(s)) for d, h, s in zip(day, hour, second)]
    created = [start + o for o in offs]
    # draws for today that lie after ``now`` are squeezed into the part of today already past
    elapsed = (now - start) / timedelta(days=1)
    created = [t if t <= now else start + (t - start) * elapsed for t in created]

    df = pd.DataFrame({
        "grid_code": grids["code"].values[owner] if "code" in grids else owner,
        "category": cat,
        "category_label": [_label(c) for c in cat],
        "description": desc,
        "created_at": pd.to_datetime(created),
        "lon": pts[:, 0],
        "lat": pts[:, 1],
    })
    out = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs=STORAGE_SRID)
    out = out.sort_values(["created_at", "grid_code", "lon"], kind="mergesort").reset_index(drop=True)
    return out
