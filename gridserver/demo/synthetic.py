"""A synthetic stand-in for Yuexiu when the shared data is absent.

Same shape as the real thing: district 440104 near Guangzhou (113.27E, 23.13N), ~34 km², 18
streets, 222 communities, 1893 grids, a generated road network. The district outline is a
smooth random blob; roads are a slightly rotated, wavy grid of main roads with broken residential
lanes between them; streets are cut from the district by ``partition`` along the main roads,
then ``city.build_hierarchy`` runs exactly as for the real data. Names are generated from common
place-name characters; codes follow the real rules (street = district + 3 digits numbered in
reading order, community = street + 3 digits, grid = community + 3 digits).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from gridserver.demo import city as citymod
from gridserver.demo import partition as part
from gridserver.errors import InvalidInput
from gridserver.settings import STORAGE_SRID

CENTER = (113.27, 23.13)
_CHARS = (
    "东西南北中华新兴安宁和平光明建设人民文化花园桥湖山水云龙凤德福康泰丰盛荣昌永胜"
    "长乐吉祥瑞锦绣翠竹松柏桂兰梅荷青金玉宝元利仁义礼智信忠诚育英才秀雅鹤鹿麓江"
)


def _names(rng: np.random.Generator, n: int, suffix: str, taken: set[str]) -> list[str]:
    """``n`` new unique two-character names + suffix (no repeated character)."""
    out = []
    while len(out) < n:
        a, b = rng.choice(len(_CHARS), size=2, replace=False)
        name = _CHARS[a] + _CHARS[b] + suffix
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def synthetic_outline(rng: np.random.Generator, area_km2: float, center=CENTER):
    """A smooth blob of ``area_km2`` around ``center`` (WGS84 polygon on the noding grid)."""
    cx, cy = part.metric_xy([center[0]], [center[1]])[0]
    theta = np.linspace(0, 2 * np.pi, 160, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0.02, 0.09) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    poly = shapely.Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))
    scale = np.sqrt(area_km2 * 1e6 / poly.area)
    poly = shapely.affinity.scale(poly, scale, scale, origin=(0, 0))
    poly = shapely.affinity.translate(poly, cx, cy)
    return shapely.set_precision(part.to_wgs84(poly), part.GRID)


def _wavy_line(rng, start, end, step: float, wobble: float) -> np.ndarray:
    n = max(int(np.hypot(*(np.subtract(end, start))) / step), 2)
    t = np.linspace(0, 1, n + 1)
    pts = np.outer(1 - t, start) + np.outer(t, end)
    d = np.subtract(end, start) / np.hypot(*np.subtract(end, start))
    normal = np.array([-d[1], d[0]])
    off = rng.normal(0, wobble, size=len(t))
    off[[0, -1]] = 0
    return pts + off[:, None] * normal


def synthetic_roads(rng: np.random.Generator, outline, major_spacing: float, minor_spacing: float) -> gpd.GeoDataFrame:
    """Main roads on a rotated wavy grid every ``major_spacing`` m, broken lanes in between."""
    om = part.to_metric(outline)
    xmin, ymin, xmax, ymax = om.bounds
    c = np.array([(xmin + xmax) / 2, (ymin + ymax) / 2])
    half = 0.75 * max(xmax - xmin, ymax - ymin)
    angle = rng.uniform(-0.25, 0.25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    names: set[str] = set()
    rows = []
    for spacing, kind in ((major_spacing, "major"), (minor_spacing, "minor")):
        offsets = np.arange(-half, half + 1, spacing)
        for axis in (0, 1):
            for off in offsets:
                if kind == "minor" and np.any(np.abs(np.arange(-half, half + 1, major_spacing) - off) < spacing / 2):
                    continue  # a main road runs here already
                o = off + rng.uniform(-0.15, 0.15) * spacing
                a, b = np.array([-half, o]), np.array([half, o])
                if axis:
                    a, b = a[::-1], b[::-1]
                pts = c + (_wavy_line(rng, a, b, 120.0, 6.0 if kind == "major" else 10.0) - 0) @ rot.T
                line = shapely.LineString(pts)
                if kind == "major":
                    highway = ("primary", "secondary", "tertiary")[int(rng.integers(3))]
                    rows.append((highway, _names(rng, 1, "路", names)[0], line))
                else:
                    # lanes are broken: keep random stretches of a few hundred metres
                    length, pos = line.length, 0.0
                    name = _names(rng, 1, ("街", "巷", "里")[int(rng.integers(3))], names)[0]
                    while pos < length:
                        seg = rng.uniform(200, 700)
                        if rng.random() < 0.65:
                            rows.append(("residential", name, shapely.ops.substring(line, pos, min(pos + seg, length))))
                        pos += seg + rng.uniform(0, 150)
    geoms = part.to_wgs84(np.asarray([r[2] for r in rows], dtype=object))
    roads = gpd.GeoDataFrame(
        {"highway": [r[0] for r in rows], "name": [r[1] for r in rows]}, geometry=list(geoms), crs=STORAGE_SRID
    )
    return roads[roads.intersects(outline)].reset_index(drop=True)


def synthetic_city(
    seed: int = 0,
    *,
    streets: int = 18,
    communities: int = 222,
    grids: int = citymod.GRID_TOTAL,
    area_km2: float = 34.0,
    center=CENTER,
) -> dict[str, gpd.GeoDataFrame]:
    """A generated city shaped like Yuexiu; same output and guarantees as ``city.build_city``.

    The counts and area can be reduced (e.g. for fast tests); communities per street are
    allotted by street area (at least ``min(5, communities // streets)``), grids by community area
    (at least 3).
    """
    seed = citymod._check_seed(seed)
    if not (1 <= streets <= 999 and streets <= communities <= 999 * streets and 3 * communities <= grids):
        raise InvalidInput(
            f"synthetic_city: need 1 ≤ streets ≤ communities and grids ≥ 3·communities "
            f"(got streets={streets}, communities={communities}, grids={grids})"
        )
    if area_km2 <= 0:
        raise InvalidInput(f"synthetic_city: area_km2 must be positive, got {area_km2}")
    rng = np.random.default_rng([seed, 440104])
    outline = synthetic_outline(rng, area_km2, center)
    # Yuexiu: ~0.15 km² communities, main roads ~450 m apart, lanes ~150 m apart.
    comm_side = np.sqrt(area_km2 * 1e6 / communities)
    roads = synthetic_roads(rng, outline, 1.2 * comm_side, 0.4 * comm_side)

    major = citymod._road_lines(roads, citymod.MAJOR_ROADS)
    _, kids = part.partition(outline, [outline], [streets], major, rng, pieces=3.0)
    kids = kids[0]
    area = part.metric_area(kids)
    order = citymod._ordered(kids, float(area.sum()))
    taken: set[str] = set()
    street_names = _names(rng, streets, "街道", taken)
    street_rows = [
        (f"{citymod.DISTRICT_CODE}{i:03d}", street_names[i - 1], kids[k]) for i, k in enumerate(order, start=1)
    ]
    counts = part.allocate(area[order], communities, max(1, min(5, communities // streets)))
    comm_names = _names(rng, communities, "社区", taken)
    comms: dict[str, list[tuple[str, str]]] = {}
    for (scode, _, _), n in zip(street_rows, counts):
        comms[scode] = [(f"{scode}{j:03d}", comm_names.pop(0)) for j in range(1, n + 1)]
    return citymod.build_hierarchy(street_rows, comms, roads, seed, grid_total=grids)
