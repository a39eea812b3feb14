"""Demo block data (实有人口/房屋/法人) at Yuexiu scale or a small one, written with COPY.

``build_demo_blockdata(engine, city, scale="full")`` makes, deterministically from ``seed``:

* **buildings**: footprints (rectangles) inside the blocks the roads form — roads (buffered by their
  class) and OSM green areas (``../shared``, when present) are kept free — each with a standard
  house-level address on its nearest *real* road name (numbers along the road, skipping numbers the
  address base already uses), floors, use and year;
* **households** in rooms of those buildings (room-level standard addresses, ``…H0012S0501``),
  **people** in households (plausible Chinese names, format-valid fictitious ID numbers with GB 11643
  check digits — stored, as always, only as HMAC + mask — and phones), **key-group tags**, and
  **businesses** (valid GB 32100 credit codes) on the ground floors.

Scales: ``full`` ≈ Yuexiu (100 k buildings, 400 k households, 1.17 M people, 60 k businesses);
``small`` 1/20 of it; ``tiny`` (tests) 1/400.

Grids follow the one rule of :mod:`gridserver.blockdata.service` — a building goes to the grid with
the largest share of its footprint (smallest code on ties), everything inside it follows — computed
here with vectorised shapely for speed (the tests check it equals ``service.link_grids``).

The standard addresses are written straight into ``std_addresses`` by COPY with codes from the same
scheme and counters as :mod:`gridserver.address.base` (the history trigger records them); bulk_create's
per-row code function would take minutes for half a million rooms. Re-running reuses them by key.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import time
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import text

from gridserver.address.base import copy_rows, set_actor
from gridserver.address.normalize import normalize_address
from gridserver.blockdata.codes import CREDIT_ALPHABET, credit_check_char, id_check_char
from gridserver.blockdata.privacy import mask_name, pii_key
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
    ds = np.datetime_as_string(births.astype("datetime64[D]"))
    out = []
    for a, d, s in zip(areas, ds, seq):
        first = f"{a}{d[:4]}{d[5:7]}{d[8:10]}{s:03d}"
        out.append(first + id_check_char(first))
    return out


def _credit_codes(rng, n: int, individual: np.ndarray) -> list[str]:
    alpha = np.array(list(CREDIT_ALPHABET))
    seen: set[str] = set()
    out = []
    for ind in individual:
        while True:
            org = "".join(rng.choice(alpha, 9))
            first = ("92" if ind else "91") + DISTRICT + org
            if first not in seen:
                break
        seen.add(first)
        out.append(first + credit_check_char(first))
    return out


def _copy(conn, table: str, columns, rows) -> int:
    return copy_rows(conn, table, columns, rows)


def _copy_frame(conn, table: str, frame: pd.DataFrame, chunk: int = 200_000) -> int:
    """COPY a DataFrame (text format; values hold no tabs, newlines or backslashes) in chunks."""
    raw = conn.connection.dbapi_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN") as cp:
        for lo in range(0, len(frame), chunk):
            cp.write(frame.iloc[lo:lo + chunk].to_csv(sep="\t", header=False, index=False, na_rep="\\N",
                                                      quoting=csv.QUOTE_NONE, escapechar=None))
    return len(frame)


class _Hasher:
    """HMAC-SHA256 with the key schedule done once (same digest as privacy.pii_hash for normalised input)."""

    def __init__(self, key: bytes):
        self.base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, value: str) -> str:
        m = self.base.copy()
        m.update(value.encode())
        return m.hexdigest()


@contextmanager
def _indexes_rebuilt(conn, table: str):
    """Drop the table's plain indexes (not constraints) for a bulk load and rebuild them after: a
    sorted index build is several times faster than a million index insertions."""
    defs = conn.execute(text(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() AND i.tablename = :t "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"), {"t": table}).all()
    for name, _ in defs:
        conn.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, ddl in defs:
        conn.execute(text(ddl))


def build_demo_blockdata(engine, city: dict, *, scale: str = "small", seed: int = 0, shared_dir: Path | None = None,
                         console=None) -> dict:
    """Generate and load the demo block data; returns counts and timings. Replaces earlier demo rows."""
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
             "汇总 roll-ups"]
    with progress:
        task = progress.add_task("实有数据 block data", total=len(steps))

        def tick(name: str, t: float) -> None:
            timings[name] = round(time.perf_counter() - t, 2)
            progress.update(task, advance=1, description=f"实有数据 block data: {name}")

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
        with engine.begin() as conn:
            set_actor(conn, "demo", "create", "demo block data addresses")
            _clear_demo(conn)
            b_addr = _addresses_for_buildings(conn, road_of, pos, cx, cy, bgrid)
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
        with engine.begin() as conn:
            set_actor(conn, "demo", "create", "demo block data rooms")
            room_codes = _rooms(conn, b_addr, hb, room, cx, cy, bgrid)
            hh_codes = [f"{DISTRICT}{i:09d}" for i in range(1, nh + 1)]
            bcode = b_addr["code"]
            now = datetime.now(timezone.utc)
            _copy(conn, "buildings", ("building_code", "address_code", "geom", "floors", "use", "year_built", "grid_code",
                                      "source", "confirmed_at"),
                  ((bcode[i], bcode[i], "SRID=4326;" + shapely.to_wkt(shapely.MultiPolygon([fp[i]]), rounding_precision=7),
                    int(floors[i]), use[i], int(year[i]), bgrid[i], SOURCES["building"], now) for i in range(nb)))
            _copy(conn, "houses", ("house_code", "building_code", "address_code", "floor", "room", "grid_code", "source",
                                   "confirmed_at"),
                  ((room_codes[j], bcode[hb[j]], room_codes[j], str(fl[j]), room[j], bgrid[hb[j]], SOURCES["household"], now)
                   for j in range(nh)))
            size = _household_sizes(rng, nh, target["people"])
            _copy(conn, "households", ("household_code", "house_code", "building_code", "address_code", "kind", "members",
                                       "grid_code", "source", "confirmed_at"),
                  ((hh_codes[j], room_codes[j], bcode[hb[j]], room_codes[j], "家庭户" if size[j] > 1 else "单人户",
                    int(size[j]), bgrid[hb[j]], SOURCES["household"], now) for j in range(nh)))
        tick(steps[3], t)

        # 4. people --------------------------------------------------------------------------
        t = time.perf_counter()
        npp = int(size.sum())
        ph = np.repeat(np.arange(nh), size)                         # person → household
        first_in_hh = np.ones(npp, dtype=bool)
        first_in_hh[1:] = ph[1:] != ph[:-1]
        age = np.where(first_in_hh, rng.choice([25, 40, 55, 70, 85], npp, p=[0.2, 0.3, 0.25, 0.18, 0.07]) +
                       rng.integers(-7, 8, npp), rng.choice([8, 25, 45, 68, 84], npp, p=[0.2, 0.28, 0.3, 0.17, 0.05]) +
                       rng.integers(-8, 8, npp))
        age = np.clip(age, 0, 102)
        male = rng.random(npp) < 0.5
        today = np.datetime64(date.today().isoformat())
        births = today - (age * 365.25 + rng.integers(0, 365, npp)).astype("timedelta64[D]")
        floating = rng.random(npp) < np.where(np.isin(use[hb[ph]], ["商住", "商业"]), 0.35, 0.17)
        # a household is floating or registered as a whole, following its first member
        floating = floating[np.searchsorted(ph, ph)]
        areas = np.where(floating, rng.choice(_OTHER_AREAS, npp), DISTRICT)
        ids = _id_numbers(rng, areas, births.copy(), male)
        pnames = _names(rng, npp)
        has_phone = (age >= 14) & (rng.random(npp) < 0.85)
        phones = rng.integers(13_000_000_000, 19_999_999_999, npp)
        key = pii_key()
        birth_year = np.array([int(str(b)[:4]) for b in births.astype("datetime64[Y]")])

        hasher = _Hasher(key)
        id_hash = [hasher(v) for v in ids]
        phone_s = np.where(has_phone, phones.astype(str), "")
        hh_arr = np.array(hh_codes, dtype=object)
        room_arr = np.array(room_codes, dtype=object)
        bp = hb[ph]
        frame = pd.DataFrame({
            "id_hash": id_hash, "id_masked": [v[:4] + "**********" + v[-4:] for v in ids], "name": pnames,
            "name_masked": [mask_name(v) for v in pnames],
            "phone_hash": [hasher(v) if v else None for v in phone_s],
            "phone_masked": [v[:3] + "****" + v[-4:] if v else None for v in phone_s],
            "sex": np.where(male, "M", "F"), "birth_year": birth_year, "household_code": hh_arr[ph],
            "house_code": room_arr[ph], "building_code": bcode[bp], "address_code": room_arr[ph],
            "residence": np.where(floating, "floating", "registered"), "grid_code": bgrid[bp],
            "source": SOURCES["person"], "confirmed_at": now.isoformat()})
        with engine.begin() as conn:
            with _indexes_rebuilt(conn, "people"):
                _copy_frame(conn, "people", frame)
            alone = size[ph] == 1
            tags = []
            for i in np.flatnonzero(alone & (age >= 70)):
                tags.append((i, "elderly_alone"))
            for i in np.flatnonzero(rng.random(npp) < 0.015):
                tags.append((i, "disabled"))
            kids = np.flatnonzero((age < 16) & (rng.random(npp) < 0.04))
            tags += [(i, "left_behind_child") for i in kids]
            tags += [(i, "rental") for i in np.flatnonzero(floating & (rng.random(npp) < 0.6))]
            tags += [(i, "floating") for i in np.flatnonzero(floating & (rng.random(npp) < 0.3))]
            conn.execute(text("CREATE TEMP TABLE tmp_demo_tags (id_hash text, tag text) ON COMMIT DROP"))
            _copy(conn, "tmp_demo_tags", ("id_hash", "tag"),
                  ((id_hash[i], tg) for i, tg in tags))
            conn.execute(text("INSERT INTO person_tags (person_id, tag, set_by, note) SELECT p.id, t.tag, 'demo', '示范数据' "
                              "FROM tmp_demo_tags t JOIN people p ON p.id_hash = t.id_hash"))
        tick(steps[4], t)

        # 5. businesses ------------------------------------------------------------------------
        t = time.perf_counter()
        nbz = target["businesses"]
        bw = np.where(np.isin(use, ["商业", "商住"]), 6.0, np.where(use == "办公", 4.0, 0.6))
        bb = rng.choice(nb, nbz, p=bw / bw.sum())
        cats = rng.choice(len(_CATEGORIES), nbz, p=np.array([c[1] for c in _CATEGORIES]) / sum(c[1] for c in _CATEGORIES))
        individual = rng.random(nbz) < 0.45
        codes = _credit_codes(rng, nbz, individual)
        t1 = rng.integers(0, len(_TRADE), nbz)
        t2 = rng.integers(0, len(_TRADE), nbz)
        jx = rng.normal(0, 0.00003, nbz)
        jy = rng.normal(0, 0.00003, nbz)
        with engine.begin() as conn:
            def biz_rows():
                for k in range(nbz):
                    b = bb[k]
                    cat = _CATEGORIES[cats[k]][0]
                    road = b_addr["road"][b]
                    nm = (f"越秀区{_TRADE[t1[k]]}{_TRADE[t2[k]]}{_SHOP_WORD[cat]}" if individual[k]
                          else f"广州{_TRADE[t1[k]]}{_TRADE[t2[k]]}{_SHOP_WORD[cat]}有限公司")
                    yield (codes[k], nm if individual[k] else nm.replace("广州", f"广州{road[:2]}"), cat, bcode[b], bcode[b],
                           f"SRID=4326;POINT({cx[b] + jx[k]:.7f} {cy[b] + jy[k]:.7f})", bgrid[b], SOURCES["business"], now)

            _copy(conn, "businesses", ("credit_code", "name", "category", "address_code", "building_code", "geom",
                                       "grid_code", "source", "confirmed_at"), biz_rows())
        tick(steps[5], t)

        t = time.perf_counter()
        with engine.begin() as conn:
            service.refresh_rollups(conn)
            for kind, table, rule in (("buildings", "buildings", "yearly"), ("households", "households", "monthly"),
                                      ("people", "people", "monthly"), ("businesses", "businesses", "weekly")):
                src = SOURCES[kind.rstrip("s") if kind != "people" else "person"] if kind != "businesses" else SOURCES["business"]
                n = conn.execute(text(f"SELECT count(*) FROM {table} WHERE source = :s"), {"s": src}).scalar()
                register(conn, f"{kind}:{src}", kind, src, rule, now, n, {"status": "demo", "rows": n})
            conn.execute(text("ANALYZE buildings; ANALYZE households; ANALYZE people; ANALYZE businesses; ANALYZE houses"))
        tick(steps[6], t)
    return {"scale": scale, "buildings": nb, "households": nh, "people": npp, "businesses": nbz, "tags": len(tags),
            "straddling": int((n_grids > 1).sum()), "blocks": int(len(blk)), "seconds": round(time.perf_counter() - t0, 1),
            "timings": timings}


def _clear_demo(conn) -> None:
    """Remove earlier demo block data (all block data when nothing else was ever imported)."""
    srcs = list(set(SOURCES.values()))
    others = conn.execute(text("SELECT (SELECT count(*) FROM bd_imports)")).scalar()
    if not others:
        conn.execute(text("TRUNCATE person_tags, people, households, houses, businesses, buildings, bd_grid_changes, bd_rollup"))
        return
    conn.execute(text("DELETE FROM person_tags WHERE person_id IN (SELECT id FROM people WHERE source = ANY(:s) AND raw_row_id IS NULL)"),
                 {"s": srcs})
    for t in ("people", "households", "houses", "businesses", "buildings"):
        conn.execute(text(f"DELETE FROM {t} WHERE source = ANY(:s) AND raw_row_id IS NULL"), {"s": srcs})


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


def _addresses_for_buildings(conn, road_of, pos, cx, cy, bgrid) -> dict:
    """A house-level standard address per building (reused when the key exists); returns code/road arrays."""
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
    _insert_std(conn, new_roads)
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
    _insert_std(conn, rows)
    _set_counters(conn, counters)
    return {"code": codes, "road": road_of, "road_key": road_keys, "house_no": house_no, "upper": upper}


def _rooms(conn, b_addr, hb, room, cx, cy, bgrid) -> list[str]:
    """Room-level addresses (…H0012S0501) for each household's room; reused when the key exists."""
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
    _insert_std(conn, rows)
    _set_counters(conn, counters)
    return out


def _household_sizes(rng, nh: int, people: int) -> np.ndarray:
    size = rng.choice([1, 2, 3, 4, 5, 6], nh, p=[0.2, 0.27, 0.25, 0.16, 0.08, 0.04])
    diff = people - int(size.sum())
    idx = rng.choice(nh, abs(diff), replace=abs(diff) > nh)
    np.add.at(size, idx, 1 if diff > 0 else -1)
    return np.clip(size, 1, 12)
