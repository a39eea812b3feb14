"""Demo block data (实有人口/房屋/法人) at Yuexiu scale or a small one, written with COPY.

``build_demo_blockdata(engine, city, scale="full")`` makes, deterministically from ``seed``:

* **buildings**: footprints (rectangles) inside the blocks the roads form — roads (buffered by their
  class) and OSM green areas (``../shared``, when present) are kept free — each with a standard
  house-level address on its nearest *real* road name (numbers along the road, skipping numbers the
  address base already uses), floors, use and year;
* **households** in rooms of those buildings (room-level standard addresses, ``…H0012S0501``),
  **people** in households (plausible Chinese names, format-valid fictitious ID numbers with GB 11643
  check digits — stored, as always, only as HMAC + mask — and phones), **key-group tags**, and
  **businesses** (valid GB 32100 credit codes) on the ground floors;
* for every record the department's **raw row** in an **import run** per dataset, and a
  ``confirmed_at`` spread over the months before that department's last delivery
  (:mod:`gridserver.demo.blockdata_raw`).

Scales: ``full`` ≈ Yuexiu (100 k buildings, 400 k households, 1.17 M people, 60 k businesses);
``small`` 1/20 of it; ``tiny`` (tests) 1/400.

Grids follow the one rule of :mod:`gridserver.blockdata.service` — a building goes to the grid with
the largest share of its footprint (smallest code on ties), everything inside it follows — computed
here with vectorised shapely for speed (the tests check it equals ``service.link_grids``).

The standard addresses are written straight into ``std_addresses`` by COPY with codes from the same
scheme and counters as :mod:`gridserver.address.base` (the history trigger records them); bulk_create's
per-row code function would take minutes for half a million rooms. Re-running reuses them by key.

Loading (:mod:`gridserver.demo.bulkload`): the address inserts (in building-aligned chunks) and the
table COPYs run on two connections while this thread generates the next table; the loaded tables'
indexes and constraints are set aside for the load (journalled in the people import run) and rebuilt
in parallel after it. A failed load removes its rows and restores them; a killed one is repaired by
the next build (:func:`_clear_demo`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from sqlalchemy import text

from gridserver.address.base import copy_rows, set_actor
from gridserver.address.normalize import normalize_address
from gridserver.blockdata.codes import CREDIT_ALPHABET, credit_check_index, id_check_bytes
from gridserver.blockdata.privacy import mask_many, pii_key
from gridserver.demo import bulkload
from gridserver.demo.blockdata_raw import DATASETS, DEMO_ACTOR, confirmed_dates, constant, deliveries, raw_rows, timestamps
from gridserver.geo.crs import metric_transformer

SCALES = {
    "full": dict(buildings=100_000, households=400_000, people=1_170_000, businesses=60_000),
    "small": dict(buildings=5_000, households=20_000, people=58_500, businesses=3_000),
    "tiny": dict(buildings=250, households=1_000, people=2_900, businesses=150),
}
ADDRESS_SOURCE = "示范实有数据"
SOURCES = {"building": "住建局", "household": "公安户籍", "person": "公安户籍", "business": "市场监管"}
DISTRICT = "440104"
_HALF_WIDTH = {"motorway": 15, "trunk": 14, "primary": 12, "secondary": 9, "tertiary": 7, "residential": 4,
               "unclassified": 4, "service": 3, "living_street": 3, "pedestrian": 3}
_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤") + ["欧阳", "司马", "诸葛"]
_GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国志红玉梅文斌波辉宇浩然子涵欣怡梓轩诗琪家豪嘉欣俊杰晓东婷雪琳海燕凤春秋冬健康宁安乐思远逸晨雨萱泽锦荣锋翠珍淑英德才佳慧颖琳")
_CATEGORIES = [("餐饮", 0.22), ("零售", 0.26), ("住宿", 0.04), ("美容美发", 0.07), ("教育培训", 0.05), ("医疗卫生", 0.03),
               ("金融", 0.03), ("科技", 0.06), ("商务服务", 0.12), ("维修", 0.04), ("文化娱乐", 0.03), ("批发", 0.05)]
_SHOP_WORD = {"餐饮": "餐厅", "零售": "商行", "住宿": "酒店", "美容美发": "美发店", "教育培训": "培训中心", "医疗卫生": "诊所",
              "金融": "投资咨询", "科技": "科技", "商务服务": "商务咨询", "维修": "维修部", "文化娱乐": "文化传播", "批发": "贸易"}
_TRADE = list("鸿发盛隆兴旺福安顺达恒信诚和美华宝利源泰昌荣康裕祥瑞丰")
_OTHER_AREAS = ["440111", "440106", "430102", "450103", "360102", "441302", "445202", "440902", "350102", "510104", "420102"]


def _green(shared_dir: Path | None):
    if shared_dir is None:
        return None
    p = Path(shared_dir) / "data" / "yuexiu" / "yuexiu_green_osm_wgs84.geojson"
    if not p.exists():
        return None
    import geopandas as gpd

    g = gpd.read_file(p)
    g = g[g.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    return g.geometry.values


def blocks(district_wgs, roads, green=None, grids_wgs=None) -> np.ndarray:
    """Block polygons (EPSG:4547) between the buffered roads, green areas cut out; with ``grids_wgs``
    also cut along grid edges (1.5 m back), so a generated building rarely straddles two grids."""
    tf = metric_transformer()
    to_m = lambda g: shapely.transform(g, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))  # noqa: E731
    lines = to_m(np.asarray(roads.geometry.values))
    widths = np.array([_HALF_WIDTH.get(h, 2.5) for h in roads["highway"]])
    free = shapely.union_all(shapely.buffer(lines, widths, quad_segs=2))
    if green is not None and len(green):
        free = shapely.union_all([free, shapely.union_all(shapely.make_valid(to_m(np.asarray(green))))])
    land = shapely.difference(to_m(district_wgs), free)
    if grids_wgs is not None:
        edges = shapely.union_all(shapely.buffer(shapely.boundary(to_m(np.asarray(grids_wgs))), 1.5, quad_segs=1))
        land = shapely.difference(land, edges)
    parts = shapely.get_parts(land)
    parts = parts[shapely.get_type_id(parts) == 3]
    return parts[shapely.area(parts) > 300]


def place_buildings(block_polys: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """About ``n`` rectangular footprints (EPSG:4547), each wholly inside a block, not overlapping."""
    total = float(shapely.area(block_polys).sum())
    tree = shapely.STRtree(block_polys)
    x0, y0, x1, y1 = shapely.total_bounds(block_polys)
    step = np.sqrt(total / (n * 1.5))
    for _ in range(4):
        xs = np.arange(x0 + step / 2, x1, step)
        ys = np.arange(y0 + step / 2, y1, step)
        gx, gy = np.meshgrid(xs, ys)
        cx, cy = gx.ravel(), gy.ravel()
        w = step * rng.uniform(0.55, 0.85, cx.size)
        h = step * rng.uniform(0.55, 0.85, cx.size)
        boxes = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        inside = np.unique(tree.query(boxes, predicate="within")[0])
        if inside.size >= n or step < 4:
            break
        step *= max(np.sqrt(inside.size / (n * 1.05)), 0.5)  # none fitted: halve, never collapse to 0
    pick = np.sort(rng.choice(inside, size=min(n, inside.size), replace=False))
    return boxes[pick]


def assign_grids(footprints_wgs: np.ndarray, grid_codes: list[str], grid_geoms) -> tuple[np.ndarray, np.ndarray]:
    """Grid index per footprint: the grid with the largest share (metric area; ties → smallest code),
    -1 outside every grid; and the number of grids each footprint touches with positive area."""
    tf = metric_transformer()
    to_m = lambda g: shapely.transform(g, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))  # noqa: E731
    order = np.argsort(np.array(grid_codes))
    grids_m = to_m(np.asarray(grid_geoms))
    tree = shapely.STRtree(grids_m)
    fp = to_m(footprints_wgs)
    bi, gi = tree.query(fp, predicate="intersects")
    part = np.where(shapely.covers(grids_m[gi], fp[bi]), shapely.area(fp[bi]),
                    shapely.area(shapely.intersection(grids_m[gi], fp[bi])))
    keep = part > 0
    bi, gi, part = bi[keep], gi[keep], part[keep]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    # sort by building, then area desc, then code asc: the first row per building wins
    s = np.lexsort((rank[gi], -part, bi))
    bi, gi = bi[s], gi[s]
    first = np.ones(bi.size, dtype=bool)
    first[1:] = bi[1:] != bi[:-1]
    out = np.full(fp.size, -1, dtype=np.int64)
    out[bi[first]] = gi[first]
    n_grids = np.bincount(bi, minlength=fp.size)
    return out, n_grids


def _names(rng, n: int) -> list[str]:
    sw = np.array([1.0 / (i + 8) for i in range(len(_SURNAMES))])
    sur = rng.choice(len(_SURNAMES), n, p=sw / sw.sum())
    g1 = rng.integers(0, len(_GIVEN), n)
    g2 = rng.integers(0, len(_GIVEN), n)
    two = rng.random(n) < 0.72
    return [_SURNAMES[s] + _GIVEN[a] + (_GIVEN[b] if t else "") for s, a, b, t in zip(sur, g1, g2, two)]


def _id_numbers(rng, areas: np.ndarray, births: np.ndarray, male: np.ndarray) -> list[str]:
    """Unique format-valid ID numbers: area + birth date + 3-digit sequence (parity = sex) + check."""
    n = len(areas)
    seq = rng.integers(0, 500, n) * 2 + male.astype(np.int64)
    area_i = np.unique(areas, return_inverse=True)[1]
    day = births.astype("datetime64[D]").astype(np.int64)
    while True:
        key = (area_i.astype(np.int64) * 100_000 + day - day.min()) * 1000 + seq
        _, first_idx, counts = np.unique(key, return_index=True, return_counts=True)
        dup = np.ones(n, dtype=bool)
        dup[first_idx] = False
        if not dup.any():
            break
        seq[dup] = rng.integers(0, 500, int(dup.sum())) * 2 + male[dup].astype(np.int64)
        births[dup] = births[dup] + rng.integers(-3, 4, int(dup.sum())).astype("timedelta64[D]")
        day = births.astype("datetime64[D]").astype(np.int64)
    # 18 ASCII digits per row: area (6), birth date (8), sequence (3), check character (1)
    d = births.astype("datetime64[D]")
    ymd = ((d.astype("datetime64[Y]").astype(np.int64) + 1970) * 10_000
           + (d.astype("datetime64[M]").astype(np.int64) % 12 + 1) * 100
           + (d - d.astype("datetime64[M]")).astype(np.int64) + 1)
    digits = np.empty((n, 18), dtype=np.uint8)
    digits[:, :6] = np.frombuffer("".join(areas).encode(), dtype=np.uint8).reshape(n, 6) - 48
    for k, v in enumerate((ymd, seq)):
        width, lo = ((8, 6), (3, 14))[k]
        for j in range(width):
            digits[:, lo + width - 1 - j] = (v // 10 ** j) % 10
    out = digits + 48
    out[:, 17] = id_check_bytes(digits[:, :17])
    return np.frombuffer(out.tobytes(), dtype="S18").astype(str).tolist()


def _credit_codes(rng, n: int, individual: np.ndarray) -> list[str]:
    """Unique format-valid credit codes: 9 (market regulator), 1 (company) or 2 (individual business),
    the district, a random 9-character organisation code, the GB 32100 check character."""
    idx = np.empty((n, 18), dtype=np.int64)
    idx[:, 0] = 9
    idx[:, 1] = np.where(individual, 2, 1)
    idx[:, 2:8] = np.frombuffer(DISTRICT.encode(), dtype=np.uint8) - 48
    idx[:, 8:17] = rng.integers(0, len(CREDIT_ALPHABET), (n, 9))
    while True:
        _, first = np.unique(idx[:, :17], axis=0, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        idx[dup, 8:17] = rng.integers(0, len(CREDIT_ALPHABET), (int(dup.sum()), 9))
    idx[:, 17] = credit_check_index(idx[:, :17])
    chars = np.frombuffer(CREDIT_ALPHABET.encode(), dtype=np.uint8)[idx]
    return np.frombuffer(chars.tobytes(), dtype="S18").astype(str).tolist()


def _copy(conn, table: str, columns, rows) -> int:
    return copy_rows(conn, table, columns, rows)


class _Hasher:
    """HMAC-SHA256 with the key schedule done once (same digest as privacy.pii_hash for normalised input)."""

    def __init__(self, key: bytes):
        self.base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, value: str) -> str:
        m = self.base.copy()
        m.update(value.encode())
        return m.hexdigest()


#: the tables the load writes; their indexes and constraints are set aside meanwhile (bulkload)
_LOADED = ["bd_raw_rows", "buildings", "houses", "households", "people", "person_tags", "businesses"]
_RESIDENCE_ZH = {"registered": "户籍", "floating": "流动"}


def _reserve_ids(conn, table: str, n: int) -> int:
    """The first of ``n`` consecutive ids taken from ``table``'s id sequence (written explicitly by COPY)."""
    last = conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), nextval(pg_get_serial_sequence(:t, 'id')) "
                             "+ :n - 1)"), {"t": table, "n": max(n, 1)}).scalar()
    return int(last) - max(n, 1) + 1


def _start_imports(conn, delivered: dict, rows: dict) -> dict[str, int]:
    """One running import per dataset, dated at its delivery (as ``gridserver import`` would register it)."""
    ids = {}
    for kind, (source, _, _) in DATASETS.items():
        ids[kind] = conn.execute(text(
            "INSERT INTO bd_imports (kind, source, file_name, file_hash, status, rows_total, actor, started_at) "
            "VALUES (:k, :s, :f, '', 'running', :n, :a, :t) RETURNING id"),
            {"k": kind, "s": source, "f": f"示范-{source}-{kind}.csv", "n": rows[kind], "a": DEMO_ACTOR,
             "t": delivered[kind] - timedelta(minutes=3)}).scalar()
    return ids


def _lookup(values, index: np.ndarray) -> pa.Array:
    return pa.array(values).take(pa.array(index))


def build_demo_blockdata(engine, city: dict, *, scale: str = "small", seed: int = 0, shared_dir: Path | None = None,
                         console=None, today: date | None = None) -> dict:
    """Generate and load the demo block data; returns counts and timings. Replaces earlier demo rows.

    Birth and confirmation dates count back from ``today`` (default: the current UTC date)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gridserver.blockdata import service
    from gridserver.blockdata.datasets import register

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}")
    target = SCALES[scale]
    rng = np.random.default_rng([seed, 9, 440104])
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False, disable=console is None)
    steps = ["街区 blocks", "房屋 buildings", "地址 addresses", "户 households", "人 people", "法人 businesses",
             "写入 loading", "索引 indexes", "汇总 roll-ups"]
    with progress:
        task = progress.add_task("实有数据 block data", total=len(steps))

        def tick(name: str, t: float) -> None:
            timings[name] = round(time.perf_counter() - t, 2)
            progress.update(task, advance=1, description=f"实有数据 block data: {name}")

        def rows_bar(label: str, n: int):
            bar = progress.add_task(f"  {label}", total=n)
            return lambda k: progress.update(bar, advance=k)

        # 1. blocks and footprints --------------------------------------------------------------
        t = time.perf_counter()
        district = city["district"].geometry.values[0]
        roads = city["roads"]
        blk = blocks(district, roads, _green(shared_dir), city["grid"].geometry.values)
        tick(steps[0], t)
        t = time.perf_counter()
        fp_m = place_buildings(blk, target["buildings"], rng)
        inv = metric_transformer(inverse=True)
        fp = shapely.transform(fp_m, lambda xy: np.column_stack(inv.transform(xy[:, 0], xy[:, 1])))
        grids = city["grid"]
        gcodes = list(grids["code"])
        gidx, n_grids = assign_grids(fp, gcodes, grids.geometry.values)
        ok = gidx >= 0
        fp, fp_m, gidx, n_grids = fp[ok], fp_m[ok], gidx[ok], n_grids[ok]
        nb = len(fp)
        bgrid = np.array(gcodes, dtype=object)[gidx]
        cen = shapely.centroid(fp)
        cx, cy = shapely.get_x(cen), shapely.get_y(cen)
        # floors: old low-rise neighbourhoods near the historic core, towers elsewhere
        area_m2 = shapely.area(fp_m)
        floors = np.clip(np.round(rng.lognormal(np.log(7), 0.55, nb) * (area_m2 / area_m2.mean()) ** 0.3), 1, 45).astype(int)
        use = rng.choice(["住宅", "商住", "商业", "办公", "公共服务"], nb, p=[0.62, 0.18, 0.08, 0.08, 0.04])
        year = rng.integers(1950, 2024, nb)
        tick(steps[1], t)

        # 2. standard addresses on the nearest named road ---------------------------------------
        t = time.perf_counter()
        lineal = roads.geometry.geom_type.isin(["LineString", "MultiLineString"])
        named = roads[lineal & roads["name"].notna() & (roads["name"].astype(str).str.len() > 1)].reset_index(drop=True)
        named = named[~named["name"].astype(str).str.contains("立交|高架|桥|隧道|（|\\(")].reset_index(drop=True)
        tf = metric_transformer()
        lines_m = shapely.transform(np.asarray(named.geometry.values),
                                    lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
        near = shapely.STRtree(lines_m).query_nearest(shapely.centroid(fp_m), all_matches=False)
        road_of = np.empty(nb, dtype=object)
        pos = np.zeros(nb)
        names = named["name"].astype(str).to_numpy()
        road_of[near[0]] = names[near[1]]
        pos[near[0]] = shapely.line_locate_point(lines_m[near[1]], shapely.centroid(fp_m)[near[0]])
        _clear_demo(engine)
        with engine.connect() as conn:
            b_addr, addr_insert = _addresses_for_buildings(conn, road_of, pos, cx, cy, bgrid)
        loader = bulkload.Loader(engine)
        try:
            # addresses: roads, houses (two jobs), then rooms in building-aligned chunks on both connections
            (road_rows, house_rows), addr_counters = addr_insert
            roads_job = loader.submit(_insert_addresses, road_rows, {k: v for k, v in addr_counters.items() if k.endswith("R")},
                                      "demo block data roads")
            house_jobs = [loader.submit(_insert_addresses, rows, ctr, "demo block data addresses", after=roads_job)
                          for rows, ctr in _chunks_by_parent(house_rows, addr_counters, 2, "H")]
            tick(steps[2], t)

            # 3. households in rooms --------------------------------------------------------------
            t = time.perf_counter()
            weight = floors * np.sqrt(area_m2) * np.where(np.isin(use, ["住宅", "商住"]), 1.0, 0.15)
            hh_per = np.maximum(1, np.floor(weight / weight.sum() * target["households"] + rng.random(nb)).astype(int))
            per_floor = np.maximum(1, np.ceil(hh_per / floors).astype(int))
            nh = int(hh_per.sum())
            hb = np.repeat(np.arange(nb), hh_per)                       # household → building
            k_in = np.arange(nh) - np.repeat(np.cumsum(hh_per) - hh_per, hh_per)
            fl = 1 + k_in // per_floor[hb]
            rm = 1 + k_in % per_floor[hb]
            room = [f"{f}{r:02d}" for f, r in zip(fl, rm)]
            size = _household_sizes(rng, nh, target["people"])
            npp, nbz = int(size.sum()), target["businesses"]
            today = today or datetime.now(timezone.utc).date()
            delivered = deliveries(rng, datetime(today.year, today.month, today.day, tzinfo=timezone.utc))
            counts = {"buildings": nb, "households": nh, "people": npp, "businesses": nbz}
            with engine.begin() as conn:
                room_codes, room_rows, room_counters = _rooms(conn, b_addr, hb, room, cx, cy, bgrid)
                imports = _start_imports(conn, delivered, counts)
                raw_first = _reserve_ids(conn, "bd_raw_rows", nb + nh + npp + nbz)
                person_first = _reserve_ids(conn, "people", npp)
                bulkload.set_aside(conn, _LOADED, "bd_imports", imports["people"])
            raw_id = {"buildings": raw_first, "households": raw_first + nb, "people": raw_first + nb + nh,
                      "businesses": raw_first + nb + nh + npp}
            file_hash: dict[str, str] = {}
            for rows, ctr in _chunks_by_parent(room_rows, room_counters, 4, "S"):
                loader.submit(_insert_addresses, rows, ctr, "demo block data rooms", after=house_jobs)
            bcode = b_addr["code"]
            b_text = pa.array([f"{b_addr['upper']}{r}{h}号" for r, h in zip(b_addr["road"], b_addr["house_no"])])
            b_conf = confirmed_dates(rng, nb, "buildings", delivered["buildings"])
            wkt = shapely.to_wkt(fp, rounding_precision=7)
            raw, file_hash["buildings"] = raw_rows("buildings", SOURCES["building"], imports["buildings"], raw_id["buildings"], {
                "building_code": pa.array(bcode, pa.string()), "address": b_text, "footprint": pa.array(wkt, pa.string()),
                "floors": pa.array(floors.astype(str)), "use": pa.array(use), "year_built": pa.array(year.astype(str))})
            loader.submit(bulkload.copy_arrow, "bd_raw_rows", raw)
            mp = shapely.set_srid(shapely.multipolygons(fp, indices=np.arange(nb)), 4326)
            loader.submit(bulkload.copy_arrow, "buildings", pa.table({
                "building_code": pa.array(bcode, pa.string()), "address_code": pa.array(bcode, pa.string()),
                "geom": pa.array(shapely.to_wkb(mp, hex=True, include_srid=True), pa.string()),
                "floors": pa.array(floors), "use": pa.array(use), "year_built": pa.array(year),
                "grid_code": pa.array(bgrid, pa.string()), "source": constant(SOURCES["building"], nb),
                "confirmed_at": timestamps(b_conf),
                "raw_row_id": pa.array(np.arange(raw_id["buildings"], raw_id["buildings"] + nb, dtype=np.int64))}))
            # households and the rooms (房) they live in; a house is confirmed with its household
            hh_codes = pa.array([f"{DISTRICT}{i:09d}" for i in range(1, nh + 1)])
            rooms_a = pa.array(room_codes, pa.string())
            room_text = pc.binary_join_element_wise(b_text.take(pa.array(hb)), pa.array(room), "室", "")
            h_conf = confirmed_dates(rng, nh, "households", delivered["households"])
            kind = np.where(size > 1, "家庭户", "单人户")
            raw, file_hash["households"] = raw_rows("households", SOURCES["household"], imports["households"],
                                                    raw_id["households"], {
                "household_code": hh_codes, "address": room_text, "kind": pa.array(kind), "members": pa.array(size.astype(str))})
            loader.submit(bulkload.copy_arrow, "bd_raw_rows", raw)
            h_raw = pa.array(np.arange(raw_id["households"], raw_id["households"] + nh, dtype=np.int64))
            h_bcode, h_grid = _lookup(bcode, hb), _lookup(bgrid, hb)
            loader.submit(bulkload.copy_arrow, "houses", pa.table({
                "house_code": rooms_a, "building_code": h_bcode, "address_code": rooms_a,
                "floor": pa.array(fl.astype(str)), "room": pa.array(room), "grid_code": h_grid,
                "source": constant(SOURCES["household"], nh), "confirmed_at": timestamps(h_conf), "raw_row_id": h_raw}))
            loader.submit(bulkload.copy_arrow, "households", pa.table({
                "household_code": hh_codes, "house_code": rooms_a, "building_code": h_bcode, "address_code": rooms_a,
                "kind": pa.array(kind), "members": pa.array(size), "grid_code": h_grid,
                "source": constant(SOURCES["household"], nh), "confirmed_at": timestamps(h_conf), "raw_row_id": h_raw}))
            tick(steps[3], t)

            # 4. people --------------------------------------------------------------------------
            t = time.perf_counter()
            ph = np.repeat(np.arange(nh), size)                         # person → household
            first_in_hh = np.ones(npp, dtype=bool)
            first_in_hh[1:] = ph[1:] != ph[:-1]
            age = np.where(first_in_hh, rng.choice([25, 40, 55, 70, 85], npp, p=[0.2, 0.3, 0.25, 0.18, 0.07]) +
                           rng.integers(-7, 8, npp), rng.choice([8, 25, 45, 68, 84], npp, p=[0.2, 0.28, 0.3, 0.17, 0.05]) +
                           rng.integers(-8, 8, npp))
            age = np.clip(age, 0, 102)
            male = rng.random(npp) < 0.5
            births = np.datetime64(today.isoformat()) - (age * 365.25 + rng.integers(0, 365, npp)).astype("timedelta64[D]")
            floating = rng.random(npp) < np.where(np.isin(use[hb[ph]], ["商住", "商业"]), 0.35, 0.17)
            # a household is floating or registered as a whole, following its first member
            floating = floating[np.searchsorted(ph, ph)]
            areas = np.where(floating, rng.choice(_OTHER_AREAS, npp), DISTRICT)
            ids = _id_numbers(rng, areas, births.copy(), male)
            pnames = _names(rng, npp)
            has_phone = (age >= 14) & (rng.random(npp) < 0.85)
            phones = rng.integers(13_000_000_000, 19_999_999_999, npp)
            birth_year = births.astype("datetime64[Y]").astype(np.int64) + 1970
            alone = size[ph] == 1
            tagged = {"elderly_alone": alone & (age >= 70), "disabled": rng.random(npp) < 0.015,
                      "left_behind_child": (age < 16) & (rng.random(npp) < 0.04),
                      "rental": floating & (rng.random(npp) < 0.6), "floating": floating & (rng.random(npp) < 0.3)}
            p_conf = confirmed_dates(rng, npp, "people", delivered["people"])

            hasher = _Hasher(pii_key())
            id_hash = pa.array([hasher(v) for v in ids])
            id_masked = mask_many("id", ids)
            phone_s = [str(v) if h else None for v, h in zip(phones.tolist(), has_phone)]
            phone_hash = pa.array([hasher(v) if v else None for v in phone_s], pa.string())
            phone_masked = mask_many("phone", phone_s)
            name_a = pa.array(pnames)
            p_raw = np.arange(raw_id["people"], raw_id["people"] + npp, dtype=np.int64)
            ph_a = pa.array(ph)
            p_rooms = rooms_a.take(ph_a)
            p_bcode, p_grid = h_bcode.take(ph_a), h_grid.take(ph_a)
            loader.submit(bulkload.copy_arrow, "people", pa.table({
                "id": pa.array(np.arange(person_first, person_first + npp, dtype=np.int64)), "id_hash": id_hash,
                "id_masked": id_masked, "name": name_a, "name_masked": mask_many("name", name_a),
                "phone_hash": phone_hash, "phone_masked": phone_masked, "sex": pa.array(np.where(male, "M", "F")),
                "birth_year": pa.array(birth_year), "household_code": hh_codes.take(ph_a), "house_code": p_rooms,
                "building_code": p_bcode, "address_code": p_rooms,
                "residence": pa.array(np.where(floating, "floating", "registered")), "grid_code": p_grid,
                "source": constant(SOURCES["person"], npp), "confirmed_at": timestamps(p_conf), "raw_row_id": pa.array(p_raw)}),
                progress=rows_bar("人 people", npp))
            tag_ids, tag_names = [], []
            tag_text = np.full(npp, "", dtype=object)
            for tg, mask in tagged.items():
                idx = np.flatnonzero(mask)
                tag_ids.append(idx)
                tag_names.append(np.full(idx.size, tg, dtype=object))
                label = service.TAGS[tg]
                tag_text[idx] = np.where(tag_text[idx] == "", label, tag_text[idx] + "、" + label)
            tag_ids, tag_names = np.concatenate(tag_ids), np.concatenate(tag_names)
            loader.submit(bulkload.copy_arrow, "person_tags", pa.table({
                "person_id": pa.array(person_first + tag_ids), "tag": pa.array(tag_names, pa.string()),
                "set_by": constant(DEMO_ACTOR, tag_ids.size), "note": constant("示范数据", tag_ids.size),
                "set_at": timestamps(p_conf[tag_ids])}))
            raw, file_hash["people"] = raw_rows("people", SOURCES["person"], imports["people"], raw_id["people"], {
                "id_number": id_masked, "id_hash": id_hash, "name": name_a, "sex": pa.array(np.where(male, "男", "女")),
                "phone": pc.fill_null(phone_masked, ""), "household_code": hh_codes.take(ph_a),
                "address": room_text.take(ph_a), "residence": pa.array(np.where(floating, "流动", "户籍")),
                "tags": pa.array(tag_text, pa.string())})
            loader.submit(bulkload.copy_arrow, "bd_raw_rows", raw, progress=rows_bar("原始行 raw rows (people)", npp))
            tick(steps[4], t)

            # 5. businesses ------------------------------------------------------------------------
            t = time.perf_counter()
            bw = np.where(np.isin(use, ["商业", "商住"]), 6.0, np.where(use == "办公", 4.0, 0.6))
            bb = rng.choice(nb, nbz, p=bw / bw.sum())
            cats = rng.choice(len(_CATEGORIES), nbz, p=np.array([c[1] for c in _CATEGORIES]) / sum(c[1] for c in _CATEGORIES))
            individual = rng.random(nbz) < 0.45
            codes = _credit_codes(rng, nbz, individual)
            t1 = rng.integers(0, len(_TRADE), nbz)
            t2 = rng.integers(0, len(_TRADE), nbz)
            jx = rng.normal(0, 0.00003, nbz)
            jy = rng.normal(0, 0.00003, nbz)
            z_conf = confirmed_dates(rng, nbz, "businesses", delivered["businesses"])
            biz_names, biz_cat = [], []
            for k in range(nbz):
                cat = _CATEGORIES[cats[k]][0]
                road = b_addr["road"][bb[k]]
                nm = (f"越秀区{_TRADE[t1[k]]}{_TRADE[t2[k]]}{_SHOP_WORD[cat]}" if individual[k]
                      else f"广州{_TRADE[t1[k]]}{_TRADE[t2[k]]}{_SHOP_WORD[cat]}有限公司")
                biz_names.append(nm if individual[k] else nm.replace("广州", f"广州{road[:2]}"))
                biz_cat.append(cat)
            lon, lat = cx[bb] + jx, cy[bb] + jy
            pts = shapely.set_srid(shapely.points(lon, lat), 4326)
            z_bcode = _lookup(bcode, bb)
            raw, file_hash["businesses"] = raw_rows("businesses", SOURCES["business"], imports["businesses"],
                                                    raw_id["businesses"], {
                "credit_code": pa.array(codes), "name": pa.array(biz_names), "category": pa.array(biz_cat),
                "address": b_text.take(pa.array(bb)), "lon": pa.array(np.char.mod("%.7f", lon)),
                "lat": pa.array(np.char.mod("%.7f", lat))})
            loader.submit(bulkload.copy_arrow, "bd_raw_rows", raw)
            loader.submit(bulkload.copy_arrow, "businesses", pa.table({
                "credit_code": pa.array(codes), "name": pa.array(biz_names), "category": pa.array(biz_cat),
                "address_code": z_bcode, "building_code": z_bcode,
                "geom": pa.array(shapely.to_wkb(pts, hex=True, include_srid=True), pa.string()),
                "grid_code": _lookup(bgrid, bb), "source": constant(SOURCES["business"], nbz),
                "confirmed_at": timestamps(z_conf),
                "raw_row_id": pa.array(np.arange(raw_id["businesses"], raw_id["businesses"] + nbz, dtype=np.int64))}))
            tick(steps[5], t)

            t = time.perf_counter()
            loader.wait()
            tick(steps[6], t)
            t = time.perf_counter()
            for table in _LOADED:  # statistics before the foreign keys are validated (join plans)
                loader.submit(lambda conn, tb=table: conn.execute(text(f"ANALYZE {tb}")))
            loader.wait()
            restored = bulkload.restore(loader, engine, "bd_imports", imports["people"])
            tick(steps[7], t)
        except BaseException:
            loader.close()
            _clear_demo(engine)  # no half-loaded city; the set-aside indexes and constraints come back
            raise
        loader.close()

        t = time.perf_counter()
        with engine.begin() as conn:
            service.refresh_rollups(conn)
            for kind, (source, rule, _) in DATASETS.items():
                outcome = {"rows": counts[kind], "inserted": counts[kind], "updated": 0, "unchanged": 0, "review": 0,
                           "rejected": 0, "no_grid": 0, "status": "done"}
                report = {**outcome, "import_id": imports[kind], "kind": kind, "source": source, "demo": True,
                          "straddling_count": int((n_grids > 1).sum()) if kind == "buildings" else 0}
                conn.execute(text(
                    "UPDATE bd_imports SET status = 'done', rows_done = rows_total, file_hash = :h, finished_at = :t, "
                    "report = (report - 'set_aside') || CAST(:r AS jsonb) WHERE id = :i"),
                    {"h": file_hash[kind], "t": delivered[kind], "r": json.dumps(report, ensure_ascii=False),
                     "i": imports[kind]})
                n = conn.execute(text(f"SELECT count(*) FROM {kind} WHERE source = :s"), {"s": source}).scalar()
                register(conn, f"{kind}:{source}", kind, source, rule, delivered[kind], n, outcome,
                         last_import_id=imports[kind])
            conn.execute(text("ANALYZE person_tags; ANALYZE bd_rollup"))
        tick(steps[8], t)
    return {"scale": scale, "buildings": nb, "households": nh, "people": npp, "businesses": nbz,
            "tags": int(tag_ids.size), "raw_rows": nb + nh + npp + nbz, "set_aside": restored,
            "straddling": int((n_grids > 1).sum()), "blocks": int(len(blk)), "seconds": round(time.perf_counter() - t0, 1),
            "timings": timings, "load_jobs": loader.log}


def _insert_addresses(conn, rows, counters, reason: str) -> None:
    set_actor(conn, "demo", "create", reason)
    _insert_std(conn, rows)
    _set_counters(conn, counters)


def _chunks_by_parent(rows: list[tuple], counters: dict[str, int], k: int, suffix: str):
    """``rows`` (ordered by parent) in about ``k`` chunks that never split a parent, each with the
    counters (``parent + suffix``) of its own parents: chunks inserted at once wait for no lock."""
    if not rows:
        yield rows, counters
        return
    size = -(-len(rows) // k)
    lo = 0
    while lo < len(rows):
        hi = min(lo + size, len(rows))
        while hi < len(rows) and rows[hi][2] == rows[hi - 1][2]:
            hi += 1
        part = rows[lo:hi]
        prefixes = {r[2] + suffix for r in part}
        yield part, {p: v for p, v in counters.items() if p in prefixes}
        lo = hi


def _clear_demo(engine) -> None:
    """Remove earlier demo block data (all block data when nothing but the demo was ever imported),
    restore what an interrupted demo load had set aside, and drop the demo's import runs."""
    srcs = list(set(SOURCES.values()))
    with engine.begin() as conn:
        demo = list(conn.execute(text("SELECT id FROM bd_imports WHERE actor = :a"), {"a": DEMO_ACTOR}).scalars())
        others = conn.execute(text("SELECT count(*) FROM bd_imports WHERE actor <> :a"), {"a": DEMO_ACTOR}).scalar()
        if not others:
            conn.execute(text("TRUNCATE person_tags, people, households, houses, businesses, buildings, bd_grid_changes, "
                              "bd_rollup, bd_raw_rows"))
        else:
            mine = ("source = ANY(:s) AND (raw_row_id IS NULL OR raw_row_id IN (SELECT id FROM bd_raw_rows WHERE "
                    "import_id = ANY(:d)) OR NOT EXISTS (SELECT 1 FROM bd_raw_rows w WHERE w.id = raw_row_id))")
            conn.execute(text(f"DELETE FROM person_tags WHERE person_id IN (SELECT id FROM people WHERE {mine})"),
                         {"s": srcs, "d": demo})
            for t in ("people", "households", "houses", "businesses", "buildings"):
                conn.execute(text(f"DELETE FROM {t} WHERE {mine}"), {"s": srcs, "d": demo})
            conn.execute(text("DELETE FROM bd_raw_rows WHERE import_id = ANY(:d)"), {"d": demo})
    with engine.connect() as conn:
        stale = [i for i, _ in bulkload.pending(conn, "bd_imports") if i in demo]
    for i in stale:
        bulkload.restore(None, engine, "bd_imports", i)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM bd_review WHERE import_id = ANY(:d)"), {"d": demo})
        conn.execute(text("DELETE FROM bd_imports WHERE id = ANY(:d)"), {"d": demo})


def _counter(conn, prefixes: list[str]) -> dict[str, int]:
    return dict(conn.execute(text("SELECT prefix, last FROM address_code_counters WHERE prefix = ANY(:p)"),
                             {"p": prefixes}).all())


def _set_counters(conn, last: dict[str, int]) -> None:
    if not last:
        return
    conn.execute(text("INSERT INTO address_code_counters (prefix, last) SELECT unnest(CAST(:p AS text[])), unnest(CAST(:l AS int[])) "
                      "ON CONFLICT (prefix) DO UPDATE SET last = greatest(address_code_counters.last, EXCLUDED.last)"),
                 {"p": list(last), "l": list(last.values())})


_STD_COLS = ("code", "level", "parent_code", "name", "full_text", "match_key", "road", "road_key", "house_no", "room",
             "lon", "lat", "geom_source", "grid_code")


def _insert_std(conn, rows) -> None:
    conn.execute(text("DROP TABLE IF EXISTS tmp_demo_std"))
    conn.execute(text("CREATE TEMP TABLE tmp_demo_std (code text, level text, parent_code text, name text, full_text text, "
                      "match_key text, road text, road_key text, house_no text, room text, lon float8, lat float8, "
                      "geom_source text, grid_code text) ON COMMIT DROP"))
    _copy(conn, "tmp_demo_std", _STD_COLS, rows)
    conn.execute(text("ANALYZE tmp_demo_std"))
    conn.execute(text(
        "INSERT INTO std_addresses (code, level, parent_id, name, full_text, match_key, road, road_key, house_no, room, geom, "
        "geom_source, grid_code, community_code, street_code, district_code, status, source) "
        "SELECT t.code, t.level, p.id, t.name, t.full_text, t.match_key, t.road, t.road_key, t.house_no, t.room, "
        "ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326), t.geom_source, t.grid_code, left(t.grid_code, 12), "
        "left(t.grid_code, 9), left(t.grid_code, 6), 'active', :src FROM tmp_demo_std t "
        "LEFT JOIN std_addresses p ON p.code = t.parent_code"), {"src": ADDRESS_SOURCE})


def _addresses_for_buildings(conn, road_of, pos, cx, cy, bgrid) -> tuple[dict, tuple]:
    """A house-level standard address per building (reused when the key exists): code/road arrays, and
    ((new road rows, house rows by road), counters) for :func:`_insert_addresses` — roads first, so
    houses find their parent."""
    upper = conn.execute(text("SELECT address_upper_text(:d)"), {"d": DISTRICT}).scalar() or ""
    nb = len(road_of)
    road_keys = np.array([normalize_address(r) for r in road_of], dtype=object)
    existing_roads = dict(conn.execute(text("SELECT road_key, code FROM std_addresses WHERE level = 'road' AND status <> 'retired' "
                                            "AND road_key = ANY(:k)"), {"k": list(set(road_keys))}).all())
    taken: dict[str, set] = {}
    key_code: dict[str, str] = {}
    for rk, hn, mk, code, src in conn.execute(text(
            "SELECT road_key, house_no, match_key, code, source FROM std_addresses WHERE level = 'house' AND status <> 'retired' "
            "AND road_key = ANY(:k)"), {"k": list(set(road_keys))}):
        if src == ADDRESS_SOURCE:
            key_code[mk] = code
        else:
            taken.setdefault(rk, set()).add(hn)
    counters = _counter(conn, [f"{DISTRICT}R"] + [c + "H" for c in existing_roads.values()])
    new_roads = []
    road_code = dict(existing_roads)
    first_of_road = {}
    for i in np.argsort(pos, kind="stable"):
        first_of_road.setdefault(road_keys[i], i)
    for rk in sorted(set(road_keys) - set(existing_roads)):
        n = counters.get(f"{DISTRICT}R", 0) + 1
        counters[f"{DISTRICT}R"] = n
        code = f"{DISTRICT}R{n:05d}"
        road_code[rk] = code
        i = first_of_road[rk]
        new_roads.append((code, "road", None, road_of[i], upper + road_of[i], f"{rk}|||||", road_of[i], rk, "", "",
                          float(cx[i]), float(cy[i]), "demo", bgrid[i]))
    # numbers along each road in order of position, skipping numbers others already use
    codes = np.empty(nb, dtype=object)
    house_no = np.empty(nb, dtype=object)
    rows = []
    next_no: dict[str, int] = {}
    for i in np.lexsort((pos, road_keys.astype(str))):
        rk = road_keys[i]
        n = next_no.get(rk, 0) + 1
        while str(n) in taken.get(rk, ()):
            n += 1
        next_no[rk] = n
        hn = str(n)
        mk = f"{rk}|{hn}||||"
        house_no[i] = hn
        if mk in key_code:
            codes[i] = key_code[mk]
            continue
        pfx = road_code[rk] + "H"
        s = counters.get(pfx, 0) + 1
        counters[pfx] = s
        codes[i] = f"{pfx}{s:04d}"
        rows.append((codes[i], "house", road_code[rk], f"{hn}号", f"{upper}{road_of[i]}{hn}号", mk, road_of[i], rk, hn, "",
                     float(cx[i]), float(cy[i]), "survey", bgrid[i]))
    return ({"code": codes, "road": road_of, "road_key": road_keys, "house_no": house_no, "upper": upper},
            ((new_roads, sorted(rows, key=lambda r: r[2])), counters))


def _rooms(conn, b_addr, hb, room, cx, cy, bgrid) -> tuple[list[str], list[tuple], dict[str, int]]:
    """Room-level addresses (…H0012S0501) for each household's room, reused when the key exists:
    (code per household, rows to insert, counters to set) — :func:`_insert_addresses` writes them."""
    upper = b_addr["upper"]
    have = dict(conn.execute(text("SELECT match_key, code FROM std_addresses WHERE level = 'room' AND source = :s "
                                  "AND status <> 'retired'"), {"s": ADDRESS_SOURCE}).all())
    parents = sorted({b_addr["code"][b] for b in set(hb.tolist())})
    counters = _counter(conn, [p + "S" for p in parents])
    out, rows = [], []
    for j, b in enumerate(hb):
        rk, hn, road = b_addr["road_key"][b], b_addr["house_no"][b], b_addr["road"][b]
        mk = f"{rk}|{hn}||||{room[j]}"
        code = have.get(mk)
        if code is None:
            pfx = b_addr["code"][b] + "S"
            s = counters.get(pfx, 0) + 1
            counters[pfx] = s
            code = f"{pfx}{s:04d}"
            rows.append((code, "room", b_addr["code"][b], f"{room[j]}室", f"{upper}{road}{hn}号{room[j]}室", mk, road, rk,
                         hn, room[j], float(cx[b]), float(cy[b]), "inherited", bgrid[b]))
        out.append(code)
    return out, rows, counters


def _household_sizes(rng, nh: int, people: int) -> np.ndarray:
    size = rng.choice([1, 2, 3, 4, 5, 6], nh, p=[0.2, 0.27, 0.25, 0.16, 0.08, 0.04])
    diff = people - int(size.sum())
    idx = rng.choice(nh, abs(diff), replace=abs(diff) > nh)
    np.add.at(size, idx, 1 if diff > 0 else -1)
    return np.clip(size, 1, 12)
