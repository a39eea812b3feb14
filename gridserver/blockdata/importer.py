"""Import departmental block-data tables: people, households, buildings, businesses.

``import_file(engine, path, kind=..., source=...)`` reads CSV (UTF-8/GB18030), xlsx or GeoParquet,
checks the header first (InvalidInput naming the missing column, before anything is written), then
works in chunks, each chunk one transaction that also advances ``bd_imports.rows_done`` — so an
interrupted import resumes at the next chunk (same file, kind and source) and a finished file is
skipped. Per chunk:

1. validate every row (ID number GB 11643, credit code GB 32100, phone, numbers, footprints): a bad
   row goes to ``bd_review`` as ``rejected`` with its row number, column and reason;
2. link to the standard address base through the address matcher (people and households by their
   household code first), building = the address's building (or house) code; rows whose address
   cannot be matched are kept, without address, and listed in ``bd_review`` as ``review``;
3. upsert by natural key (building_code, household_code, ID-number HMAC, credit code): re-running the
   same rows changes nothing; ID and phone numbers are stored only as HMAC + masked form;
4. link grids (:func:`gridserver.blockdata.service.link_grids`): buildings by largest footprint
   share — the report lists every building straddling grids — others by building or address point.

At the end the roll-ups behind the profiles are refreshed and the dataset registry updated.
Order for a fresh city: buildings → households → people; businesses any time.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import shapely
from sqlalchemy import text

from gridserver.address.base import copy_rows
from gridserver.address.importer import detect_encoding, file_sha256
from gridserver.address.matcher import RowIn, match_rows
from gridserver.blockdata import service
from gridserver.blockdata.codes import id_birth_sex, validate_credit_code, validate_id_number, validate_phone
from gridserver.blockdata.privacy import generalise_address, mask_id, mask_name, mask_phone, pii_hash, pii_key
from gridserver.errors import InvalidInput
from gridserver.geo.crs import normalize_crs, to_wgs84

KINDS = ("buildings", "households", "people", "businesses")
ONE = {"buildings": "building", "households": "household", "people": "person", "businesses": "business"}
CHUNK_ROWS = 50_000

#: Column names recognised per role (first match wins); ``--map role=列名`` overrides.
COLUMNS = {
    "address": ("地址", "标准地址", "详细地址", "住址", "居住地址", "房屋地址", "经营场所", "经营地址", "address"),
    "lon": ("经度", "lon", "lng", "longitude"),
    "lat": ("纬度", "lat", "latitude"),
    "crs": ("坐标系", "crs"),
    "building_code": ("建筑编码", "楼栋编码", "building_code"),
    "footprint": ("轮廓", "建筑轮廓", "footprint", "wkt", "geometry"),
    "floors": ("层数", "楼层数", "floors"),
    "use": ("用途", "房屋用途", "use"),
    "year_built": ("建成年份", "建成年代", "year_built", "year"),
    "name": ("姓名", "名称", "企业名称", "单位名称", "name"),
    "household_code": ("户号", "户编号", "household_code"),
    "kind": ("户类型", "户别", "household_kind"),
    "members": ("户人数", "人数", "members"),
    "id_number": ("公民身份号码", "身份证号", "身份证号码", "证件号码", "id_number"),
    "phone": ("联系电话", "电话", "手机", "手机号", "phone"),
    "sex": ("性别", "sex"),
    "residence": ("人口类型", "户籍类型", "居住类型", "residence"),
    "tags": ("重点人群", "人群标签", "tags"),
    "credit_code": ("统一社会信用代码", "信用代码", "credit_code"),
    "category": ("行业类别", "类别", "许可类别", "行业", "category"),
}
REQUIRED = {
    "buildings": (("address", "building_code", "footprint"),),   # at least one of these
    "households": (("household_code",), ("address",)),
    "people": (("id_number",), ("name",), ("household_code", "address")),
    "businesses": (("credit_code",), ("name",), ("address", "lon")),
}
_SEX = {"男": "M", "女": "F", "m": "M", "f": "F", "male": "M", "female": "F", "1": "M", "2": "F"}
_RESIDENCE = {"户籍": "registered", "户籍人口": "registered", "常住": "registered", "registered": "registered",
              "流动": "floating", "流动人口": "floating", "暂住": "floating", "floating": "floating"}
_TAG_NAMES = {**{v: k for k, v in service.TAGS.items()}, **{k: k for k in service.TAGS},
              "独居": "elderly_alone", "残疾": "disabled", "留守": "left_behind_child", "出租": "rental", "流动": "floating"}


def parse_mapping(spec: str | None) -> dict[str, str]:
    """``id_number=证件号,address=住址`` → {role: column}."""
    out = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise InvalidInput(f"--map item {item!r} must look like role=column")
        role, col = (s.strip() for s in item.split("=", 1))
        if role not in COLUMNS:
            raise InvalidInput(f"--map role {role!r} unknown; roles: {', '.join(COLUMNS)}")
        out[role] = col
    return out


def read_table(path: Path, encoding: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """The file as a DataFrame of strings (GeoParquet geometry → WKT column ``geometry``)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise InvalidInput(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name}: the file is empty (no header, no rows)")
    if suffix in (".parquet", ".geoparquet"):
        try:
            import geopandas as gpd

            try:
                gdf = gpd.read_parquet(path)
                if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
                    gdf = gdf.to_crs(4326)
                df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
                df["geometry"] = shapely.to_wkt(gdf.geometry.values, rounding_precision=-1)
            except ValueError:
                df = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001
            raise InvalidInput(f"{path.name}: not a readable (Geo)Parquet file ({exc.__class__.__name__}: {exc})") from None
        return df.astype(object).where(df.notna(), "").astype(str), None
    if suffix in (".xlsx", ".xlsm"):
        try:
            df = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
        except Exception as exc:  # noqa: BLE001
            raise InvalidInput(f"{path.name}: not a readable .xlsx workbook ({exc.__class__.__name__}: {exc})") from None
        return df.fillna(""), None
    enc = detect_encoding(path, encoding)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=enc, skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InvalidInput(f"{path.name}: malformed CSV ({exc})") from None
    return df, enc


def resolve_columns(kind: str, header: list[str], mapping: dict[str, str], file_name: str) -> dict[str, str]:
    """role → column name; InvalidInput when a required column is missing (lists the header)."""
    cols = {}
    lower = {h.strip().lower(): h for h in header}
    for role, col in mapping.items():
        if col.lower() not in lower:
            raise InvalidInput(f"{file_name}: column {col!r} (for {role}) not found; columns are: {', '.join(header)}")
        cols[role] = lower[col.lower()]
    for role, names in COLUMNS.items():
        if role in cols:
            continue
        for n in names:
            if n.lower() in lower:
                cols[role] = lower[n.lower()]
                break
    for alternatives in REQUIRED[kind]:
        if not any(a in cols for a in alternatives):
            want = " or ".join(f"{a} ({'/'.join(COLUMNS[a][:3])})" for a in alternatives)
            raise InvalidInput(f"{file_name}: {kind} need a column for {want}; columns are: {', '.join(header)}")
    return cols


class _Chunk:
    """Rows of one chunk as dicts keyed by role, plus errors and review notes."""

    def __init__(self, df: pd.DataFrame, cols: dict[str, str], first_row_no: int):
        self.rows: list[dict] = []
        data = {role: df[c].astype(str).str.strip().tolist() for role, c in cols.items()}
        for i in range(len(df)):
            r = {role: vals[i] for role, vals in data.items()}
            r["_row"] = first_row_no + i
            self.rows.append(r)
        self.rejected: list[tuple[int, str, str, dict]] = []   # row, column, reason, data
        self.review: list[tuple[int, str, str, dict]] = []

    def reject(self, r: dict, col: str, reason: str) -> None:
        r["_bad"] = True
        self.rejected.append((r["_row"], col, reason, _safe(r)))


def _safe(r: dict) -> dict:
    """The row for storage: the raw ID and phone numbers replaced by their masks."""
    out = {k: v for k, v in r.items() if not k.startswith("_")}
    if out.get("id_number"):
        out["id_number"] = mask_id(out["id_number"]) if len(out["id_number"]) >= 8 else "***"
    if out.get("phone"):
        out["phone"] = mask_phone(out["phone"])
    return out


def _int(r: dict, role: str, ch: _Chunk, lo: int, hi: int) -> int | None:
    v = r.get(role, "")
    if not v:
        return None
    try:
        f = float(v)
        if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
            raise ValueError
        return int(f)
    except ValueError:
        ch.reject(r, role, f"{role} must be a whole number between {lo} and {hi}, got {v!r}")
        return None


def _validate(kind: str, ch: _Chunk, default_crs: str, key: bytes) -> None:
    """Check and normalise every row of the chunk in place (bad rows get ``_bad``)."""
    pts = []
    for r in ch.rows:
        if kind == "people":
            try:
                idn = validate_id_number(r["id_number"])
                r["id_hash"], r["id_masked"] = pii_hash(idn, key), mask_id(idn)
                by, sx = id_birth_sex(idn)
                r["birth_year"], r["sex_id"] = by, sx
            except ValueError as exc:
                ch.reject(r, "id_number", str(exc))
                continue
            if not r.get("name"):
                ch.reject(r, "name", "name is empty")
                continue
            sex = r.get("sex", "")
            r["sex_n"] = _SEX.get(sex.lower(), None) if sex else sx
            if sex and r["sex_n"] is None:
                ch.reject(r, "sex", f"sex must be 男/女 (or M/F), got {sex!r}")
                continue
            if r["sex_n"] != sx:
                ch.reject(r, "sex", f"sex {sex!r} contradicts the ID number (digit 17 says {'男' if sx == 'M' else '女'})")
                continue
            res = r.get("residence", "")
            r["residence_n"] = _RESIDENCE.get(res.lower(), None) if res else "registered"
            if r["residence_n"] is None:
                ch.reject(r, "residence", f"residence must be 户籍 or 流动, got {res!r}")
                continue
            if r.get("phone"):
                try:
                    p = validate_phone(r["phone"])
                    r["phone_hash"], r["phone_masked"] = pii_hash(p, key), mask_phone(p)
                except ValueError as exc:
                    ch.reject(r, "phone", str(exc))
                    continue
            tags = []
            for t in re.split(r"[、,;；，/\s]+", r.get("tags", "")):
                if not t:
                    continue
                if t not in _TAG_NAMES:
                    ch.reject(r, "tags", f"unknown key-group tag {t!r}; use {', '.join(service.TAGS.values())}")
                    break
                tags.append(_TAG_NAMES[t])
            if r.get("_bad"):
                continue
            r["tag_list"] = tags
        elif kind == "businesses":
            try:
                r["credit_code"] = validate_credit_code(r["credit_code"])
            except ValueError as exc:
                ch.reject(r, "credit_code", str(exc))
                continue
            if not r.get("name"):
                ch.reject(r, "name", "name is empty")
                continue
        elif kind == "households":
            if not r.get("household_code"):
                ch.reject(r, "household_code", "household code is empty")
                continue
            r["members_n"] = _int(r, "members", ch, 0, 10_000)
        elif kind == "buildings":
            r["floors_n"] = _int(r, "floors", ch, 0, 200)
            r["year_n"] = _int(r, "year_built", ch, 1000, 2100)
            if r.get("footprint"):
                try:
                    g = shapely.from_wkt(r["footprint"])
                    if g is None or g.geom_type not in ("Polygon", "MultiPolygon") or g.is_empty:
                        raise ValueError(f"a footprint must be a Polygon or MultiPolygon, got {getattr(g, 'geom_type', 'nothing')}")
                    if not g.is_valid:
                        g = shapely.make_valid(g)
                        g = shapely.MultiPolygon([p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon"]) \
                            if g.geom_type != "Polygon" else g
                    if default_crs not in ("wgs84", "cgcs2000"):
                        g = shapely.transform(g, lambda xy: _to_wgs(xy, default_crs))
                    x0, y0, x1, y1 = g.bounds
                    if not (-180 <= x0 <= 180 and -90 <= y0 <= 90 and -180 <= x1 <= 180 and -90 <= y1 <= 90):
                        raise ValueError("footprint coordinates out of lon/lat range (is the CRS right?)")
                    r["footprint_wkt"] = shapely.to_wkt(shapely.force_2d(g), rounding_precision=-1)
                except (ValueError, shapely.errors.GEOSException) as exc:
                    ch.reject(r, "footprint", f"footprint: {exc}")
                    continue
            if r.get("_bad"):
                continue
            if not (r.get("address") or r.get("building_code")):
                ch.reject(r, "address", "a building needs an address or a building code")
                continue
        if r.get("lon") or r.get("lat"):
            try:
                x, y = float(r.get("lon", "")), float(r.get("lat", ""))
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise ValueError
                pts.append((r, x, y))
            except ValueError:
                ch.reject(r, "lon", f"bad coordinates lon={r.get('lon')!r} lat={r.get('lat')!r}")
    if pts:
        import numpy as np

        lon, lat = to_wgs84(np.array([p[1] for p in pts]), np.array([p[2] for p in pts]), default_crs)
        for (r, _, _), a, b in zip(pts, np.atleast_1d(lon), np.atleast_1d(lat)):
            if not (-180 <= a <= 180 and -90 <= b <= 90):
                ch.reject(r, "lon", "coordinates out of lon/lat range")
            else:
                r["pt"] = (float(a), float(b))


def _to_wgs(xy, crs):
    lon, lat = to_wgs84(xy[:, 0], xy[:, 1], crs)
    import numpy as np

    return np.column_stack([lon, lat])


def _row_hash(kind: str, source: str, r: dict) -> str:
    blob = "\x1f".join([kind, source] + [f"{k}={v}" for k, v in sorted(r.items()) if not k.startswith("_")
                                          and k not in ("pt",) and isinstance(v, str)])
    return hashlib.sha1(blob.encode()).hexdigest()


def _link_addresses(conn, kind: str, ch: _Chunk) -> None:
    """Attach address_code / building_code / house_code to each good row, or a review reason."""
    good = [r for r in ch.rows if not r.get("_bad")]
    if kind == "people":
        codes = list({r["household_code"] for r in good if r.get("household_code")})
        known = {row.household_code: row for row in conn.execute(text(
            "SELECT household_code, house_code, building_code, address_code FROM households WHERE household_code = ANY(:c)"),
            {"c": codes})} if codes else {}
        for r in good:
            h = known.get(r.get("household_code"))
            if h is not None:
                r["address_code"], r["house_code"], r["building_code"] = h.address_code, h.house_code, h.building_code
                r["_linked"] = "household"
    todo = [r for r in good if not r.get("_linked") and r.get("address")]
    if todo:
        results = match_rows(conn, [RowIn(idx=i, text=r["address"], lon=(r.get("pt") or (None, None))[0],
                                          lat=(r.get("pt") or (None, None))[1]) for i, r in enumerate(todo)])
        ids = list({m.address_id for m in results if m.status == "matched" and m.address_id})
        info = {row.id: row for row in conn.execute(text(
            "SELECT id, code, level, status FROM std_addresses WHERE id = ANY(:i)"), {"i": ids})} if ids else {}
        for m in results:
            r = todo[m.idx]
            a = info.get(m.address_id) if m.status == "matched" else None
            if a is None:
                why = m.reason or m.status
                if m.status == "new":
                    why = f"address not in the standard base ({why})"
                ch.review.append((r["_row"], "address", f"unlinked address: {why}", _safe(r)))
                r["_review"] = True
                continue
            r["address_code"], r["address_level"] = a.code, a.level
    for r in good:
        if r.get("_linked") == "household" and kind == "people":
            continue
        ac = r.get("address_code")
        if kind == "buildings":
            if not r.get("building_code"):
                if ac and r.get("address_level") in ("house", "building"):
                    r["building_code"] = ac
                elif ac:
                    r["building_code"] = generalise_address(ac)
                else:
                    if not r.get("_review"):
                        ch.review.append((r["_row"], "address", "no building code and no address", _safe(r)))
                    r["_skip"] = True  # a building needs a code: kept in review only
            continue
        if ac:
            r["house_code"] = ac if kind in ("households", "people") else (ac if r.get("address_level") in ("room", "floor", "unit") else None)
            r["_building_guess"] = [generalise_address(ac), re.sub(r"B\d{3}$", "", generalise_address(ac) or "")]
    guesses = list({g for r in good for g in r.get("_building_guess", []) if g})
    known_b = set(conn.execute(text("SELECT building_code FROM buildings WHERE building_code = ANY(:c)"),
                               {"c": guesses}).scalars()) if guesses else set()
    for r in good:
        for g in r.get("_building_guess", []):
            if g in known_b:
                r["building_code"] = g
                break


_TMP = {
    "buildings": ("row_no", "row_hash", "building_code", "address_code", "name", "footprint", "lon", "lat", "floors",
                  "use", "year_built"),
    "households": ("row_no", "row_hash", "household_code", "house_code", "building_code", "address_code", "kind", "members"),
    "people": ("row_no", "row_hash", "id_hash", "id_masked", "name", "name_masked", "phone_hash", "phone_masked", "sex",
               "birth_year", "household_code", "house_code", "building_code", "address_code", "residence", "tags"),
    "businesses": ("row_no", "row_hash", "credit_code", "name", "category", "address_code", "building_code",
                   "house_code", "lon", "lat"),
}
_TMP_TYPES = {"row_no": "int", "floors": "int", "year_built": "int", "members": "int", "birth_year": "int",
              "lon": "float8", "lat": "float8"}

_UPSERT = {
    "buildings": """
        INSERT INTO buildings AS t (building_code, address_code, name, geom, floors, use, year_built, source, confirmed_at, raw_row_id)
        SELECT DISTINCT ON (building_code) building_code, address_code, nullif(name, ''),
               CASE WHEN footprint <> '' THEN ST_Multi(ST_GeomFromText(footprint, 4326)) END, floors, nullif(use, ''),
               year_built, :source, now(), raw_row_id
        FROM tmp_bd ORDER BY building_code, row_no DESC
        ON CONFLICT (building_code) DO UPDATE SET address_code = coalesce(EXCLUDED.address_code, t.address_code),
            name = coalesce(EXCLUDED.name, t.name), geom = coalesce(EXCLUDED.geom, t.geom),
            floors = coalesce(EXCLUDED.floors, t.floors), use = coalesce(EXCLUDED.use, t.use),
            year_built = coalesce(EXCLUDED.year_built, t.year_built), source = EXCLUDED.source,
            confirmed_at = now(), raw_row_id = EXCLUDED.raw_row_id, updated_at = now()
        WHERE t.raw_row_id IS DISTINCT FROM EXCLUDED.raw_row_id
        RETURNING t.id, (xmax = 0) AS inserted""",
    "households": """
        INSERT INTO households AS t (household_code, house_code, building_code, address_code, kind, members, grid_code, source, confirmed_at, raw_row_id)
        SELECT DISTINCT ON (household_code) household_code, house_code, building_code, address_code, nullif(kind, ''),
               members, grid_code, :source, now(), raw_row_id
        FROM tmp_bd ORDER BY household_code, row_no DESC
        ON CONFLICT (household_code) DO UPDATE SET house_code = EXCLUDED.house_code, building_code = EXCLUDED.building_code,
            address_code = EXCLUDED.address_code, kind = EXCLUDED.kind, members = EXCLUDED.members, source = EXCLUDED.source,
            grid_code = EXCLUDED.grid_code,
            confirmed_at = now(), raw_row_id = EXCLUDED.raw_row_id, updated_at = now()
        WHERE t.raw_row_id IS DISTINCT FROM EXCLUDED.raw_row_id
        RETURNING t.id, (xmax = 0) AS inserted""",
    "people": """
        INSERT INTO people AS t (id_hash, id_masked, name, name_masked, phone_hash, phone_masked, sex, birth_year,
                                 household_code, house_code, building_code, address_code, residence, grid_code, source, confirmed_at, raw_row_id)
        SELECT DISTINCT ON (id_hash) id_hash, id_masked, name, name_masked, nullif(phone_hash, ''), nullif(phone_masked, ''),
               sex, birth_year, nullif(household_code, ''), house_code, building_code, address_code, residence, grid_code, :source, now(), raw_row_id
        FROM tmp_bd ORDER BY id_hash, row_no DESC
        ON CONFLICT (id_hash) DO UPDATE SET name = EXCLUDED.name, name_masked = EXCLUDED.name_masked,
            phone_hash = coalesce(EXCLUDED.phone_hash, t.phone_hash), phone_masked = coalesce(EXCLUDED.phone_masked, t.phone_masked),
            household_code = EXCLUDED.household_code, house_code = EXCLUDED.house_code, building_code = EXCLUDED.building_code,
            address_code = EXCLUDED.address_code, residence = EXCLUDED.residence, source = EXCLUDED.source,
            grid_code = EXCLUDED.grid_code,
            confirmed_at = now(), raw_row_id = EXCLUDED.raw_row_id, updated_at = now()
        WHERE t.raw_row_id IS DISTINCT FROM EXCLUDED.raw_row_id
        RETURNING t.id, (xmax = 0) AS inserted""",
    "businesses": """
        INSERT INTO businesses AS t (credit_code, name, category, address_code, building_code, house_code, geom, source, confirmed_at, raw_row_id)
        SELECT DISTINCT ON (credit_code) credit_code, name, nullif(category, ''), address_code, building_code, house_code,
               CASE WHEN lon IS NOT NULL THEN ST_SetSRID(ST_MakePoint(lon, lat), 4326) END, :source, now(), raw_row_id
        FROM tmp_bd ORDER BY credit_code, row_no DESC
        ON CONFLICT (credit_code) DO UPDATE SET name = EXCLUDED.name, category = EXCLUDED.category,
            address_code = EXCLUDED.address_code, building_code = EXCLUDED.building_code, house_code = EXCLUDED.house_code,
            geom = coalesce(EXCLUDED.geom, t.geom), source = EXCLUDED.source, confirmed_at = now(),
            raw_row_id = EXCLUDED.raw_row_id, updated_at = now()
        WHERE t.raw_row_id IS DISTINCT FROM EXCLUDED.raw_row_id
        RETURNING t.id, (xmax = 0) AS inserted""",
}


def _tmp_values(kind: str, r: dict, h: str) -> tuple:
    pt = r.get("pt") or (None, None)
    if kind == "buildings":
        return (r["_row"], h, r["building_code"], r.get("address_code"), r.get("name", ""), r.get("footprint_wkt", ""),
                pt[0], pt[1], r.get("floors_n"), r.get("use", ""), r.get("year_n"))
    if kind == "households":
        return (r["_row"], h, r["household_code"], r.get("house_code"), r.get("building_code"), r.get("address_code"),
                r.get("kind", ""), r.get("members_n"))
    if kind == "people":
        return (r["_row"], h, r["id_hash"], r["id_masked"], r["name"], mask_name(r["name"]), r.get("phone_hash", ""),
                r.get("phone_masked", ""), r["sex_n"], r["birth_year"], r.get("household_code", ""), r.get("house_code"),
                r.get("building_code"), r.get("address_code"), r["residence_n"], ",".join(r.get("tag_list", [])))
    return (r["_row"], h, r["credit_code"], r["name"], r.get("category", ""), r.get("address_code"),
            r.get("building_code"), r.get("house_code"), pt[0], pt[1])


def _import_chunk(conn, kind: str, source: str, import_id: int, ch: _Chunk, report: dict, actor: str) -> None:
    _link_addresses(conn, kind, ch)
    rows = [r for r in ch.rows if not r.get("_bad") and not r.get("_skip")]
    # raw rows: one per distinct row content (idempotent), ids mapped back by hash
    hashes = {id(r): _row_hash(kind, source, r) for r in rows}
    conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS tmp_raw (row_no int, row_hash text, data jsonb) ON COMMIT DROP"))
    conn.execute(text("TRUNCATE tmp_raw"))
    copy_rows(conn, "tmp_raw", ("row_no", "row_hash", "data"),
              ((r["_row"], hashes[id(r)], json.dumps(_safe(r), ensure_ascii=False)) for r in rows))
    conn.execute(text("INSERT INTO bd_raw_rows (import_id, kind, source, row_no, row_hash, data) "
                      "SELECT DISTINCT ON (row_hash) :i, :k, :s, row_no, row_hash, data FROM tmp_raw ORDER BY row_hash, row_no "
                      "ON CONFLICT (kind, source, row_hash) DO NOTHING"), {"i": import_id, "k": kind, "s": source})
    cols = _TMP[kind]
    conn.execute(text("DROP TABLE IF EXISTS tmp_bd"))
    decl = ", ".join(f"{c} {_TMP_TYPES.get(c, 'text')}" for c in cols)
    conn.execute(text(f"CREATE TEMP TABLE tmp_bd ({decl}, raw_row_id bigint) ON COMMIT DROP"))
    copy_rows(conn, "tmp_bd", cols, (_tmp_values(kind, r, hashes[id(r)]) for r in rows))
    conn.execute(text("UPDATE tmp_bd t SET raw_row_id = w.id FROM bd_raw_rows w "
                      "WHERE w.kind = :k AND w.source = :s AND w.row_hash = t.row_hash"), {"k": kind, "s": source})
    one = ONE[kind]
    grids: set[str] = set()
    if kind in ("households", "people"):
        # the grid is decided before writing (one write per row instead of insert + update)
        key = "household_code" if kind == "households" else "id_hash"
        grids |= service.grid_into(conn, one, "tmp_bd", key=key, reason=f"import {kind} from {source}")
    touched = conn.execute(text(_UPSERT[kind]), {"source": source}).all()
    ins = sum(1 for _, i in touched if i)
    report["inserted"] += ins
    report["updated"] += len(touched) - ins
    report["unchanged"] += len(rows) - len(touched)
    conn.execute(text("DROP TABLE IF EXISTS tmp_touched"))
    conn.execute(text("CREATE TEMP TABLE tmp_touched (id bigint PRIMARY KEY) ON COMMIT DROP"))
    copy_rows(conn, "tmp_touched", ("id",), ((t[0],) for t in touched))
    if kind == "people":
        conn.execute(text(
            "INSERT INTO person_tags (person_id, tag, set_by, note) "
            "SELECT p.id, unnest(string_to_array(t.tags, ',')), :a, 'import ' || :s FROM tmp_bd t JOIN people p ON p.id_hash = t.id_hash "
            "WHERE t.tags <> '' ON CONFLICT (person_id, tag) WHERE removed_at IS NULL DO NOTHING"), {"a": actor, "s": source})
    where = {one: "r.id IN (SELECT id FROM tmp_touched)"}
    kinds = [] if kind in ("households", "people") else [one]
    if kind == "buildings":  # records already pointing at these buildings follow them
        for k in ("house", "household", "person", "business"):
            where[k] = "r.building_code IN (SELECT building_code FROM buildings WHERE id IN (SELECT id FROM tmp_touched))"
            kinds.append(k)
    linked = service.link_grids(conn, kinds=kinds, where=where, reason=f"import {kind} from {source}")
    if kind in ("households", "people"):  # houses (房) implied by the rows' room-level addresses
        conn.execute(text(
            "INSERT INTO houses AS h (house_code, building_code, address_code, floor, room, grid_code, source, raw_row_id) "
            "SELECT DISTINCT ON (t.house_code) t.house_code, t.building_code, t.address_code, nullif(s.floor, ''), "
            "nullif(s.room, ''), NULL, :s, t.raw_row_id FROM tmp_bd t LEFT JOIN std_addresses s ON s.code = t.address_code "
            "WHERE t.house_code IS NOT NULL AND NOT EXISTS (SELECT 1 FROM houses x WHERE x.house_code = t.house_code) "
            "ORDER BY t.house_code ON CONFLICT (house_code) DO NOTHING"),
            {"s": source})
        service.link_grids(conn, kinds=["house"], where={"house": "r.grid_code IS NULL AND r.house_code IN (SELECT house_code FROM tmp_bd)"},
                           reason="house implied by import")
    for move in linked["moves"]:
        grids |= set(move.split("→"))
    grids |= set(conn.execute(text(f"SELECT DISTINCT grid_code FROM {service.TABLE[one]} "
                                   f"WHERE id IN (SELECT id FROM tmp_touched)")).scalars())
    grids.discard(None)
    grids.discard("None")
    touched_grids = report.setdefault("touched_grids", [])
    report["touched_grids"] = sorted(set(touched_grids) | grids)
    report["straddling_count"] += len(linked["straddling"])
    report["straddling"].extend(linked["straddling"][: max(0, 500 - len(report["straddling"]))])
    unlinked = conn.execute(text(f"SELECT count(*) FROM {service.TABLE[one]} r WHERE r.id IN (SELECT id FROM tmp_touched) "
                                 f"AND r.grid_code IS NULL")).scalar()
    report["no_grid"] += unlinked
    if kind == "people":  # the record's key (an HMAC), so a review decision finds the person by index
        key_of = {r["_row"]: r.get("id_hash") for r in rows}
        ch.review = [(n, col, why, {**d, "id_hash": key_of.get(n)}) for n, col, why, d in ch.review]
    reviews = [(import_id, kind, source, n, col, "review", why, json.dumps(d, ensure_ascii=False)) for n, col, why, d in ch.review]
    rejects = [(import_id, kind, source, n, col, "rejected", why, json.dumps(d, ensure_ascii=False)) for n, col, why, d in ch.rejected]
    copy_rows(conn, "bd_review", ("import_id", "kind", "source", "row_no", "column_name", "status", "reason", "data"),
              reviews + rejects)
    report["review"] += len(reviews)
    report["rejected"] += len(rejects)
    for n, col, why, _ in ch.rejected[: max(0, 200 - len(report["errors"]))]:
        report["errors"].append({"row": n, "column": col, "reason": why})


def import_file(engine, path: Path | str, *, kind: str, source: str, mapping: str | dict | None = None,
                crs: str = "wgs84", encoding: str | None = None, actor: str = "import", update_rule: str | None = None,
                chunk_rows: int = CHUNK_ROWS, progress: Callable[[int, int], None] | None = None,
                job_id: int | None = None) -> dict:
    """Import one file; returns the report (also stored on the import row). Resumes an interrupted run."""
    t0 = time.perf_counter()
    path = Path(path)
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    source = (source or "").strip()
    if not source:
        raise InvalidInput("--source must name the department the table comes from")
    default_crs = normalize_crs(crs)
    df, enc = read_table(path, encoding)
    if df.empty:
        raise InvalidInput(f"{path.name}: no data rows under the header")
    cols = resolve_columns(kind, [str(c) for c in df.columns], mapping if isinstance(mapping, dict) else parse_mapping(mapping),
                           path.name)
    digest = file_sha256(path)
    key = pii_key()
    with engine.begin() as conn:
        prev = conn.execute(text("SELECT id, status, rows_done, report FROM bd_imports WHERE kind = :k AND source = :s "
                                 "AND file_hash = :h AND status IN ('done', 'running') ORDER BY id DESC LIMIT 1"),
                            {"k": kind, "s": source, "h": digest}).first()
        if prev is not None and prev.status == "done":
            return {**prev.report, "already_imported": True, "import_id": prev.id}
        if prev is not None:
            import_id, start, report = prev.id, prev.rows_done, prev.report
            report["resumed_at_row"] = start
        else:
            import_id = conn.execute(text("INSERT INTO bd_imports (kind, source, file_name, file_hash, rows_total, actor, job_id) "
                                          "VALUES (:k, :s, :f, :h, :n, :a, :j) RETURNING id"),
                                     {"k": kind, "s": source, "f": path.name, "h": digest, "n": len(df), "a": actor,
                                      "j": job_id}).scalar()
            start, report = 0, {}
    for k in ("inserted", "updated", "unchanged", "review", "rejected", "straddling_count", "no_grid"):
        report.setdefault(k, 0)
    for k in ("errors", "straddling"):
        report.setdefault(k, [])
    report.update({"import_id": import_id, "kind": kind, "source": source, "file": path.name, "rows": len(df),
                   "encoding": enc, "already_imported": False})
    total = len(df)
    for lo in range(start, total, chunk_rows):
        hi = min(lo + chunk_rows, total)
        ch = _Chunk(df.iloc[lo:hi], cols, first_row_no=lo + 2)  # row 1 is the header
        _validate(kind, ch, default_crs, key)
        with engine.begin() as conn:
            _import_chunk(conn, kind, source, import_id, ch, report, actor)
            conn.execute(text("UPDATE bd_imports SET rows_done = :d, report = CAST(:r AS jsonb) WHERE id = :i"),
                         {"d": hi, "r": json.dumps(report, ensure_ascii=False, default=str), "i": import_id})
        if progress:
            progress(hi, total)
    with engine.begin() as conn:
        # only the grids this import touched, unless they are many (then one pass over everything is cheaper)
        touched = report.pop("touched_grids", [])
        service.refresh_rollups(conn, touched if len(touched) <= 300 else None)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        report["rows_per_second"] = round(total / max(report["seconds"], 1e-9), 1)
        outcome = {k: report[k] for k in ("rows", "inserted", "updated", "unchanged", "review", "rejected", "no_grid")}
        outcome["status"] = "done"
        count = conn.execute(text(f"SELECT count(*) FROM {service.TABLE[ONE[kind]]} WHERE source = :s"), {"s": source}).scalar()
        conn.execute(text(
            "INSERT INTO bd_datasets (name, kind, provider, update_rule, last_update, row_count, last_import_id, last_outcome) "
            "VALUES (:n, :k, :p, coalesce(:u, 'monthly'), now(), :c, :i, CAST(:o AS jsonb)) "
            "ON CONFLICT (name) DO UPDATE SET update_rule = coalesce(:u, bd_datasets.update_rule), last_update = now(), "
            "row_count = :c, last_import_id = :i, last_outcome = CAST(:o AS jsonb)"),
            {"n": f"{kind}:{source}", "k": kind, "p": source, "u": update_rule, "c": count, "i": import_id,
             "o": json.dumps(outcome, ensure_ascii=False)})
        conn.execute(text("UPDATE bd_imports SET status = 'done', finished_at = now(), rows_done = :d, "
                          "report = CAST(:r AS jsonb) WHERE id = :i"),
                     {"d": total, "r": json.dumps(report, ensure_ascii=False, default=str), "i": import_id})
    return report
